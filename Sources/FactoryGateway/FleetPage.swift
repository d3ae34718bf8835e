import FactoryKit
import FoundationEssentials
import Dispatch
import FactoryBasics
import Glibc

/// The fleet page for HQ operators: one row per factory, the commit HQ wants on each branch and
/// who is behind it, why a job failed, and each recent job's per-factory results (linked from the
/// table). Refreshes itself; no external assets, no script; readable down to 400 px wide.
struct FleetPage {
    let overview: FleetOverview
    let now: Date

    static let refreshSeconds = 10
    /// Failure reasons are cut to this many characters on the page.
    static let reasonLimit = 240

    var registrations: [Registration] { overview.registrations }

    var html: String {
        let rows = registrations.map { row($0) }.joined(separator: "\n")
        let stale = registrations.filter { $0.isStale(now: now, after: FleetRegistry.staleAfter) }.count
        let behind = registrations.filter(overview.isBehind).count
        var summary = "\(registrations.count) factor\(registrations.count == 1 ? "y" : "ies")"
        if stale > 0 { summary += ", \(stale) stale" }
        if behind > 0 { summary += ", \(behind) behind" }
        let wanted = overview.wanted.sorted { $0.key < $1.key }.map { branch, want in
            "<li>\(escape(branch)): <code>\(escape(String(want.commit.prefix(7))))</code> (from <a href=\"#job-\(escape(want.jobID))\">\(escape(want.jobID))</a>)</li>"
        }
        let wantedBlock = wanted.isEmpty ? "" : "<section class=\"wanted\"><h2>Wanted</h2><ul>\(wanted.joined())</ul></section>"
        let body = registrations.isEmpty
            ? "<p class=\"empty\">No factory has registered yet.</p>"
            : """
            <table class="fleet">
            <thead><tr><th>Factory</th><th>Status</th><th>Branch</th><th>Commit</th><th>Last seen</th><th>Last job</th><th>Result</th></tr></thead>
            <tbody>
            \(rows)
            </tbody>
            </table>
            """
        return Self.document(title: "Fleet — factoryctl", content: """
        <header><h1>Fleet</h1><p>\(summary) · refreshes every \(Self.refreshSeconds) s · \(escape(Self.timestamp(now)))</p></header>
        \(wantedBlock)
        \(rolloutBlock)
        \(body)
        \(jobSections)
        """)
    }

    static func unavailable(_ message: String) -> String {
        document(title: "Fleet — unavailable", content: "<h1>Fleet</h1><p class=\"error\">Redis is unavailable: \(escapeStatic(message))</p>")
    }

    private func row(_ r: Registration) -> String {
        let isStale = r.isStale(now: now, after: FleetRegistry.staleAfter)
        var status = isStale ? "\(r.registrationStatus) · stale" : r.registrationStatus
        let attention = r.metadata["needs_attention"]?.string
        if attention != nil { status += " · needs attention" }
        if let left = r.metadata["soak_seconds_left"]?.number, r.registrationStatus == "updating" { status += " · provisional, \(Int(left)) s left" }
        if let left = r.metadata["splay_seconds_left"]?.number, r.registrationStatus == "updating" { status += " · waiting \(Int(left)) s (splay)" }
        let quarantined = (r.metadata["quarantined"]?.array ?? []).compactMap { $0["commit"]?.string }.filter(Mission.isCommitID)
        let result = r.lastJobStatus ?? "—"
        let resultClass = result == "SUCCESS" ? "ok" : (result == "FAILED" ? "bad" : "")
        let commit = escape(r.commit.map { String($0.prefix(7)) } ?? "—")
        let behind = overview.isBehind(r)
            ? " <span class=\"behind\" title=\"HQ wants \(escape(String(overview.wanted[r.branch ?? ""]?.commit.prefix(7) ?? "")))\">behind</span>" : ""
        let job = r.lastJobID.map { id in
            MissionID.isValid(id) && overview.jobs[id] != nil ? "<a href=\"#job-\(escape(id))\">\(escape(id))</a>" : escape(id)
        } ?? "—"
        let reason = overview.failureReason(r).map { "<small class=\"reason\">\(escape(Self.shorten($0)))</small>" } ?? ""
        let held = quarantined.isEmpty ? "" : " <small class=\"quarantined\">quarantined: \(quarantined.map { escape(String($0.prefix(7))) }.joined(separator: ", "))</small>"
        return """
        <tr class="\(isStale ? "stale" : escape(r.registrationStatus))"><td data-label="Factory">\(escape(r.factoryID))</td>\
        <td data-label="Status"><span class="status"\(attention.map { " title=\"\(escape($0))\"" } ?? "")>\(escape(status))</span></td>\
        <td data-label="Branch">\(escape(r.branch ?? "—"))</td><td data-label="Commit"><code>\(commit)</code>\(behind)\(held)</td>\
        <td data-label="Last seen">\(escape(age(now.timeIntervalSince1970 - r.lastSeenAt)))</td><td data-label="Last job">\(job)</td>\
        <td data-label="Result" class="\(resultClass)">\(escape(result))\(reason)</td></tr>
        """
    }

    /// The newest staged rollouts: state, commit, wave.
    private var rolloutBlock: String {
        guard !overview.rollouts.isEmpty else { return "" }
        let rows = overview.rollouts.map { r in
            let stateClass = r.state == "succeeded" ? "ok" : (["halted", "rolled_back", "timed_out", "aborted"].contains(r.state) ? "bad" : "")
            return """
            <tr><td data-label="Rollout">\(escape(r.id))</td><td data-label="State" class="\(stateClass)">\(escape(r.state))</td>\
            <td data-label="Branch">\(escape(r.branch))</td><td data-label="Commit"><code>\(escape(String(r.commit.prefix(7))))</code></td>\
            <td data-label="Wave">\(r.wave) of \(r.waves) (\(r.factories) factories)</td></tr>
            """
        }.joined(separator: "\n")
        return """
        <h2>Rollouts</h2>
        <table class="rollouts"><thead><tr><th>Rollout</th><th>State</th><th>Branch</th><th>Commit</th><th>Wave</th></tr></thead>
        <tbody>
        \(rows)
        </tbody></table>
        """
    }

