import ArgumentParser
import FactoryKit
import FoundationEssentials
import Dispatch
import FactoryBasics
import Glibc
import GitKit
import Logging

struct UpdateCommand: FactoryctlCommand {
    static let configuration = CommandConfiguration(
        commandName: "update",
        abstract: "Pull the factory's branch (fetch + pull --rebase), sync dependencies, optionally restart.",
        discussion: """
        Runs the update pipeline natively (libgit2, no git process): take the checkout lock, \
        refuse a checkout with local changes to tracked files or an unfinished rebase/merge, \
        fetch origin, switch to the branch (creating it from origin/<branch> if missing), \
        integrate like `git pull --rebase`, run `uv sync`, and with --restart restart the \
        services and check they are active. A failed pull never runs `uv sync`; a failed sync \
        or an inactive service rolls the checkout back. Untracked and ignored files (.env, \
        .venv) are never touched. Each outcome is recorded in .git/factoryctl/history.jsonl.

        Examples:
          factoryctl update --restart
          factoryctl update --branch release --factory-dir /srv/factory --json
          factoryctl update --dry-run

        Environment: UA_FACTORY_DIR, UA_FACTORY_SERVICE (comma-separated), \
        UA_FACTORY_SYNC_COMMAND (default "uv sync"), FACTORYCTL_SSH_KEY, \
        FACTORYCTL_SSH_PASSPHRASE, FACTORYCTL_GIT_TOKEN, FACTORYCTL_FETCH_TIMEOUT, \
        GIT_SSL_CAINFO (a private CA for HTTPS remotes). \
        Exit codes: see `factoryctl --help`.

        With --commit SHA the update moves exactly to that commit, which must be on \
        origin/<branch> (else it fails, nothing changed). An update that would move the \
        checkout to older code, or past a force-push that dropped commits it runs, is refused \
        (exit 8) unless --allow-rewind. With UA_ALLOWED_SIGNERS (git's allowed_signers file), \
        the update moves only to code whose commit carries an SSH signature (gpg.format=ssh, \
        Ed25519) by an allowed signer; otherwise it fails with nothing changed. With --restart \
        and UA_FACTORY_HEALTH_URL, the URL must answer 2xx within UA_FACTORY_HEALTH_TIMEOUT \
        seconds (default 30) after the restart, or the update rolls back.

        With UA_FACTORY_UPDATE_LOCK=PATH, the update takes that file's flock before it changes \
        anything and holds it until it is done; while the app holds it, the update waits up to \
        --app-lock-timeout seconds (default 600), then fails (exit 3, failure app_lock_held) \
        with nothing changed. --ignore-app-lock goes ahead anyway and says so in the history.

        A network fetch runs in a child process: when the remote sends nothing for \
        --fetch-timeout seconds, or on Ctrl-C/SIGTERM, the child is ended, the lock is \
        released and the update exits 5 (or 1 when cancelled) with nothing changed. An update \
        killed part-way (kill -9, power loss) leaves an intent record in .git/factoryctl/; the \
        next update or consumer undoes what it left (stale git locks, a half-written work tree, \
        an environment synced for another commit), says so, then updates as usual.
        """
    )

    @OptionGroup var global: GlobalOptions
    @OptionGroup var directory: FactoryDirectoryOption
    @OptionGroup var revision: RevisionOptions
    @OptionGroup var pipeline: PipelineOptions
    @OptionGroup var appLock: AppLockOptions

    @Flag(name: .long, help: "Restart the services afterwards and check they are active.")
    var restart = false

    @Flag(name: [.customShort("n"), .long], help: "Fetch and report what would change; change nothing else.")
    var dryRun = false

    @Flag(name: .long, help: "Exit 0 only when the checkout changed; exit 11 when it was already up to date (for cron and timer wrappers, like ansible-pull's --only-if-changed).")
    var exitCode = false

    @Flag(name: .long, help: "Wait for another update's lock instead of failing at once.")
    var waitLock = false

    @Option(name: .long, help: ArgumentHelp(
        "Longest a network fetch may wait without progress (connect or read) before it is stopped (env FACTORYCTL_FETCH_TIMEOUT; default 120).",
        valueName: "seconds"))
    var fetchTimeout: Double?

    @Flag(name: .long, help: "Move to a commit that is quarantined here (it failed on this factory before), this once.")
    var retryQuarantined = false

    @Option(name: .long, help: ArgumentHelp("Wait a random delay in [0, SECONDS) before anything else, so factories run from timers do not all fetch at once (like ansible-pull's --sleep; at most 3600).", valueName: "seconds"))
    var splay: Int = 0

    @Flag(name: .long, help: "Print one JSON object instead of the summary.")
    var json = false

    func validate() throws {
        guard (0...Mission.maximumSplaySeconds).contains(splay) else { throw ValidationError("--splay must be 0...\(Mission.maximumSplaySeconds) seconds") }
        if pipeline.soak.map({ $0 > 0 }) == true, !restart { throw ValidationError("--soak watches the restarted services: it needs --restart") }
        if let fetchTimeout, !FactoryEnvironment.isValidFetchTimeout(fetchTimeout) {
            throw ValidationError("--fetch-timeout must be between 0 and 86400 seconds")
        }
    }

