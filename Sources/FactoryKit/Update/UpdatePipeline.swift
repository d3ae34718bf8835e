import FoundationEssentials
import Dispatch
import FactoryBasics
import Glibc
import GitKit
import Logging

/// The update pipeline of DESIGN.md: lock, preflight, fetch, switch, pull --rebase, sync, restart,
/// roll back on failure, record. It never throws: every outcome is an `UpdateReport`.
public struct UpdatePipeline {
    public var request: UpdateRequest
    public var logger: Logger
    /// Fetch progress, for a terminal (never logged).
    public var progress: ((FetchProgress) -> Void)?
    /// Polled between steps and during the fetch (SIGTERM); checked only while nothing is changed yet.
    public var shouldCancel: () -> Bool = { false }
    /// Polled while the dependency sync runs: true ends the sync's process group and stops the
    /// update there, leaving the intent record for the next run to finish (a second SIGTERM or
    /// SIGHUP, or the stop's grace period over). The default lets the sync finish.
    public var shouldStopSync: () -> Bool = { false }

    /// Seconds a running sync may go on after a stop request before it is ended (a second
    /// request ends it at once): long enough for most syncs to finish, short enough for
    /// systemd's stop timeout.
    public static let syncStopGrace: Double = 20

    public init(request: UpdateRequest, logger: Logger = Logger(label: "factoryctl.update")) {
        self.request = request
        self.logger = logger
    }

    public func run() -> UpdateReport {
        let started = Date()
        var report = UpdateReport(branch: request.branch, startedAt: started)
        report.dryRun = request.dryRun
        report.jobID = request.jobID
        var held: (lock: CheckoutLock, gitDirectory: String)?
        var keepJournal = false
        var unfinished = false
        do {
            try execute(&report, held: &held)
        } catch let stop as Stop {
            report.status = .failed
            report.failure = stop.failure
            report.error = stop.message
            report.paths = stop.paths
            // A failed repair or rollback keeps its record, so the next run tries again.
            keepJournal = stop.failure == .rollbackFailed || stop.keepJournal
            // Stopped part-way on purpose: the record is the truth, and the run that finishes it
            // records the outcome (a history entry would make the record look finished).
            unfinished = stop.keepJournal
        } catch {
            report.status = .failed
            report.failure = .internalError
            report.error = "\(error)"
        }
        let finished = Date()
        report.finishedAt = finished.timeIntervalSince1970
        report.durationMs = Int(finished.timeIntervalSince(started) * 1000)
        // Recorded while the lock is still held, so two updates never interleave their writes;
        // the intent record goes only once the outcome is in the history.
        if let held {
            if request.recordHistory, !request.dryRun, !unfinished {
                do {
                    try UpdateHistory(gitDirectory: held.gitDirectory).append(report)
                } catch {
                    logger.warning("could not record the outcome in history: \(error)")
                }
            }
            if !keepJournal { ApplyJournal.remove(gitDirectory: held.gitDirectory) }
        }
        withExtendedLifetime(held?.lock) {}
        return report
    }

    /// A failure that ends the pipeline.
    struct Stop: Error {
        let failure: UpdateFailure
        let message: String
        var paths: [String] = []
        /// Leave the intent record in place: the next run must finish what this one could not.
        var keepJournal = false
    }

