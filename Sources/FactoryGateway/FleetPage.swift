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
    var query = Query()

    static let refreshSeconds = 10
    /// Failure reasons are cut to this many characters on the page.
    static let reasonLimit = 240
    /// Factories per page: at 10,000 the first response stays small (issue 22: ≤ 200 KB).
    static let pageSize = 100
    /// A job section lists every result up to this many; beyond, the failed ones (this many at most).
    static let jobRowLimit = 50

    /// What the page shows: `?show=FILTER&q=TEXT&page=N`. Values that are not valid are ignored
    /// (the whole fleet, page 1), never echoed unescaped.
    struct Query: Equatable {
        var filter: Filter?
        /// Factories whose id contains this (at most 64 characters).
        var search = ""
        var page = 1

        init(filter: Filter? = nil, search: String = "", page: Int = 1) {
            (self.filter, self.search, self.page) = (filter, search, page)
        }

        init(parameters: [(String, String)]) {
            for (name, value) in parameters {
                switch name {
                case "show": filter = Filter(rawValue: value)
                case "q": search = String(value.prefix(64))
                case "page": page = Int(value).map { max(1, min($0, 1_000_000)) } ?? 1
                default: break
                }
            }
        }

        /// This query's link with `change` applied (and back to page 1 unless it sets the page).
        func link(filter: Filter?? = nil, page: Int? = nil) -> String {
            var parts: [String] = []
            if let chosen = filter ?? self.filter { parts.append("show=" + chosen.rawValue) }
            if !search.isEmpty { parts.append("q=" + FleetPage.percentEncode(search)) }
            let page = page ?? 1
            if page > 1 { parts.append("page=\(page)") }
            return parts.isEmpty ? "/" : "/?" + parts.joined(separator: "&")
        }
    }

    /// The views of the fleet the summary counts and links to.
    enum Filter: String, CaseIterable {
        case attention, failing, stale, behind, provisional, quarantined, updating, paused, offline

        var label: String {
            switch self {
            case .attention: "need attention"
            default: rawValue
            }
        }
    }

    /// What the page knows about one factory, worked out once.
    struct Marks {
        let stale: Bool
        let behind: Bool
        let failing: Bool
        let provisional: Bool
        let quarantined: [String]
        let attention: String?
        let status: String

        func matches(_ filter: Filter) -> Bool {
            switch filter {
            case .attention: rank < 6
            case .failing: failing
            case .stale: stale
            case .behind: behind
            case .provisional: provisional
            case .quarantined: !quarantined.isEmpty
            case .updating, .paused, .offline: !stale && status == filter.rawValue
            }
        }

        /// Factories that need attention first: failing, stale, quarantined, flagged, behind,
        /// provisional; then the rest.
        var rank: Int {
            failing ? 0 : stale ? 1 : !quarantined.isEmpty ? 2 : attention != nil ? 3 : behind ? 4 : provisional ? 5 : 6
        }
    }

    var registrations: [Registration] { overview.registrations }

    func marks(_ r: Registration) -> Marks {
        Marks(stale: r.isStale(now: now, after: FleetRegistry.staleAfter), behind: overview.isBehind(r),
              failing: r.lastJobStatus == "FAILED",
              provisional: r.registrationStatus == "updating" && r.metadata["soak_seconds_left"]?.number != nil,
              quarantined: (r.metadata["quarantined"]?.array ?? []).compactMap { $0["commit"]?.string }.filter(Mission.isCommitID),
              attention: r.metadata["needs_attention"]?.string, status: r.registrationStatus)
    }

    var html: String {
        let marked = registrations.map { ($0, marks($0)) }
        var shown = marked
        if let filter = query.filter { shown = shown.filter { $0.1.matches(filter) } }
        if !query.search.isEmpty { shown = shown.filter { $0.0.factoryID.contains(query.search) } }
        shown.sort { ($0.1.rank, $0.0.factoryID) < ($1.1.rank, $1.0.factoryID) }
        let pages = max(1, (shown.count + Self.pageSize - 1) / Self.pageSize)
        let page = min(query.page, pages)
        let rows = shown.dropFirst((page - 1) * Self.pageSize).prefix(Self.pageSize).map { row($0.0, $0.1) }.joined(separator: "\n")
        let wanted = overview.wanted.sorted { $0.key < $1.key }.map { branch, want in
            "<li>\(escape(branch)): <code>\(escape(String(want.commit.prefix(7))))</code> (from <a href=\"#job-\(escape(want.jobID))\">\(escape(want.jobID))</a>)</li>"
        }
        let wantedBlock = wanted.isEmpty ? "" : "<section class=\"wanted\"><h2>Wanted</h2><ul>\(wanted.joined())</ul></section>"
        let body = registrations.isEmpty
            ? "<p class=\"empty\">No factory has registered yet.</p>"
            : shown.isEmpty ? "<p class=\"empty\">No factory matches.</p>"
            : """
            <table class="fleet">
            <thead><tr><th>Factory</th><th>Status</th><th>Branch</th><th>Commit</th><th>Last seen</th><th>Last job</th><th>Result</th></tr></thead>
            <tbody>
            \(rows)
            </tbody>
            </table>
            \(pager(page: page, pages: pages, count: shown.count))
            """
        return Self.document(title: "Fleet — factoryctl", content: """
        <header><h1>Fleet</h1><p>\(summary(marked)) · refreshes every \(Self.refreshSeconds) s · \(escape(Self.timestamp(now)))</p></header>
        \(filterBar)
        \(wantedBlock)
        \(rolloutBlock)
        \(body)
        \(jobSections)
        """)
    }

    /// "10000 factories: 9970 online, 30 updating · 12 stale, 40 behind, 3 failing, …", each count
    /// a link to the factories it counts.
    private func summary(_ marked: [(Registration, Marks)]) -> String {
        var text = "\(marked.count) factor\(marked.count == 1 ? "y" : "ies")"
        var byStatus: [String: Int] = [:]
        for (_, m) in marked where !m.stale { byStatus[m.status, default: 0] += 1 }
        if !byStatus.isEmpty {
            text += ": " + byStatus.sorted { ($0.value, $1.key) > ($1.value, $0.key) }.map { status, count in
                Filter(rawValue: status).map { "<a href=\"\(escape(query.link(filter: .some($0))))\">\(count) \(escape(status))</a>" } ?? "\(count) \(escape(status))"
            }.joined(separator: ", ")
        }
        let counted: [(Filter, Int)] = [Filter.stale, .behind, .failing, .provisional, .quarantined].map { filter in
            (filter, marked.filter { $0.1.matches(filter) }.count)
        }.filter { $0.1 > 0 }
        if !counted.isEmpty {
            text += " · " + counted.map { "<a href=\"\(escape(query.link(filter: .some($0.0))))\">\($0.1) \($0.0.label)</a>" }.joined(separator: ", ")
        }
        return text
    }

    /// Links to every view, the one shown marked, and a search by id (no script: a GET form).
    private var filterBar: String {
        let all = query.filter == nil ? "<strong>all</strong>" : "<a href=\"\(escape(query.link(filter: .some(nil))))\">all</a>"
        let links = Filter.allCases.map { filter in
            query.filter == filter ? "<strong>\(filter.label)</strong>" : "<a href=\"\(escape(query.link(filter: .some(filter))))\">\(filter.label)</a>"
        }
        let keep = query.filter.map { "<input type=\"hidden\" name=\"show\" value=\"\($0.rawValue)\">" } ?? ""
        return """
        <nav class="filters">Show: \(([all] + links).joined(separator: " · "))
        <form method="get" action="/">\(keep)<input name="q" value="\(escape(query.search))" placeholder="factory id contains" maxlength="64" aria-label="Search by factory id"> <button>Search</button></form></nav>
        """
    }

    /// "Factories 101–200 of 10000 · ‹ previous · next ›".
    private func pager(page: Int, pages: Int, count: Int) -> String {
        guard pages > 1 else { return "" }
        let first = (page - 1) * Self.pageSize + 1
        var parts = ["Factories \(first)–\(min(count, page * Self.pageSize)) of \(count) · page \(page) of \(pages)"]
        if page > 1 { parts.append("<a href=\"\(escape(query.link(page: page - 1)))\" rel=\"prev\">‹ previous</a>") }
        if page < pages { parts.append("<a href=\"\(escape(query.link(page: page + 1)))\" rel=\"next\">next ›</a>") }
        return "<p class=\"pager\">\(parts.joined(separator: " · "))</p>"
    }

    /// `text` for a query string: unreserved characters as they are, the rest percent-encoded.
    static func percentEncode(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                out += (byte < 16 ? "%0" : "%") + String(byte, radix: 16, uppercase: true)
            }
        }
        return out
    }

    static func unavailable(_ message: String) -> String {
        document(title: "Fleet — unavailable", content: "<h1>Fleet</h1><p class=\"error\">Redis is unavailable: \(escapeStatic(message))</p>")
    }

    private func row(_ r: Registration, _ marks: Marks) -> String {
        let isStale = marks.stale
        var status = isStale ? "\(r.registrationStatus) · stale" : r.registrationStatus
        let attention = marks.attention
        if attention != nil { status += " · needs attention" }
        if let left = r.metadata["soak_seconds_left"]?.number, r.registrationStatus == "updating" { status += " · provisional, \(wholeNumber(left)) s left" }
        if let left = r.metadata["splay_seconds_left"]?.number, r.registrationStatus == "updating" { status += " · waiting \(wholeNumber(left)) s (splay)" }
        if let deferred = r.metadata["deferred"]?.string, r.metadata["deferred_job_id"] != nil { status += " · \(deferred.prefix(160))" }
        let quarantined = marks.quarantined
        let result = r.lastJobStatus ?? "—"
        let resultClass = result == "SUCCESS" ? "ok" : (result == "FAILED" ? "bad" : "")
        let commit = escape(r.commit.map { String($0.prefix(7)) } ?? "—")
        let behind = marks.behind
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
            let listed = Self.listed(record.results)
            let rows = listed.map { result -> String in
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
            let counts = record.results.count > listed.count
                ? "<p class=\"counts\">\(record.results.count) results: \(record.results.filter(\.succeeded).count) succeeded, \(record.results.filter { !$0.succeeded }.count) did not; \(listed.isEmpty ? "none" : "the first \(listed.count) that did not") below (all of them: <code>factoryctl status --job \(escape(id))</code>)</p>"
                : ""
            let table = record.results.isEmpty ? "<p class=\"empty\">No factory has reported yet.</p>" : listed.isEmpty ? counts : """
                \(counts)
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

    /// A job's results as its section lists them: all up to `jobRowLimit`, else the first
    /// `jobRowLimit` that did not succeed (a 10,000-factory broadcast is counted, not listed).
    static func listed(_ results: [MissionResult]) -> [MissionResult] {
        results.count <= jobRowLimit ? results : Array(results.lazy.filter { !$0.succeeded }.prefix(jobRowLimit))
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

    static func escapeStatic(_ text: String) -> String { escapingMarkup(text) }

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
        nav.filters { margin: 0 0 1rem; color: #5b6572; }
        nav.filters form { display: inline-block; margin-left: 1rem; }
        nav.filters input { font: inherit; padding: .15rem .4rem; max-width: 12rem; }
        p.pager, p.counts { color: #5b6572; }
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