    func run(_ context: CommandContext) throws {
        let settings = try pipeline.settings(appLock.apply(to: pipeline.flags(restart: restart, waitForLock: waitLock, fetchTimeout: fetchTimeout)), context)
        var request = UpdateRequest(factoryDirectory: directory.resolve(context, searchUpward: true), branch: revision.branch,
                                    commit: revision.commitID, allowRewind: revision.allowRewind, settings: settings)
        request.dryRun = dryRun
        request.retryQuarantined = retryQuarantined
        var run = PipelineRun(request: request, logger: global.logger("factoryctl.update", context))
        run.splaySeconds = Double(splay)
        let report = run.run(context, meter: true)
        var status = ExitStatus(report)
        if status == .success, exitCode, !report.changed, !report.dryRun { status = .upToDate }
        try UpdateSummary(report: report).write(to: context, json: json, status: status)
        if status != .success {
            throw CommandFailure(code: status, message: status == .upToDate ? "" : report.error ?? "update failed")
        }
    }
}

/// Runs the update pipeline under the context's stop signal, as `update` and `rollback` do.
///
/// Ctrl-C, SIGTERM, a dropped SSH session (SIGHUP), SIGQUIT or a dead output pipe stop the
/// update at once only while nothing has changed yet; once the checkout moves, the pipeline
/// finishes (or rolls back) rather than leave it half-updated. A sync still running
/// `UpdatePipeline.syncStopGrace` seconds after the stop (or at a second one) is ended, and the
/// intent record is left for the next run to finish.
struct PipelineRun {
    let request: UpdateRequest
    let logger: Logger
    /// `update --splay`: a random wait in [0, S) first (stopped by the same signals: nothing changed).
    var splaySeconds: Double = 0

    func run(_ context: CommandContext, meter showsProgress: Bool = false) -> UpdateReport {
        let stop = context.stopSignal(brokenPipe: true)
        var pipeline = stoppablePipeline(stop)
        let waited: Int?
        switch splay(stop) {
        case .failure(let stopped): return stopped.report
        case .success(let milliseconds): waited = milliseconds
        }
        let meter = ProgressMeter(stream: context.stderr, enabled: showsProgress && context.stderr.isTerminal)
        if showsProgress { pipeline.progress = meter.show }
        var report = pipeline.run()
        meter.finish()
        if let waited { report.stepsMs = (report.stepsMs ?? [:]).merging(["splay": waited]) { $1 } }
        return report
    }
}

extension PipelineRun {
    struct Stopped: Error { let report: UpdateReport }

    /// The pipeline for `request`, stopped by `stop`: once nothing is half-done, a running sync
    /// after `UpdatePipeline.syncStopGrace` seconds (said in the log when the stop comes).
    private func stoppablePipeline(_ stop: StopSignal) -> UpdatePipeline {
        var pipeline = UpdatePipeline(request: request, logger: logger)
        pipeline.shouldCancel = { stop.isSet }
        pipeline.shouldStopSync = { stop.childShouldStop(grace: UpdatePipeline.syncStopGrace) }
        let logger = self.logger
        stop.onSet {
            logger.notice("asked to stop: stopping once nothing is half-done (a running sync gets up to \(Int(UpdatePipeline.syncStopGrace)) s; ask again to end it now)")
        }
        return pipeline
    }

    /// `--splay`: the milliseconds waited (nil without one), or the report of a run stopped
    /// during the wait (nothing changed).
    func splay(_ stop: StopSignal) -> Result<Int?, Stopped> {
        guard splaySeconds > 0 else { return .success(nil) }
        let delay = Double.random(in: 0..<splaySeconds)
        logger.info("waiting \(delay.fixed(1)) s (splay \(Int(splaySeconds)) s) before updating")
        guard stop.sleep(delay) else {
            var report = UpdateReport(branch: request.branch, startedAt: Date())
            report.failure = .cancelled
            report.error = "stopped during the splay wait; nothing was changed"
            report.finishedAt = Date().timeIntervalSince1970
            return .failure(Stopped(report: report))
        }
        return .success(Int(delay * 1000))
    }
}

/// Fetch progress on a terminal; silent otherwise (never in logs).
final class ProgressMeter {
    let stream: CommandOutput
    let enabled: Bool
    private var lastPercent = -1

    init(stream: CommandOutput, enabled: Bool) {
        self.stream = stream
        self.enabled = enabled
    }

    func show(_ progress: FetchProgress) {
        guard enabled, progress.totalObjects > 0 else { return }
        let percent = progress.receivedObjects * 100 / progress.totalObjects
        guard percent != lastPercent else { return }
        lastPercent = percent
        let kib = progress.receivedBytes / 1024
        stream.progress("Receiving objects: \(percent)% (\(progress.receivedObjects)/\(progress.totalObjects)), \(kib) KiB")
    }

    func finish() {
        stream.endProgress()
    }
}