    private func execute(_ report: inout UpdateReport, held: inout (lock: CheckoutLock, gitDirectory: String)?) throws {
        let branch = request.branch
        do {
            try BranchName.validate(branch)
        } catch {
            throw Stop(failure: .invalidBranch, message: "\(error); nothing was changed")
        }
        // The sync program is found before anything moves: a missing uv must not be discovered
        // after the checkout changed (which would end in a rollback).
        if request.sync, !request.dryRun, let program = request.syncCommand.first {
            do {
                _ = try ProcessRunner(environment: request.environment).resolve(program)
            } catch let ProcessRunnerError.notFound(name, searched) {
                throw Stop(failure: .syncUnavailable,
                           message: "the sync program \(name) was not found (looked in \(searched.joined(separator: ":"))); install it, set UA_FACTORY_SYNC_COMMAND to the command to run, or pass --no-sync. Nothing was changed")
            } catch {
                throw Stop(failure: .syncUnavailable, message: "\(error); nothing was changed")
            }
        }
        // The same for --restart: a user manager that cannot be reached (no XDG_RUNTIME_DIR in an
        // SSH session without lingering) would otherwise be found only after the checkout moved.
        if request.restart, !request.dryRun {
            let services = ServiceManager(runner: ProcessRunner(environment: request.environment), logger: logger)
            if let reason = services.unreachableReason() {
                let runtime = request.environment["XDG_RUNTIME_DIR"].map { "XDG_RUNTIME_DIR=\($0)" } ?? "XDG_RUNTIME_DIR is not set"
                throw Stop(failure: .systemdUnavailable,
                           message: "--restart needs the user's service manager, and systemctl --user cannot reach it: \(reason) (\(runtime)). Usual fixes: `loginctl enable-linger $USER` once (so the manager runs without a login session), and export XDG_RUNTIME_DIR=/run/user/$(id -u) in this shell. Nothing was changed")
            }
        }
        let repository: Repository
        do {
            repository = try Repository.open(at: request.factoryDirectory)
        } catch let error as GitError where error.isLibraryMissing {
            throw Stop(failure: .internalError, message: "\(error.message); nothing was changed")
        } catch {
            throw Stop(failure: .notARepository,
                       message: "\(request.factoryDirectory) is not a git checkout (\(error)); set --factory-dir or UA_FACTORY_DIR")
        }
        guard repository.workingDirectory != nil else {
            throw Stop(failure: .notARepository, message: "\(request.factoryDirectory) is a bare repository, not a checkout")
        }
        // 1. Lock.
        let lock: CheckoutLock
        do {
            lock = try CheckoutLock.acquire(
                gitDirectory: repository.gitDirectory, wait: request.waitForLock,
                onWait: { holder in logger.notice("waiting for the update lock held by pid \(holder.map(String.init) ?? "?")") },
                shouldCancel: { shouldCancel() || pastDeadline })
        } catch {
            switch error {
            case .held(_, let pid):
                throw Stop(failure: .lockHeld,
                           message: "another update is running on this checkout (pid \(pid.map(String.init) ?? "unknown")); nothing was changed. Wait for it, or pass --wait-lock")
            case .io(let path, let code):
                throw Stop(failure: .internalError, message: "cannot lock \(path): \(String(cString: strerror(code)))")
            case .cancelled:
                throw Stop(failure: .cancelled, message: "stopped while waiting for the update lock; nothing was changed")
            }
        }
        held = (lock, repository.gitDirectory)
        if let recovery = try recover(repository, deferSync: request.sync && !request.dryRun) {
            report.recovery = recovery.message
        }
        try update(repository, &report)
    }

