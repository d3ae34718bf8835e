import FactoryKit
import FoundationEssentials
import Dispatch
import FactoryBasics
import Glibc

/// The fleet page for HQ operators: one row per factory, refreshing itself, no external assets.
struct FleetPage {
    let registrations: [Registration]
    let now: Date

    static let refreshSeconds = 10

    var html: String {
        let rows = registrations.map { row($0) }.joined(separator: "\n")
        let stale = registrations.filter { $0.isStale(now: now, after: FleetRegistry.staleAfter) }.count
        let summary = "\(registrations.count) factor\(registrations.count == 1 ? "y" : "ies")" + (stale > 0 ? ", \(stale) stale" : "")
        let body = registrations.isEmpty
            ? "<p class=\"empty\">No factory has registered yet.</p>"
            : """
            <table>
            <thead><tr><th>Factory</th><th>Status</th><th>Branch</th><th>Commit</th><th>Last seen</th><th>Last job</th><th>Result</th></tr></thead>
            <tbody>
            \(rows)
            </tbody>
            </table>
            """
        return Self.document(title: "Fleet — factoryctl", content: """
        <header><h1>Fleet</h1><p>\(summary) · refreshes every \(Self.refreshSeconds) s · \(escape(Self.timestamp(now)))</p></header>
        \(body)
        """)
    }

    static func unavailable(_ message: String) -> String {
        document(title: "Fleet — unavailable", content: "<h1>Fleet</h1><p class=\"error\">Redis is unavailable: \(escapeStatic(message))</p>")
    }

    private func row(_ r: Registration) -> String {
        let isStale = r.isStale(now: now, after: FleetRegistry.staleAfter)
        let status = isStale ? "\(r.registrationStatus) · stale" : r.registrationStatus
        let result = r.lastJobStatus ?? "—"
        let resultClass = result == "SUCCESS" ? "ok" : (result == "FAILED" ? "bad" : "")
        return """
        <tr class="\(isStale ? "stale" : escape(r.registrationStatus))"><td>\(escape(r.factoryID))</td><td><span class="status">\(escape(status))</span></td>\
        <td>\(escape(r.branch ?? "—"))</td><td><code>\(escape(r.commit.map { String($0.prefix(7)) } ?? "—"))</code></td>\
        <td>\(escape(age(now.timeIntervalSince1970 - r.lastSeenAt)))</td><td>\(escape(r.lastJobID ?? "—"))</td>\
        <td class="\(resultClass)">\(escape(result))</td></tr>
        """
    }

    private func age(_ seconds: Double) -> String {
        let s = max(0, seconds)
        switch s {
        case ..<60: return "\(Int(s)) s ago"
        case ..<3600: return "\(Int(s / 60)) min ago"
        case ..<86_400: return "\(Int(s / 3600)) h ago"
        default: return "\(Int(s / 86_400)) d ago"
        }
    }

    private func escape(_ text: String) -> String { Self.escapeStatic(text) }

    static func escapeStatic(_ text: String) -> String {
        var out = ""
        for character in text {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(character)
            }
        }
        return out
    }

    static func timestamp(_ date: Date) -> String {
        date.formatted(.iso8601.year().month().day().time(includingFractionalSeconds: false)) + " UTC"
    }

    static func document(title: String, content: String) -> String {
        """
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <meta http-equiv="refresh" content="\(refreshSeconds)">
        <title>\(escapeStatic(title))</title>
        <style>
        body { font: 15px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 72rem; padding: 0 1rem; color: #1d232b; background: #f7f8fa; }
        header h1 { margin: 0; font-size: 1.6rem; }
        header p { margin: .25rem 0 1.25rem; color: #5b6572; }
        table { width: 100%; border-collapse: collapse; background: #fff; box-shadow: 0 1px 3px rgba(0,0,0,.08); }
        th, td { text-align: left; padding: .55rem .75rem; border-bottom: 1px solid #e6e9ee; white-space: nowrap; }
        th { font-size: .8rem; text-transform: uppercase; letter-spacing: .04em; color: #5b6572; background: #f0f2f5; }
        code { font: 13px ui-monospace, SFMono-Regular, Menlo, monospace; }
        .status { padding: .1rem .5rem; border-radius: 1rem; background: #e3f4e8; color: #17602e; }
        tr.paused .status, tr.updating .status { background: #fff4d6; color: #7a5300; }
        tr.stale { color: #8a9099; }
        tr.stale .status { background: #fde2e1; color: #a11d1a; }
        td.ok { color: #17602e; font-weight: 600; }
        td.bad { color: #a11d1a; font-weight: 600; }
        .empty, .error { padding: 1rem; background: #fff; }
        .error { color: #a11d1a; }
        </style>
        </head>
        <body>
        \(content)
        </body>
        </html>
        """
    }
}