/// The human summary of an update.
struct UpdateSummary {
    let report: UpdateReport

    /// The report as one JSON object, or the summary lines.
    func write(to context: CommandContext, json: Bool, status: ExitStatus) throws {
        if json {
            try context.printJSON(report, exit: status)
        } else {
            lines.forEach(context.say)
        }
    }

    var lines: [String] {
        var lines: [String] = []
        if let recovery = report.recovery { lines.append("Recovered first: \(recovery)") }
        if report.rolledBack { return lines + rolledBackLines }
        // Nothing happened, and nothing else is said.
        if report.integration == .upToDate, !report.dryRun, !report.changed {
            return lines + ["Already up to date at \(report.shortTo ?? "?")"]
        }
        if let integration = integrationLine { lines.append(integration) }
        if report.integration != .none, report.previousBranch != report.branch, report.integration != .created {
            lines.append("\(report.dryRun ? "Would switch" : "Switched") from \(report.previousBranch ?? "detached HEAD") to \(report.branch)")
        }
        let shown = report.commits.suffix(10)
        for commit in shown.reversed() {
            lines.append("  \(commit.sha.prefix(7)) \(commit.summary)")
        }
        // Counted from all the commits pulled, not from the (capped) list in the report.
        if report.commitCount > shown.count {
            lines.append("  … and \(Self.grouped(report.commitCount - shown.count)) more")
        }
        if report.synced { lines.append("Synced dependencies") }
        if report.syncSkipped == true { lines.append("Dependencies unchanged: sync skipped (--force-sync runs it anyway)") }
        if report.restarted { lines.append("Restarted \(report.services.joined(separator: ", "))") }
        if report.succeeded && !report.dryRun {
            lines.append("Factory updated to \(report.shortTo ?? "?")")
        } else if report.succeeded {
            lines.append("Dry run: nothing was changed")
        }
        return lines
    }

    /// A rolled-back run says what it tried and where the checkout is; nothing it undid.
    private var rolledBackLines: [String] {
        let from = report.shortFrom ?? "?"
        let tried = report.attempted.map { String($0.prefix(7)) } ?? "?"
        let why = report.failure.map(Self.describe) ?? "the update failed"
        // The error's own words, without the rollback clause the line already says.
        let detail = report.error.map { ": " + ($0.components(separatedBy: "; rolled back to").first ?? $0) } ?? ""
        var lines = ["Rolled back: tried \(from) → \(tried), \(why)\(detail); still at \(from)"]
        if let down = report.inactiveAfterRollback, !down.isEmpty {
            lines.append("Needs attention: still not active after the rollback: \(down.joined(separator: ", "))")
        }
        return lines
    }

    /// How the branch was integrated (or would be, for a dry run); nil when it was not reached.
    private var integrationLine: String? {
        let from = report.shortFrom ?? "?"
        let to = report.shortTo ?? "?"
        let prefix = report.dryRun ? "Would " : ""
        let branch = report.branch
        switch report.integration {
        case .none:
            return nil
        case .upToDate:
            return "\(branch) is up to date with origin/\(branch) at \(to)"
        case .fastForward:
            return "\(prefix.isEmpty ? "Fast-forwarded" : prefix + "fast-forward") \(branch) \(from) → \(to) (\(plural(report.commitCount, "commit")) pulled)"
        case .rebase where report.wouldConflict == true:
            return "Would rebase \(report.rebasedCommits > 0 ? plural(report.rebasedCommits, "local commit") : "local commits") onto origin/\(branch): CONFLICT in \(report.paths.joined(separator: ", "))"
        case .rebase:
            return "\(prefix.isEmpty ? "Rebased" : prefix + "rebase") \(plural(report.rebasedCommits, "local commit")) onto origin/\(branch) (\(plural(report.commitCount, "commit")) pulled): \(from) → \(to)"
        case .rewind:
            return "\(prefix.isEmpty ? "Rewound" : prefix + "rewind") \(branch) \(from) → \(to) (allowed: older code\(report.pinned != nil ? ", pinned" : ""))"
        case .created:
            return "\(prefix.isEmpty ? "Created" : prefix + "create") \(branch) from origin/\(branch) at \(to) (was on \(report.previousBranch ?? "detached HEAD") at \(from))"
        }
    }

    /// 1990 → "1,990".
    static func grouped(_ number: Int) -> String {
        let digits = Array(String(number))
        var out = ""
        for (index, digit) in digits.enumerated() {
            if index > 0, (digits.count - index) % 3 == 0 { out += "," }
            out.append(digit)
        }
        return out
    }

    static func describe(_ failure: UpdateFailure) -> String {
        switch failure {
        case .syncFailed: "the dependency sync failed"
        case .serviceInactive: "a service did not come up"
        case .cancelled: "it was stopped"
        case .internalError: "an internal error"
        default: failure.rawValue.replacing("_", with: " ")
        }
    }

    private func plural(_ count: Int, _ noun: String) -> String {
        "\(count) \(noun)\(count == 1 ? "" : "s")"
    }
}