    private func update(_ repository: Repository, _ report: inout UpdateReport) throws {
        let branch = request.branch
        let remote = request.remote

        // 2. Preflight.
        let state = repository.state
        guard state == .clean else {
            throw Stop(failure: .preflight,
                       message: "the checkout is in the middle of \(state.inProgressName); finish or abort it (git \(abortHint(state))) and run the update again. Nothing was changed")
        }
        let original = try repository.head()
        guard let originalCommit = original.commit else {
            throw Stop(failure: .preflight, message: "HEAD has no commit yet (unborn branch \(original.branchName ?? "?")); nothing was changed")
        }
        report.from = originalCommit.hex
        report.to = originalCommit.hex
        report.previousBranch = original.branchName
        let changes = try report.time("status") { try repository.trackedChanges() }
        guard changes.isEmpty else {
            let list = changes.map { "\($0.change): \($0.path)" }.joined(separator: ", ")
            throw Stop(failure: .preflight,
                       message: "tracked files have local changes (\(list)); commit, stash or revert them first. Nothing was changed",
                       paths: changes.map(\.path))
        }
        try checkCancelled()

        report.pinned = request.commit?.hex
        // Dedupe by version: pinned to the commit the branch already runs, nothing to fetch.
        if let pinned = request.commit, case .branch(let name, let commit) = original, name == branch, commit == pinned {
            logger.info("already at the pinned commit \(pinned.short)")
            if let owed = EnvironmentDebt.read(gitDirectory: repository.gitDirectory), request.sync {
                try payDebt(owed, repository, commit: pinned, &report)
            }
            report.upstream = pinned.hex
            report.integration = .upToDate
            report.status = .success
            return
        }
        // origin's branch before the fetch: what this factory last knew as upstream.
        let originBefore = try repository.resolve(reference: "refs/remotes/\(remote)/\(branch)")

        // 3. Fetch. The record lets a later run remove lock files a killed fetch leaves behind.
        let startedAt = report.startedAt
        var journal = ApplyJournal(phase: .fetch, startedAt: startedAt, branch: branch, jobID: request.jobID)
        try advance(&journal, to: .fetch, repository)
        logger.info("fetching \(remote)")
        try report.time("fetch") { try fetch(repository, remote: remote, journal: &journal) }
        try checkCancelled()

        // 4–5. Plan: which commit the branch should end on.
        guard let tip = try repository.resolve(reference: "refs/remotes/\(remote)/\(branch)") else {
            throw Stop(failure: .branchMissing, message: "\(remote) has no branch '\(branch)'; nothing was changed")
        }
        let upstream = try pinnedUpstream(repository, tip: tip)
        report.upstream = upstream.hex
        let localTip = try repository.resolve(reference: "refs/heads/\(branch)")
        // Incoming commits: upstream's, measured from the local branch (or from HEAD for a new branch).
        let base = localTip ?? originalCommit
        let (ahead, behind) = try repository.aheadBehind(local: base, upstream: upstream)
        report.commitCount = behind
        report.commits = try repository.commits(from: base, to: upstream, limit: 100).map(CommitLine.init)
        let rewind = try checkRewind(repository, base: base, upstream: upstream, originBefore: originBefore)

        let target: ObjectID
        if rewind {
            target = upstream
            report.integration = .rewind
            report.commitCount = 0
            report.commits = []
        } else if let localTip {
            switch (ahead, behind) {
            case (_, 0):
                target = localTip
                report.integration = .upToDate
            case (0, _):
                target = upstream
                report.integration = .fastForward
            default:
                logger.info("rebasing \(ahead) local commit(s) onto \(remote)/\(branch)")
                switch try repository.rebaseInMemory(tip: localTip, onto: upstream) {
                case .rebased(let tip, let applied, _):
                    target = tip
                    report.integration = .rebase
                    report.rebasedCommits = applied
                    if request.dryRun { report.wouldConflict = false }
                case .conflict(let commit, let paths):
                    if request.dryRun {
                        report.wouldConflict = true
                        report.integration = .rebase
                        report.paths = paths
                        report.status = .success
                        return
                    }
                    throw Stop(failure: .conflict,
                               message: "rebasing local commit \(commit.id.short) (\(commit.summary)) onto \(remote)/\(branch) conflicts in \(paths.joined(separator: ", ")); the rebase was aborted and the checkout is exactly as it was. Resolve by hand (git pull --rebase) or drop the local commits",
                               paths: paths)
                }
            }
        } else {
            target = upstream
            report.integration = .created
        }
        let switching: Bool
        if case .branch(let name, _) = original { switching = name != branch } else { switching = true }
        report.to = target.hex
        report.changed = switching || target != originalCommit
        // Whatever changes the code that runs — a fast-forward, a rebase, a rewind, and a switch to
        // a local branch that is already up to date — passes the same gate: the upstream code it
        // brings must be signed by an allowed signer (local commits replayed on top are the
        // operator's own and are not). Pins and anti-rewind were applied above, for every move.
        if let policy = request.signaturePolicy, report.changed {
            do {
                let signer = try policy.check(upstream, in: repository)
                logger.info("\(upstream.short) is signed by \(signer)")
            } catch {
                throw Stop(failure: .signatureRefused,
                           message: "\(error.description); refusing to move to it (UA_ALLOWED_SIGNERS). Nothing was changed")
            }
        }
        if request.dryRun {
            report.status = .success
            return
        }
        let owed = EnvironmentDebt.read(gitDirectory: repository.gitDirectory)
        guard report.changed else {
            logger.info("already up to date at \(target.short)")
            if let owed, request.sync { try payDebt(owed, repository, commit: target, &report) }
            report.status = .success
            return
        }
        try checkCancelled()

        // 4–5. Apply: work tree first (all-or-nothing), then the branch ref and HEAD.
        let rollback = Rollback(repository: repository, original: original, branch: branch, branchTipBefore: localTip)
        // Only the paths that differ between what is checked out and the target are examined and
        // written (the status check above found no tracked change anywhere). A very large change
        // is checked out as a whole tree, which is cheaper than a huge path list.
        let changed = try repository.changedPaths(from: originalCommit, to: target)
        let paths: [String]? = changed.count <= 2000 ? changed : nil
        do {
            // Refuse files in the way before the intent is recorded: a recovery may then treat
            // every file at a path the target adds as one this update wrote.
            try report.time("checkout") { try repository.checkoutTree(of: target, dryRun: true, paths: paths) }
        } catch let error as GitError where error.kind == .conflict {
            throw Stop(failure: .checkoutBlocked,
                       message: "cannot check out \(branch) at \(target.short): \(error.message); nothing was changed. Move the files out of the way and retry")
        }
        journal.from = originalCommit.hex
        if case .branch(let name, _) = original { journal.previousBranch = name }
        journal.to = target.hex
        journal.branchTipBefore = localTip?.hex
        journal.sync = request.sync
        journal.restart = request.restart
        journal.services = request.services
        try advance(&journal, to: .checkout, repository)
        do {
            try report.time("checkout") { try repository.checkoutTree(of: target, paths: paths) }
        } catch let error as GitError where error.kind == .conflict {
            // libgit2 finds conflicts before writing anything.
            throw Stop(failure: .checkoutBlocked,
                       message: "cannot check out \(branch) at \(target.short): \(error.message); nothing was changed. Move the files out of the way and retry")
        } catch {
            // Anything else may have failed half-way through writing files.
            try rollBack(rollback, &report, failure: .internalError, reason: "checkout of \(target.short) failed: \(error)",
                         resync: false, restart: false)
        }
        do {
            try repository.setReference("refs/heads/\(branch)", to: target,
                                        message: "factoryctl: pull --rebase \(remote) \(branch)")
            if localTip == nil { try repository.setUpstream(branch: branch, remote: remote) }
            if switching { try repository.setHead(branch: branch) }
        } catch {
            try rollBack(rollback, &report, failure: .internalError, reason: "could not move \(branch): \(error)", resync: false, restart: false)
        }
        logger.info("\(branch) now at \(target.short) (\(report.integration.rawValue))")
        try advance(&journal, to: .moved, repository, rollback, &report)

        // 6. Dependencies (always synced when an earlier failure left the environment owed).
        if request.sync, owed == nil, let since = syncNotNeeded(repository, target: target) {
            // Nothing uv reads changed since the environment was last synced.
            logger.info("dependencies unchanged since \(since.short), whose environment is in place: skipping \(request.syncCommand.joined(separator: " "))")
            report.syncSkipped = true
        } else if request.sync {
            try advance(&journal, to: .syncing, repository, rollback, &report)
            let result = report.time("sync") { runSync(journalIn: repository.gitDirectory, for: target) }
            if result.stopped {
                throw Stop(failure: .cancelled,
                           message: "stopped during the dependency sync of \(target.short) (asked to stop); ended the sync. The checkout is on \(target.short) with a half-synced environment; the next `factoryctl update` (or consumer start) finishes or undoes it",
                           keepJournal: true)
            }
            if !result.ok {
                try rollBack(rollback, &report, failure: .syncFailed, reason: result.message, resync: true, restart: false)
            }
            report.synced = true
            try advance(&journal, to: .synced, repository, rollback, &report)
        }

        // 7. Services.
        if request.restart {
            try advance(&journal, to: .restarting, repository, rollback, &report)
            report.services = request.services
            let services = ServiceManager(runner: ProcessRunner(environment: request.environment), logger: logger)
            let inactive = report.time("restart") { services.restart(request.services, settle: request.settleSeconds) }
            report.restarted = true
            if !inactive.isEmpty {
                try rollBack(rollback, &report, failure: .serviceInactive,
                             reason: "service(s) not active after restart: \(inactive.joined(separator: ", "))",
                             resync: request.sync, restart: true)
            }
            if let gate = request.healthGate {
                logger.info("waiting for \(gate.url) to answer 2xx (up to \(Int(gate.timeout)) s)")
                if let why = report.time("health", { gate.wait() }) {
                    try rollBack(rollback, &report, failure: .healthCheckFailed,
                                 reason: "health check \(gate.url) did not answer 2xx within \(Int(gate.timeout)) s (last: \(why))",
                                 resync: request.sync, restart: true)
                }
                report.healthChecked = true
            }
        }
        report.status = .success
    }