    /// One section per recent job, newest first: what was published, and each factory's result.
    private var jobSections: String {
        let ordered = overview.jobs.sorted {
            ($0.value.meta?["published_at"]?.number ?? 0, $0.key) > ($1.value.meta?["published_at"]?.number ?? 0, $1.key)
        }
        guard !ordered.isEmpty else { return "" }
        let sections = ordered.map { id, record -> String in
            let meta = record.meta
            // "system:update_factory" → "update".
            let kind = meta?["kind"]?.string.map { $0.replacing("system:", with: "").replacing("_factory", with: "") }
            let what = [kind, meta?["branch"]?.string.map { "of \($0)" }].compactMap { $0 }.joined(separator: " ")
            let when = meta?["published_at"]?.number.map { Self.timestamp(Date(timeIntervalSince1970: $0)) } ?? "publish time unknown"
            let rows = record.results.map { result -> String in
                let r = result.result
                let from = r["from_commit"]?.string.map { String($0.prefix(7)) } ?? "—"
                let to = r["to_commit"]?.string.map { String($0.prefix(7)) } ?? "—"
                let reason = result.succeeded ? "" : [r["failure"]?.string, result.error].compactMap { $0 }.joined(separator: ": ")
                return """
                <tr><td data-label="Factory">\(escape(result.factoryID ?? "?"))</td>\
                <td data-label="Result" class="\(result.succeeded ? "ok" : "bad")">\(result.status)</td>\
                <td data-label="Outcome">\(escape(r["outcome"]?.string ?? "—"))</td>\
                <td data-label="Commits"><code>\(escape(from))</code> → <code>\(escape(to))</code></td>\
                <td data-label="Why" class="why">\(escape(Self.shorten(reason)))</td></tr>
                """
            }.joined(separator: "\n")
            let table = record.results.isEmpty ? "<p class=\"empty\">No factory has reported yet.</p>" : """
                <table class="results"><thead><tr><th>Factory</th><th>Result</th><th>Outcome</th><th>Commits</th><th>Why</th></tr></thead>
                <tbody>
                \(rows)
                </tbody></table>
                """
            return """
            <section class="job" id="job-\(escape(id))"><h3>\(escape(id))</h3><p>\(escape(what.isEmpty ? "mission" : what)) · published \(escape(when))</p>
            \(table)
            </section>
            """
        }
        return "<h2>Recent jobs</h2>\n" + sections.joined(separator: "\n")
    }

    /// A reason cut to `reasonLimit` characters.
    static func shorten(_ text: String) -> String {
        text.count <= reasonLimit ? text : String(text.prefix(reasonLimit - 1)) + "…"
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
        h2 { font-size: 1.1rem; margin: 1.5rem 0 .5rem; }
        h3 { font-size: 1rem; margin: 0; }
        .wanted ul { margin: 0 0 1rem; padding-left: 1.2rem; }
        table { width: 100%; border-collapse: collapse; background: #fff; box-shadow: 0 1px 3px rgba(0,0,0,.08); }
        th, td { text-align: left; padding: .55rem .75rem; border-bottom: 1px solid #e6e9ee; vertical-align: top; }
        table.fleet td { white-space: nowrap; }
        th { font-size: .8rem; text-transform: uppercase; letter-spacing: .04em; color: #5b6572; background: #f0f2f5; }
        code { font: 13px ui-monospace, SFMono-Regular, Menlo, monospace; }
        a { color: #1a56b0; }
        .status { padding: .1rem .5rem; border-radius: 1rem; background: #e3f4e8; color: #17602e; }
        .behind { padding: .1rem .4rem; border-radius: .3rem; background: #fff4d6; color: #7a5300; font-size: .8rem; }
        tr.paused .status, tr.updating .status { background: #fff4d6; color: #7a5300; }
        tr.stale { color: #8a9099; }
        tr.stale .status { background: #fde2e1; color: #a11d1a; }
        td.ok { color: #17602e; font-weight: 600; }
        td.bad { color: #a11d1a; font-weight: 600; }
        small.reason { display: block; font-weight: normal; color: #5b6572; white-space: normal; max-width: 28rem; overflow-wrap: anywhere; }
        section.job { margin: 1rem 0; }
        section.job p { margin: .1rem 0 .4rem; color: #5b6572; }
        table.results td { white-space: nowrap; }
        table.results td.why { white-space: normal; overflow-wrap: anywhere; width: 100%; }
        .empty, .error { padding: 1rem; background: #fff; }
        .error { color: #a11d1a; }
        /* Narrow screens (a phone, a split terminal): each row becomes a card of label: value lines. */
        @media (max-width: 640px) {
          body { margin: 1rem auto; padding: 0 .5rem; }
          table, thead, tbody, tr, th, td { display: block; width: auto; }
          thead { display: none; }
          tr { margin: 0 0 .75rem; border: 1px solid #e6e9ee; background: #fff; }
          table.fleet td, table.results td, td { white-space: normal; overflow-wrap: anywhere; border: 0; padding: .2rem .6rem; }
          table.results td.why { width: auto; }
          td::before { content: attr(data-label) ": "; color: #5b6572; font-size: .8rem; }
          table { box-shadow: none; background: transparent; }
        }
        </style>
        </head>
        <body>
        \(content)
        </body>
        </html>
        """
    }
}
