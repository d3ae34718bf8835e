import ArgumentParser
import FactoryKit
import FoundationEssentials
import Dispatch
import FactoryBasics
import Glibc

struct StatusCommand: FactoryctlCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show the local checkout, the whole fleet (--fleet), or one mission's results (--job).",
        discussion: """
        Without --fleet or --job: branch, HEAD, upstream with ahead/behind (as of the last fetch; \
        --fetch refreshes), modified tracked files and the last recorded update. --fleet reads \
        the registry in Redis: one row per factory, stale ones (no heartbeat for 90 s) marked. \
        --job shows the per-factory results of one mission.

        Examples:
          factoryctl status
          factoryctl status --fetch --json
          factoryctl status --fleet
          factoryctl status --job update-0123456789ab --json
          factoryctl status --rollout rollout-0123456789ab
        """
    )

    @OptionGroup var global: GlobalOptions
    @OptionGroup var directory: FactoryDirectoryOption

    @Flag(name: .long, help: "Fetch origin first so ahead/behind are current.")
    var fetch = false

    @Flag(name: .long, help: "Print JSON instead of text.")
    var json = false

    @Flag(name: .long, help: "Show every registered factory (from Redis).")
    var fleet = false

    @Option(name: .long, help: ArgumentHelp("Show the per-factory results of one mission.", valueName: "job-id"))
    var job: String?

    @Option(name: .long, help: ArgumentHelp("Show a staged rollout: its state, waves, and where each factory is.", valueName: "rollout-id"))
    var rollout: String?

    @OptionGroup var redis: RedisOptions

    func validate() throws {
        if [fleet, job != nil, rollout != nil].filter({ $0 }).count > 1 { throw ValidationError("use one of --fleet, --job and --rollout") }
        if let rollout, !MissionID.isValid(rollout) { throw ValidationError("invalid rollout id '\(rollout)'") }
        if let job, !MissionID.isValid(job) { throw ValidationError("invalid job id '\(job)'") }
    }

    func run(_ context: CommandContext) throws {
        if fleet { return try showFleet(context) }
        if let job { return try showJob(job, context) }
        if let rollout { return try showRollout(rollout, context) }
        let status: LocalStatus
        do {
            status = try LocalStatus.read(factoryDirectory: directory.resolve(context, searchUpward: true), fetch: fetch,
                                          environment: context.environment.values)
        } catch {
            throw CommandFailure(code: .failedUnchanged, message: "\(error)")
        }
        if json {
            try context.printJSON(status)
        } else {
            LocalStatusText(status: status).lines.forEach(context.say)
        }
    }
}

struct LocalStatusText {
    let status: LocalStatus

    var lines: [String] {
        var lines = ["Factory:  \(status.factoryDirectory)"]
        let head = status.head.map { String($0.prefix(7)) } ?? "(no commit)"
        lines.append("Branch:   \(status.branch ?? "(detached HEAD)")")
        lines.append("HEAD:     \(head) \(status.headSummary ?? "")")
        if let upstream = status.upstream, let commit = status.upstreamCommit {
            let counts = "\(status.ahead ?? 0) ahead, \(status.behind ?? 0) behind"
            lines.append("Upstream: \(upstream) at \(commit.prefix(7)) (\(counts)\(status.fetched ? "" : ", as of the last fetch"))")
        } else {
            lines.append("Upstream: none")
        }
        if let error = status.fetchError { lines.append("Fetch:    failed: \(error)") }
        if let releases = status.releases {
            lines.append("Layout:   releases (current → releases/\(releases.first(where: \.live)?.name ?? "?"), \(releases.filter(\.complete).count) kept)")
            for release in releases {
                let mark = release.live ? "live" : release.previous ? "rollback target" : release.complete ? "kept" : "half-built (pruned by the next update)"
                lines.append("  \(release.name) \(release.branch) \(mark)")
            }
        }
        if status.state != "clean" { lines.append("State:    \(status.state) in progress") }
        if status.modified.isEmpty {
            lines.append("Changes:  none to tracked files")
        } else {
            lines.append("Changes:  \(status.modified.count) tracked file(s)")
            for change in status.modified { lines.append("  \(change.change): \(change.path)") }
        }
        if let attention = status.needsAttention { lines.append("Needs attention: \(attention)") }
        if let provisional = status.provisional {
            lines.append("Provisional: \(provisional.commit.map { String($0.prefix(7)) } ?? "?") is soaking, \(Int(provisional.secondsLeft)) s of \(Int(provisional.soakSeconds)) s left")
        }
        for entry in status.quarantined.prefix(10) {
            lines.append("Quarantined: \(entry.commit.prefix(7)) \(entry.summary)")
        }
        if let last = status.lastUpdate {
            let when = Date(timeIntervalSince1970: last.finishedAt ?? last.startedAt)
            let result = last.succeeded ? "success" : "failed (\(last.failure?.rawValue ?? "?"))\(last.rolledBack ? ", rolled back" : "")"
            lines.append("Last update: \(when.formatted(.iso8601)) \(last.branch) \(last.shortFrom ?? "?") → \(last.shortTo ?? "?"): \(result)")
        } else {
            lines.append("Last update: none recorded")
        }
        return lines
    }
}