    /// Fetches `remote`: in-process for a local path, else in a killable helper process.
    private func fetch(_ repository: Repository, remote: String, journal: inout ApplyJournal) throws {
        let rawURL = repository.remoteURL(remote)
        let url = rawURL.map(Self.redact) ?? remote
        let cancelled = { shouldCancel() || pastDeadline }
        guard let helper = request.fetchHelper, let rawURL, !IsolatedFetch.isLocal(rawURL) else {
            // A local origin that is not there: say that, not libgit2's "unsupported URL protocol".
            if let rawURL, IsolatedFetch.isLocal(rawURL) {
                var path = rawURL.hasPrefix("file://") ? String(rawURL.dropFirst("file://".count)) : rawURL
                if !path.hasPrefix("/") { path = (repository.workingDirectory ?? request.factoryDirectory) + "/" + path }
                var info = stat()
                if stat(path, &info) != 0 {
                    throw Stop(failure: .remoteUnreachable,
                               message: "\(remote) is the local path \(url), which does not exist (\(String(cString: strerror(errno)))); fix it with `git remote set-url \(remote) <url>`. Nothing was changed")
                }
            }
            do {
                try repository.fetch(remote: remote, options: FetchOptions(
                    environment: request.environment, progress: progress, shouldCancel: cancelled))
            } catch let error as GitError {
                if cancelled() { throw Stop(failure: .cancelled, message: "the fetch was cancelled; nothing was changed") }
                throw Self.fetchFailed(remote: remote, url: url, message: error.message)
            }
            return
        }
        let gitDirectory = repository.gitDirectory
        var recorded = journal
        do {
            try IsolatedFetch.fetch(helper: helper, gitDirectory: gitDirectory, remote: remote,
                                    environment: request.environment, timeout: request.fetchTimeout,
                                    shouldCancel: cancelled, progress: progress) { pid in
                recorded.childGroup = pid
                recorded.childProgram = helper[0]
                try? recorded.write(gitDirectory: gitDirectory)
            }
        } catch {
            // The helper is gone; ref locks it held are its leftovers (we hold the checkout lock).
            let removed = StaleGitLocks.remove(gitDirectory: gitDirectory)
            if !removed.isEmpty { logger.notice("removed lock files the stopped fetch left: \(removed.joined(separator: ", "))") }
            switch error {
            case .noProgress(let seconds):
                throw Stop(failure: .remoteUnreachable,
                           message: "fetching \(remote) (\(url)) made no progress for \(Self.seconds(seconds)); stopped it. Nothing was changed. Check the remote, or raise --fetch-timeout")
            case .cancelled:
                throw Stop(failure: .cancelled, message: pastDeadline ? "the mission deadline passed during the fetch; nothing was changed"
                                                                       : "the fetch was cancelled; nothing was changed")
            case .failed(let message):
                throw Self.fetchFailed(remote: remote, url: url, message: message)
            case .launch(let message):
                throw Stop(failure: .internalError, message: "could not start the fetch: \(message); nothing was changed")
            }
        }
        recorded.childGroup = nil
        recorded.childProgram = nil
        journal = recorded
    }

