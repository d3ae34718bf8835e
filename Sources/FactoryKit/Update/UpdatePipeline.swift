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
    /// Told the seconds left of the soak window while it is watched (the consumer's heartbeat
    /// shows "soaking, N s left").
    public var onSoak: (Double) -> Void = { _ in }

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
        var appLock: AppLock?
        var keepJournal = false
        var unfinished = false
        do {
            try execute(&report, held: &held, appLock: &appLock)
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
        report.unfinished = unfinished
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
            if let textfile = request.metricsTextfile, !request.dryRun, !unfinished {
                textfile.write(gitDirectory: held.gitDirectory, factoryDirectory: request.factoryDirectory, logger: logger)
            }
        }
        withExtendedLifetime(held?.lock) {}
        // The app's lock goes last: the app resumes only once the update is over.
        withExtendedLifetime(appLock) {}
        return report
    }

    /// A failure that ends the pipeline.
    struct Stop: Error {
        let failure: UpdateFailure
        let message: String
        var paths: [String] = []
        /// Leave the intent record in place: the next run must finish what this one could not.
        var keepJournal = false
        /// A fetch the git host refused for now (429, 502, 503, 504, too many connections):
        /// worth trying again after a while.
        var retryable = false
    }

    /// Checks what must hold before anything is touched, opens and locks the checkout, repairs
    /// what a killed run left, then runs the pipeline.
    private func execute(_ report: inout UpdateReport, held: inout (lock: CheckoutLock, gitDirectory: String)?,
                         appLock: inout AppLock?) throws {
        do {
            try BranchName.validate(request.branch)
        } catch {
            throw Stop(failure: .invalidBranch, message: "\(error); nothing was changed")
        }
        try precheck()
        let layout = ReleasesLayout.detect(request.factoryDirectory)
        let repository = try layout.map(openRepository) ?? openCheckout()
        // 1. Lock: the app's update lock first (it may hold it while it must not be interrupted),
        // then the checkout's.
        appLock = try takeAppLock(&report)
        held = (try lock(repository), repository.gitDirectory)
        if let recovery = try recover(repository, deferSync: request.sync && !request.dryRun) {
            report.recovery = recovery.message
        }
        if let layout {
            try updateReleases(layout, repository, &report)
        } else {
            try update(repository, &report)
        }
    }

    /// The releases layout's repository (`DIR/.git`, bare: every release is a work tree of it).
    private func openRepository(_ layout: ReleasesLayout) throws -> Repository {
        do {
            return try Repository.open(at: layout.gitDirectory)
        } catch {
            throw Stop(failure: .notARepository, message: "\(layout.root) has \(layout.current) but no repository at \(layout.gitDirectory) (\(error)); nothing was changed")
        }
    }

    /// The sync program and, with --restart, the user's service manager are found before
    /// anything moves: a missing uv or an unreachable manager (no XDG_RUNTIME_DIR in an SSH
    /// session without lingering) must not be discovered after the checkout changed.
    private func precheck() throws {
        guard !request.dryRun else { return }
        if request.sync, let program = request.syncCommand.first {
            do {
                _ = try ProcessRunner(environment: request.environment).resolve(program)
            } catch let ProcessRunnerError.notFound(name, searched) {
                throw Stop(failure: .syncUnavailable,
                           message: "the sync program \(name) was not found (looked in \(searched.joined(separator: ":"))); install it, set UA_FACTORY_SYNC_COMMAND to the command to run, or pass --no-sync. Nothing was changed")
            } catch {
                throw Stop(failure: .syncUnavailable, message: "\(error); nothing was changed")
            }
        }
        if request.restart {
            let services = ServiceManager(runner: ProcessRunner(environment: request.environment), logger: logger)
            if let reason = services.unreachableReason() {
                let runtime = request.environment["XDG_RUNTIME_DIR"].map { "XDG_RUNTIME_DIR=\($0)" } ?? "XDG_RUNTIME_DIR is not set"
                throw Stop(failure: .systemdUnavailable,
                           message: "--restart needs the user's service manager, and systemctl --user cannot reach it: \(reason) (\(runtime)). Usual fixes: `loginctl enable-linger $USER` once (so the manager runs without a login session), and export XDG_RUNTIME_DIR=/run/user/$(id -u) in this shell. Nothing was changed")
            }
        }
    }

    private func openCheckout() throws -> Repository {
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
        return repository
    }

    /// The checkout lock (flock): fails fast naming the holder, or waits with --wait-lock.
    private func lock(_ repository: Repository) throws -> CheckoutLock {
        do {
            return try CheckoutLock.acquire(
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
    }

    /// The app's update lock (`UA_FACTORY_UPDATE_LOCK`), waited for up to `appLockTimeout`
    /// seconds; nil without one, or with `--ignore-app-lock` (recorded in the report).
    private func takeAppLock(_ report: inout UpdateReport) throws -> AppLock? {
        guard let path = request.appLockPath, !request.dryRun else { return nil }
        if request.ignoreAppLock {
            report.appLockIgnored = true
            logger.warning("--ignore-app-lock: updating without the app's update lock \(path)")
            return nil
        }
        let timeout = request.appLockTimeout
        do {
            return try report.time("app_lock") {
                try AppLock.acquire(path: path, timeout: timeout,
                                    onWait: { logger.notice("the app holds its update lock \(path); waiting up to \(timeout.fixed(0)) s for it") },
                                    shouldCancel: { shouldCancel() || pastDeadline })
            }
        } catch let failure as AppLock.Failure {
            switch failure {
            case .held(_, let waited):
                throw Stop(failure: .appLockHeld,
                           message: "the app holds its update lock \(path) (UA_FACTORY_UPDATE_LOCK)\(waited > 0.5 ? " and did not let go within \(waited.fixed(0)) s" : ""); nothing was changed. Try again when it is idle, wait longer with --app-lock-timeout, or pass --ignore-app-lock")
            case .io(_, let code):
                throw Stop(failure: .internalError,
                           message: "cannot open the app's update lock \(path) (UA_FACTORY_UPDATE_LOCK): \(String(cString: strerror(code))); nothing was changed")
            case .cancelled:
                throw Stop(failure: .cancelled, message: "stopped while waiting for the app's update lock; nothing was changed")
            }
        }
    }

    /// The pipeline proper, under the lock: each step takes what the one before found.
    private func update(_ repository: Repository, _ report: inout UpdateReport) throws {
        let start = try preflight(repository, &report)
        if try alreadyAtPin(repository, start, &report) { return }
        var journal = try fetchStep(repository, &report)
        guard let plan = try plan(repository, start, &report) else { return }
        if request.dryRun {
            report.status = .success
            return
        }
        let owed = EnvironmentDebt.read(gitDirectory: repository.gitDirectory)
        guard report.changed else {
            logger.info("already up to date at \(plan.target.short)")
            if let owed, request.sync { try payDebt(owed, repository, commit: plan.target, &report) }
            report.status = .success
            return
        }
        try refuseQuarantined(plan.upstream, target: plan.target, repository)
        try checkCancelled()
        let rollback = try apply(plan, repository, &journal, &report)
        try syncStep(plan.target, owed: owed, rollback, repository, &journal, &report)
        try restartStep(rollback, repository, &journal, &report)
        try soakStep(rollback, repository, &journal, &report)
        if request.retryQuarantined, (try? Quarantine(gitDirectory: repository.gitDirectory).remove([plan.upstream, plan.target])) == true {
            logger.notice("\(plan.target.short) succeeded on retry: no longer quarantined")
        }
        report.status = .success
    }

    /// A target that failed here before for a reason that is the code's is refused (nothing has
    /// moved yet), unless `--retry-quarantined`.
    func refuseQuarantined(_ upstream: ObjectID, target: ObjectID, _ repository: Repository) throws {
        let quarantine = Quarantine(gitDirectory: repository.gitDirectory)
        let (entries, corrupt) = quarantine.read(moveAside: true)
        if corrupt {
            logger.error("\(quarantine.path) could not be read (not a regular file, too large, or not JSON): moved it to \(quarantine.path).corrupt; no commit counts as quarantined until it is fixed")
        }
        guard let entry = entries.first(where: { $0.commit == upstream.hex || $0.commit == target.hex }) else { return }
        guard !request.retryQuarantined else {
            logger.notice("\(target.short) is quarantined (\(entry.summary)); retrying it once (--retry-quarantined)")
            return
        }
        throw Stop(failure: .quarantined,
                   message: "\(entry.commit.prefix(7)) is quarantined on this factory: it \(entry.summary). Nothing was changed; pass --retry-quarantined (publish --retry-quarantined for a mission) to try it once more")
    }

    /// Step 3: fetch. The record lets a later run remove lock files a killed fetch leaves behind.
    func fetchStep(_ repository: Repository, _ report: inout UpdateReport) throws -> ApplyJournal {
        var journal = ApplyJournal(phase: .fetch, startedAt: report.startedAt, branch: request.branch, jobID: request.jobID)
        try advance(&journal, to: .fetch, repository)
        logger.info("fetching \(request.remote)")
        var attempt = 1
        while true {
            do {
                try report.time("fetch") { try fetch(repository, remote: request.remote, journal: &journal) }
                break
            } catch let stop as Stop where stop.retryable && attempt < Self.fetchAttempts {
                let delay = Self.backoff(attempt: attempt)
                if let deadline = request.deadline, Date().addingTimeInterval(delay + 1) >= deadline { throw stop }
                logger.notice("\(stop.message.split(separator: ";").first ?? ""); trying again in \(delay.fixed(1)) s (attempt \(attempt + 1) of \(Self.fetchAttempts))")
                let waited = Monotonic.now
                while Monotonic.now - waited < delay {
                    try checkCancelled()
                    sleep(seconds: min(0.1, delay - (Monotonic.now - waited)))
                }
                report.stepsMs = (report.stepsMs ?? [:]).merging(["fetch_backoff": Int(delay * 1000)]) { $0 + $1 }
                attempt += 1
            }
        }
        report.fetchAttempts = attempt
        try checkCancelled()
        return journal
    }

    /// A git host that answers "not now" is asked again this many times in all, after
    /// `backoff(attempt:)`: exponential with full jitter (1, 2, 4, 8 s at most), so a fleet
    /// turned away together does not come back together.
    static let fetchAttempts = 5
    static func backoff(attempt: Int) -> Double {
        let ceiling = min(8.0, pow(2.0, Double(attempt - 1)))
        return ceiling * Double.random(in: 0.5...1.0)
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
        let lowered = message.lowercased()
        if lowered.contains("certificate") || lowered.contains("ssl error") || lowered.contains("tls") && lowered.contains("handshake") {
            return Stop(failure: .tlsFailed,
                        message: "could not fetch \(remote) (\(url)): its TLS certificate was refused: \(message). Nothing was changed. Check the host's certificate (expired? another host name?) and the CA bundle trusted (the system bundle, or the file GIT_SSL_CAINFO or SSL_CERT_FILE names)")
        }
        let busy = ["unexpected http status code: 429", "unexpected http status code: 502", "unexpected http status code: 503",
                    "unexpected http status code: 504", "too many connections"]
        if busy.contains(where: lowered.contains) {
            var stop = Stop(failure: .remoteUnreachable, message: "\(remote) (\(url)) is busy: \(message); nothing was changed")
            stop.retryable = true
            return stop
        }
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
    func advance(_ journal: inout ApplyJournal, to phase: ApplyJournal.Phase, _ repository: Repository) throws {
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
    func advance(_ journal: inout ApplyJournal, to phase: ApplyJournal.Phase, _ repository: Repository,
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
    func payDebt(_ owed: EnvironmentDebt, _ repository: Repository, commit: ObjectID, _ report: inout UpdateReport) throws {
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

    func checkCancelled() throws {
        if shouldCancel() { throw Stop(failure: .cancelled, message: "cancelled before anything was changed") }
        if pastDeadline { throw Stop(failure: .cancelled, message: "the mission deadline passed before anything was changed") }
    }

    /// Runs the dependency sync. The forward sync is bounded by the mission deadline; the one that
    /// restores the previous environment during a rollback is not (only by `syncTimeout`).
    /// `directory`: where it runs (default the factory directory; a new release's in the releases layout).
    func runSync(withinDeadline: Bool = true, journalIn gitDirectory: String, for commit: ObjectID?,
                 in directory: String? = nil) -> (ok: Bool, message: String, stopped: Bool) {
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
                .run(argv, in: directory ?? request.factoryDirectory, timeout: timeout, shouldStop: shouldStopSync) { pid in
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

    /// Whether moving to `upstream` leaves behind upstream code this factory already runs (older
    /// code, or a force-push that dropped commits). Refused unless `allowRewind`; allowed, it is
    /// only done when no local commits sit on top of that code. Returns true for an allowed rewind.
    func checkRewind(_ repository: Repository, base: ObjectID, upstream: ObjectID, originBefore: ObjectID?) throws -> Bool {
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

    /// Puts code (and environment, and services) back as they were, then ends the pipeline.
    func rollBack(_ rollback: Rollback, _ report: inout UpdateReport, failure: UpdateFailure,
                          reason: String, resync: Bool, restart: Bool) throws -> Never {
        logger.error("\(reason); rolling back to \(rollback.original.commit?.short ?? "?")")
        let gitDirectory = rollback.repository.gitDirectory
        var journal = ApplyJournal.load(gitDirectory: gitDirectory)
        var notes: [String] = []
        // Recorded before anything is undone: a kill during the undo must not let the next run
        // retry the commit. What HQ names is the upstream commit (the target is a rebase of it
        // when the factory has local commits). A move back to older code is not quarantined: the
        // commit it went back to is one this factory ran.
        if Quarantine.codeFailures.contains(failure), report.integration != .rewind, let commit = report.upstream ?? report.to {
            quarantine(commit, failure: failure, reason: reason, gitDirectory: gitDirectory, &notes)
        }
        try refuseToForceLaterWork(rollback, journal, reason: reason, report, notes)
        mark(&journal, gitDirectory) { $0.rollingBack = true }
        do {
            try rollback.perform()
        } catch {
            throw Stop(failure: .rollbackFailed,
                       message: "\(reason); rolling back to \(report.shortFrom ?? "?") FAILED: \(error). The checkout needs attention: check `git status` and run `factoryctl update` again")
        }
        mark(&journal, gitDirectory) { $0.codeRestored = true }
        report.rolledBack = true
        report.attempted = report.to
        report.to = report.from
        report.changed = false
        // A swap back needs no sync: the previous release's environment was never touched.
        let environmentRestored = resync && request.sync && rollback.swap == nil ? restoreEnvironment(rollback, &report, &notes) : true
        if restart {
            let services = ServiceManager(runner: ProcessRunner(environment: request.environment), logger: logger)
            let inactive = services.restart(request.services, settle: request.settleSeconds)
            if !inactive.isEmpty {
                report.inactiveAfterRollback = inactive
                notes.append("after rollback still not active: \(inactive.joined(separator: ", ")); needs attention")
            }
        }
        if let swap = rollback.swap {
            // The release that failed goes (once nothing runs in it) rather than stay the newest
            // kept one; a retry builds it again.
            report.release = swap.previous
            try? swap.layout.remove(swap.release)
        }
        let suffix = notes.isEmpty ? "" : " (" + notes.joined(separator: "; ") + ")"
        throw Stop(failure: failure, message: "\(reason); rolled back to \(report.shortFrom ?? "?")\(suffix)",
                   keepJournal: !environmentRestored)
    }

    /// Work done in the checkout while this update ran (an edit or a commit during a long sync,
    /// the restart or the soak; in the releases layout, `current` pointed elsewhere) is never
    /// forced away: the code stays as it is, and the update ends here.
    private func refuseToForceLaterWork(_ rollback: Rollback, _ journal: ApplyJournal?, reason: String,
                                        _ report: UpdateReport, _ notes: [String]) throws {
        guard let journal, journal.phase >= .moved, !journal.rollingBack else { return }
        let later = try rollback.swap.map { swap in
            swap.layout.liveName == swap.release ? [] : ["\(swap.layout.current) now names \(swap.layout.liveName ?? "nothing")"]
        } ?? workSinceTheMove(rollback.repository, journal)
        guard !later.isEmpty else { return }
        throw Stop(failure: .rollbackFailed,
                   message: "\(reason); NOT rolled back: the checkout changed while the update ran (\(later.joined(separator: "; "))), so nothing was forced: it stays on \(report.shortTo ?? "?") with those changes\(notes.isEmpty ? "" : " (" + notes.joined(separator: "; ") + ")"). Needs attention: fix or commit the changes, then `factoryctl update` (or `factoryctl rollback`)")
    }

    /// Writes a change to the intent record, if there is one; a failed write is only logged (the
    /// record still says how far the update got, and a recovery undoes from there).
    private func mark(_ journal: inout ApplyJournal?, _ gitDirectory: String, _ change: (inout ApplyJournal) -> Void) {
        guard journal != nil else { return }
        change(&journal!)
        do {
            try journal!.write(gitDirectory: gitDirectory)
        } catch {
            logger.warning("cannot update the update record during the rollback: \(error)")
        }
    }

    /// Records that `commit` failed here for a reason that is the code's.
    private func quarantine(_ commit: String, failure: UpdateFailure, reason: String, gitDirectory: String, _ notes: inout [String]) {
        let entry = Quarantine.Entry(commit: commit, failure: failure.rawValue, reason: reason, failedAt: Date().timeIntervalSince1970,
                                     jobID: request.jobID)
        do {
            try Quarantine(gitDirectory: gitDirectory).add(entry)
            notes.append("quarantined \(commit.prefix(7)): updates to it are refused here until --retry-quarantined")
        } catch {
            logger.warning("could not quarantine \(commit.prefix(7)): \(error)")
        }
    }

    /// Re-syncs the previous environment after the code went back. A failure is owed, not
    /// blocking: the next update syncs whatever it ends on (this code, or a newer one that
    /// syncs), and status says "needs attention" until then. False only when even that could not
    /// be recorded (the intent record is kept instead).
    private func restoreEnvironment(_ rollback: Rollback, _ report: inout UpdateReport, _ notes: inout [String]) -> Bool {
        let gitDirectory = rollback.repository.gitDirectory
        let result = runSync(withinDeadline: false, journalIn: gitDirectory, for: rollback.original.commit)
        guard !result.ok else { return true }
        let reason = "re-syncing \(report.shortFrom ?? "?") after a failed update failed: \(result.message)"
        report.environmentOwed = reason
        notes.append("re-syncing the previous environment failed: \(result.message); needs attention: the next update syncs the code it ends on")
        do {
            try recordDebt(EnvironmentDebt(commit: rollback.original.commit?.hex, reason: reason), gitDirectory: gitDirectory)
            return true
        } catch let stop as Stop {
            notes.append(stop.message)
            return false
        } catch {
            return false
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