extension StatusCommand {
    func showFleet(_ context: CommandContext) throws {
        let bus = try redis.bus(context)
        let entries = try withRedis("read the fleet registry") { try FleetRegistry(redis: bus.redis).entries(capabilities: json) }
        let now = context.now()
        let rows = entries.map { FleetRow(entry: $0, now: now) }
        if json { context.printJSON(bytes: FleetJSON.document(rows)); return }
        if rows.isEmpty { context.say("No factory has registered yet."); return }
        let header = ["FACTORY", "STATUS", "BRANCH", "COMMIT", "LAST SEEN", "LAST JOB", "RESULT", "FACTORYCTL"]
        let table = rows.map { row in
            [row.factoryID, row.stale ? "\(row.status) (stale)" : row.status, row.branch ?? "-",
             row.commit.map { String($0.prefix(7)) } ?? "-", age(row.lastSeenSeconds), row.lastJobID ?? "-", row.lastJobStatus ?? "-",
             row.version.isEmpty ? "-" : row.version]
        }
        context.stdout.write(bytes: renderBytes([header] + table))
    }

    func showRollout(_ id: String, _ context: CommandContext) throws {
        let bus = try redis.bus(context)
        let logger = global.logger("factoryctl.status", context)
        let runner = Rollout(publisher: Publisher(bus: bus, logger: logger), logger: logger)
        let summary: Rollout.Summary
        do {
            summary = try withRedis("read rollout \(id)") { try runner.summary(id) }
        } catch let error as FactoryError {
            throw CommandFailure(code: .failedUnchanged, message: "\(error)")
        }
        try RolloutText(summary: summary).write(to: context, json: json)
    }

    func showJob(_ jobID: String, _ context: CommandContext) throws {
        let bus = try redis.bus(context)
        let (record, live) = try withRedis("read job \(jobID)") {
            (try bus.job(jobID), try FleetRegistry(redis: bus.redis).liveFactoryIDs())
        }
        let pending = record.pending(among: live)
        let unknown = "no record of job \(jobID) (unknown, or older than 7 days)"
        if json {
            try context.printJSON(JobStatus(jobID: jobID, known: record.known,
                                    meta: record.meta, results: record.results.map(\.json), pending: pending),
                          exit: record.known ? .success : .failedUnchanged, error: record.known ? nil : unknown)
        }
        guard record.known else { throw CommandFailure(code: .failedUnchanged, message: unknown) }
        if json { return }
        if let meta = record.meta {
            context.say("Job \(jobID): \(meta["kind"]?.string ?? "?") branch \(meta["branch"]?.string ?? "?") for \(record.target?.description ?? "?")")
        }
        let rows = record.results.map { result -> [String] in
            let r = result.result
            return [result.factoryID ?? "?", result.status, r["outcome"]?.string ?? "-",
                    r["from_commit"]?.string.map { String($0.prefix(7)) } ?? "-",
                    r["to_commit"]?.string.map { String($0.prefix(7)) } ?? "-", result.error ?? ""]
        } + pending.map { [$0, "PENDING", "-", "-", "-", ""] }
        context.sayAll(render([["FACTORY", "STATUS", "OUTCOME", "FROM", "TO", "ERROR"]] + rows))
    }