    /// A failed fetch, in- or out-of-process; a lock file in the way is named as such, not as a
    /// network problem.
    private static func fetchFailed(remote: String, url: String, message: String) -> Stop {
        if message.contains(".lock") {
            return Stop(failure: .remoteUnreachable,
                        message: "could not fetch \(remote): \(message). A git process is writing there, or one died and left its lock file; if no git is running on this checkout, remove that file. Nothing was changed")
        }
        return Stop(failure: .remoteUnreachable, message: "could not fetch \(remote) (\(url)): \(message); nothing was changed")
    }

    private static func seconds(_ value: Double) -> String {
        value == value.rounded() ? "\(Int(value)) s" : value.fixed(1) + " s"
    }

    // MARK: Helpers

    /// Moves the intent record to `phase`; if it cannot be written, stops (before the step runs).
    private func advance(_ journal: inout ApplyJournal, to phase: ApplyJournal.Phase, _ repository: Repository) throws {
        precondition(phase <= .checkout, "after the move, advance with the rollback")
        journal.phase = phase
        do {
            try journal.write(gitDirectory: repository.gitDirectory)
        } catch {
            throw Stop(failure: .internalError, message: "cannot record the update's intent: \(error); nothing was changed")
        }
    }

    /// Moves the record on once the code has moved; a record that cannot be written then stops
    /// the update too, rolled back, rather than go on with a record that says less than happened.
    private func advance(_ journal: inout ApplyJournal, to phase: ApplyJournal.Phase, _ repository: Repository,
                         _ rollback: Rollback, _ report: inout UpdateReport) throws {
        journal.phase = phase
        do {
            try journal.write(gitDirectory: repository.gitDirectory)
        } catch {
            try rollBack(rollback, &report, failure: .internalError,
                         reason: "cannot record the update's progress (\(phase.rawValue)): \(error)",
                         resync: phase > .syncing, restart: phase > .restarting)
        }
    }

    /// An environment left owed by an earlier failure, on code that does not move now: sync it.
    private func payDebt(_ owed: EnvironmentDebt, _ repository: Repository, commit: ObjectID, _ report: inout UpdateReport) throws {
        guard !request.dryRun else { return }
        logger.notice("the environment is owed a sync (\(owed.reason)); syncing \(commit.short)")
        let result = report.time("sync") { runSync(journalIn: repository.gitDirectory, for: commit) }
        guard result.ok else {
            throw Stop(failure: .syncFailed,
                       message: "the environment of \(commit.short) is still not synced: \(result.message). The code was not changed; the factory needs attention until a sync succeeds (the next update tries again)")
        }
        report.synced = true
    }

    private var pastDeadline: Bool {
        request.deadline.map { Date() >= $0 } ?? false
    }

    private func checkCancelled() throws {
        if shouldCancel() { throw Stop(failure: .cancelled, message: "cancelled before anything was changed") }
        if pastDeadline { throw Stop(failure: .cancelled, message: "the mission deadline passed before anything was changed") }
    }

    /// Runs the dependency sync. The forward sync is bounded by the mission deadline; the one that
    /// restores the previous environment during a rollback is not (only by `syncTimeout`).
    func runSync(withinDeadline: Bool = true, journalIn gitDirectory: String, for commit: ObjectID?) -> (ok: Bool, message: String, stopped: Bool) {
        let argv = request.syncCommand
        guard !argv.isEmpty else {
            EnvironmentDebt.clear(gitDirectory: gitDirectory)
            return (true, "", false)
        }
        // While the environment changes, no commit is recorded as synced.
        SyncMarker.clear(gitDirectory: gitDirectory)
        var timeout = request.syncTimeout
        if withinDeadline, let deadline = request.deadline { timeout = max(1, min(timeout, deadline.timeIntervalSinceNow)) }
        logger.info("running \(argv.joined(separator: " "))")
        do {
            let result = try ProcessRunner(environment: request.environment)
                .run(argv, in: request.factoryDirectory, timeout: timeout, shouldStop: shouldStopSync) { pid in
                    // Remembered so a recovery can end it if this process dies mid-sync.
                    guard var journal = ApplyJournal.load(gitDirectory: gitDirectory) else { return }
                    journal.childGroup = pid
                    journal.childProgram = argv[0]
                    do {
                        try journal.write(gitDirectory: gitDirectory)
                    } catch {
                        logger.warning("cannot record the sync's process group \(pid) in the update record (a recovery after a crash may then not end it): \(error)")
                    }
                }
            if result.stopped { return (false, result.failureSummary, true) }
            if result.succeeded {
                logger.info("\(argv.joined(separator: " ")) finished in \(result.duration.fixed(1)) s")
                // Recorded only for `uv sync` itself: another command's environment says nothing
                // about what uv would install.
                if let commit, SyncMarker.isUvSync(argv) { SyncMarker.write(commit, gitDirectory: gitDirectory) }
                EnvironmentDebt.clear(gitDirectory: gitDirectory)
                return (true, "", false)
            }
            return (false, result.failureSummary, false)
        } catch {
            return (false, "\(error)", false)
        }
    }