    private func age(_ seconds: Double) -> String {
        switch seconds {
        case ..<60: "\(Int(seconds))s ago"
        case ..<3600: "\(Int(seconds / 60))m ago"
        case ..<86_400: "\(Int(seconds / 3600))h ago"
        default: "\(Int(seconds / 86_400))d ago"
        }
    }
}

/// Columns padded to the widest cell.
func render(_ rows: [[String]]) -> [String] {
    renderBytes(rows).split(separator: 0x0A, omittingEmptySubsequences: false).dropLast().map { String(decoding: $0, as: UTF8.self) }
}

/// `render`'s table as one buffer of bytes, each line ended by a newline: the fleet's 10,000 rows
/// without a String per line.
func renderBytes(_ rows: [[String]]) -> [UInt8] {
    guard let first = rows.first else { return [] }
    func width(_ cell: String) -> Int {
        let utf8 = cell.utf8
        return utf8.allSatisfy { $0 < 0x80 } ? utf8.count : cell.count
    }
    var widths = [Int](repeating: 0, count: first.count)
    var cellWidths: [Int] = []
    cellWidths.reserveCapacity(rows.count * first.count)
    for row in rows {
        for (column, cell) in row.enumerated() {
            let w = width(cell)
            cellWidths.append(w)
            if column < widths.count { widths[column] = max(widths[column], w) }
        }
    }
    var out: [UInt8] = []
    out.reserveCapacity(rows.count * (widths.reduce(0, +) + 2 * widths.count + 1))
    var cellIndex = 0
    for row in rows {
        let start = out.count
        for (index, cell) in row.enumerated() {
            if index > 0 { out.append(0x20); out.append(0x20) }
            out.append(contentsOf: cell.utf8)
            if index < row.count - 1, index < widths.count {
                let pad = widths[index] - cellWidths[cellIndex]
                if pad > 0 { out.append(contentsOf: repeatElement(0x20, count: pad)) }
            }
            cellIndex += 1
        }
        while out.count > start, out.last == 0x20 { out.removeLast() }
        out.append(0x0A)
    }
    return out
}

struct FleetRow: Encodable {
    let factoryID: String
    let status: String
    let stale: Bool
    let branch: String?
    let commit: String?
    let lastSeenAt: Double
    let lastSeenSeconds: Double
    let lastJobID: String?
    let lastJobStatus: String?
    let capabilities: [String]
    let host: String
    let pid: Int32
    /// factoryctl's version on that factory (`0.2.0+<commit>` for packaged builds).
    let version: String

    init(entry registration: FleetEntry, now: Date) {
        factoryID = registration.factoryID
        status = registration.status
        stale = registration.isStale(now: now, after: FleetRegistry.staleAfter)
        branch = registration.branch
        commit = registration.commit
        lastSeenAt = registration.lastSeenAt
        lastSeenSeconds = max(0, now.timeIntervalSince1970 - registration.lastSeenAt)
        lastJobID = registration.lastJobID
        lastJobStatus = registration.lastJobStatus
        capabilities = registration.capabilities
        host = registration.host
        pid = registration.pid
        version = registration.version
    }

    enum CodingKeys: String, CodingKey {
        case status, stale, branch, commit, capabilities, host, pid, version
        case factoryID = "factory_id", lastSeenAt = "last_seen_at", lastSeenSeconds = "last_seen_seconds"
        case lastJobID = "last_job_id", lastJobStatus = "last_job_status"
    }
}

/// `status --fleet --json`: one object, the rows under `factories` (written by `FleetJSON`;
/// the Encodable form is the reference the test holds it to).
struct FleetStatus: Encodable {
    let factories: [FleetRow]
}

struct JobStatus: Encodable {
    let jobID: String
    let known: Bool
    let meta: JSONValue?
    let results: [JSONValue]
    let pending: [String]

    enum CodingKeys: String, CodingKey {
        case known, meta, results, pending
        case jobID = "job_id"
    }
}