    /// The commit whose environment is in place, when the sync can be skipped for `target`: the
    /// sync is the default `uv sync`, not forced, the environment directory exists, a successful
    /// sync was recorded for a commit, and no file uv reads (pyproject.toml, uv.lock,
    /// .python-version, uv.toml, requirements*.txt, setup.py/cfg, anywhere in the tree) differs
    /// between that commit and `target`. Otherwise nil: sync.
    func syncNotNeeded(_ repository: Repository, target: ObjectID) -> ObjectID? {
        let argv = request.syncCommand
        guard !request.forceSync, SyncMarker.isUvSync(argv),
              let synced = SyncMarker.read(gitDirectory: repository.gitDirectory) else { return nil }
        var environment = request.environment["UV_PROJECT_ENVIRONMENT"] ?? ".venv"
        if !environment.hasPrefix("/") { environment = request.factoryDirectory + "/" + environment }
        var info = stat()
        guard stat(environment + "/pyvenv.cfg", &info) == 0, (info.st_mode & S_IFMT) == S_IFREG,
              let changed = try? repository.changedPaths(from: synced, to: target) else { return nil }
        return changed.contains(where: SyncMarker.isDependencyInput) ? nil : synced
    }

    /// Puts code (and environment, and services) back as they were, then ends the pipeline.
    /// The upstream to integrate: origin's tip, or the pinned commit, which must be on it.
    private func pinnedUpstream(_ repository: Repository, tip: ObjectID) throws -> ObjectID {
        guard let pinned = request.commit else { return tip }
        let where_ = "\(request.remote)/\(request.branch) (at \(tip.short))"
        guard repository.hasCommit(pinned) else {
            throw Stop(failure: .commitNotOnBranch,
                       message: "commit \(pinned.short) is not in \(request.remote) (fetched \(where_)); nothing was changed. Check the commit id and the branch")
        }
        guard try repository.contains(pinned, in: tip) else {
            throw Stop(failure: .commitNotOnBranch,
                       message: "commit \(pinned.short) is not on \(where_); nothing was changed. Pin a commit of that branch, or name the branch it is on")
        }
        return pinned
    }

    /// Whether moving to `upstream` leaves behind upstream code this factory already runs (older
    /// code, or a force-push that dropped commits). Refused unless `allowRewind`; allowed, it is
    /// only done when no local commits sit on top of that code. Returns true for an allowed rewind.
    private func checkRewind(_ repository: Repository, base: ObjectID, upstream: ObjectID, originBefore: ObjectID?) throws -> Bool {
        // The upstream commit last integrated that the branch still runs: from the history, else
        // origin's branch as it was before this fetch.
        let recorded = UpdateHistory(gitDirectory: repository.gitDirectory).entries().reversed()
            .first { $0.succeeded && $0.branch == request.branch && $0.upstream != nil }?.upstream.flatMap(ObjectID.init(hex:))
        var applied: ObjectID?
        for candidate in [recorded, originBefore].compactMap({ $0 }) where (try? repository.contains(candidate, in: base)) == true {
            applied = candidate
            break
        }
        guard let applied, try !repository.contains(applied, in: upstream) else { return false }
        let dropped = try repository.aheadBehind(local: applied, upstream: upstream).ahead
        let what = request.commit != nil
            ? "the pinned commit \(upstream.short) is older than \(applied.short), which this factory runs"
            : "\(request.remote)/\(request.branch) now points at \(upstream.short), which does not contain \(applied.short) that this factory runs (a force-push dropped \(dropped) commit\(dropped == 1 ? "" : "s"))"
        guard request.allowRewind else {
            throw Stop(failure: .rewindRefused,
                       message: "\(what); refusing to move backwards. Nothing was changed. For a deliberate rollback pass --allow-rewind (a mission: allow_rewind)")
        }
        guard try repository.contains(base, in: applied) else {
            throw Stop(failure: .rewindRefused,
                       message: "\(what), and local commits sit on top of it; a rewind would drop them. Nothing was changed. Resolve by hand")
        }
        logger.notice("rewinding \(request.branch) to \(upstream.short) (allowed): \(what)")
        return true
    }

    private func rollBack(_ rollback: Rollback, _ report: inout UpdateReport, failure: UpdateFailure,
                          reason: String, resync: Bool, restart: Bool) throws -> Never {
        logger.error("\(reason); rolling back to \(rollback.original.commit?.short ?? "?")")
        let gitDirectory = rollback.repository.gitDirectory
        var journal = ApplyJournal.load(gitDirectory: gitDirectory)
        if journal != nil {
            journal!.rollingBack = true
            do {
                try journal!.write(gitDirectory: gitDirectory)
            } catch {
                // The record still says how far the update got; a recovery undoes from there.
                logger.warning("cannot mark the update record as rolling back: \(error)")
            }
        }
        do {
            try rollback.perform()
        } catch {
            throw Stop(failure: .rollbackFailed,
                       message: "\(reason); rolling back to \(report.shortFrom ?? "?") FAILED: \(error). The checkout needs attention: check `git status` and run `factoryctl update` again")
        }
        if journal != nil {
            journal!.codeRestored = true
            do {
                try journal!.write(gitDirectory: gitDirectory)
            } catch {
                logger.warning("cannot record that the rollback restored the code: \(error)")
            }
        }
        report.rolledBack = true
        report.attempted = report.to
        report.to = report.from
        report.changed = false
        var notes: [String] = []
        var environmentRestored = true
        if resync && request.sync {
            let result = runSync(withinDeadline: false, journalIn: gitDirectory, for: rollback.original.commit)
            if !result.ok {
                // Owed, not blocking: the next update syncs whatever it ends on (this code, or a
                // newer one that syncs), and status says "needs attention" until then.
                let reason = "re-syncing \(report.shortFrom ?? "?") after a failed update failed: \(result.message)"
                do {
                    try EnvironmentDebt(commit: rollback.original.commit?.hex, reason: reason).record(gitDirectory: gitDirectory)
                } catch {
                    environmentRestored = false
                    logger.warning("cannot record that the environment needs a sync: \(error); keeping the update record instead")
                }
                report.environmentOwed = reason
                notes.append("re-syncing the previous environment failed: \(result.message); needs attention: the next update syncs the code it ends on")
            }
        }
        if restart {
            let services = ServiceManager(runner: ProcessRunner(environment: request.environment), logger: logger)
            let inactive = services.restart(request.services, settle: request.settleSeconds)
            if !inactive.isEmpty {
                report.inactiveAfterRollback = inactive
                notes.append("after rollback still not active: \(inactive.joined(separator: ", ")); needs attention")
            }
        }
        let suffix = notes.isEmpty ? "" : " (" + notes.joined(separator: "; ") + ")"
        throw Stop(failure: failure, message: "\(reason); rolled back to \(report.shortFrom ?? "?")\(suffix)",
                   keepJournal: !environmentRestored)
    }

    private func abortHint(_ state: RepositoryState) -> String {
        switch state {
        case .merge: "merge --abort"
        case .cherryPick: "cherry-pick --abort"
        case .revert: "revert --abort"
        case .bisect: "bisect reset"
        case .applyMailbox: "am --abort"
        default: "rebase --abort"
        }
    }

    /// Drops credentials from a URL before it reaches a message.
    public static func redact(_ url: String) -> String {
        guard let scheme = url.firstRange(of: "://"), let at = url[scheme.upperBound...].firstRange(of: "@") else {
            return url
        }
        return String(url[..<scheme.upperBound]) + "***@" + String(url[at.upperBound...])
    }
}
