import FoundationEssentials
import FactoryBasics
import Glibc
import GitKit
import Logging

extension Bootstrap {
    private var directory: String { request.factoryDirectory }
    private var shownURL: String { UpdatePipeline.redact(request.repoURL) }

    /// Step 1: the clone. True when the checkout is there (it was, or it was made).
    func cloneStep(_ plan: Plan, _ outcome: inout BootstrapOutcome) throws(BootstrapFailure) -> Bool {
        if case .checkout = BootstrapClone.inspect(directory) {
            let head = try? Repository.open(at: ReleasesLayout.repositoryPath(for: directory)).head()
            let branch = head?.branchName ?? "detached HEAD"
            outcome.branch = head?.branchName ?? outcome.branch
            outcome.record("clone", .unchanged, "\(directory) is a checkout of \(shownURL) (\(branch))")
            if branch != request.branch || request.commit.map({ liveCommit() != $0 }) == true {
                outcome.notes.append("\(directory) is already cloned and is not moved: `factoryctl update` moves it to another branch or commit")
            }
            return true
        }
        let what = "\(shownURL) (\(request.branch)\(request.commit.map { " at \($0.short)" } ?? "")) into \(directory)"
        if request.dryRun {
            outcome.record("clone", .would, "clone \(what)")
            return false
        }
        var clone = BootstrapClone(request: request, settings: plan.settings, logger: logger)
        clone.shouldCancel = shouldCancel
        let commit = try clone.clone()
        outcome.record("clone", .done, "cloned \(what) at \(commit.short)")
        return true
    }

    /// Steps 2 and 3, before the releases layout exists: `.env` and (in place) the sync, under the
    /// checkout lock.
    func inPlaceSteps(_ plan: Plan, _ outcome: inout BootstrapOutcome) throws(BootstrapFailure) {
        guard ReleasesLayout.detect(directory) == nil else {
            let shared = ReleasesLayout(root: directory).shared + "/.env"
            outcome.record(".env", ReleasesLayout.exists(shared) ? .unchanged : .skipped,
                           ReleasesLayout.exists(shared) ? "kept \(shared)" : "no .env in \(shared)")
            outcome.record("sync", .unchanged, "each release is synced where it runs")
            return
        }
        let repository: Repository
        let lock: CheckoutLock
        do {
            repository = try Repository.open(at: directory)
            lock = try CheckoutLock.acquire(gitDirectory: repository.gitDirectory, wait: false)
        } catch let error as CheckoutLock.Failure {
            throw BootstrapFailure(.lockHeld, "another update or bootstrap holds the checkout lock of \(directory) (\(error)); wait for it, then run bootstrap again")
        } catch {
            throw BootstrapFailure(.failed, "cannot open \(directory): \(error)")
        }
        defer { withExtendedLifetime(lock) {} }
        try dotEnvStep(&outcome)
        if outcome.layout == .releases {
            outcome.record("sync", .skipped, "synced in the first release instead")
        } else {
            try syncStep(plan, repository, &outcome)
        }
    }

    /// `.env` from the template's example, only when there is none (never overwritten).
    func dotEnvStep(_ outcome: inout BootstrapOutcome) throws(BootstrapFailure) {
        let target = directory + "/.env"
        if ReleasesLayout.exists(target) {
            outcome.record(".env", .unchanged, "kept the existing .env (never overwritten)")
            return
        }
        // A releases init that a killed run left part-way has already moved it to shared/.
        let shared = ReleasesLayout(root: directory).shared + "/.env"
        if ReleasesLayout.exists(shared) {
            outcome.record(".env", .unchanged, "kept \(shared)")
            return
        }
        guard let template = BootstrapRequest.envTemplates.first(where: { ReleasesLayout.exists(directory + "/" + $0) }) else {
            outcome.record(".env", .skipped, "the template has no \(BootstrapRequest.envTemplates.joined(separator: " or "))")
            return
        }
        guard let bytes = TemplateFile.read(directory + "/" + template, within: directory) else {
            outcome.record(".env", .skipped, "\(template) is not a regular file of at most 64 KiB inside the checkout (a symlink?): no .env made")
            return
        }
        // Written beside it and linked into place: link(2) never replaces a file, and a killed
        // run leaves no half-written .env.
        let temporary = directory + "/.env.bootstrap-\(getpid())"
        do {
            try FileWriting.replace(temporary, with: Array(bytes), mode: 0o600)
        } catch {
            throw BootstrapFailure(.failed, "could not create .env: \(error)")
        }
        defer { unlink(temporary) }
        guard link(temporary, target) == 0 || errno == EEXIST else {
            throw BootstrapFailure(.failed, "could not create \(target): \(String(cString: strerror(errno)))")
        }
        outcome.record(".env", .done, "created .env from \(template) (0600): fill in its values")
    }

    /// The sync `update` runs (`UA_FACTORY_SYNC_COMMAND`, default `uv sync`), once per commit.
    func syncStep(_ plan: Plan, _ repository: Repository, _ outcome: inout BootstrapOutcome) throws(BootstrapFailure) {
        let argv = plan.settings.syncCommand
        let gitDirectory = repository.gitDirectory
        guard let commit = (try? repository.head())?.commit else { throw BootstrapFailure(.failed, "\(directory) has no commit checked out") }
        guard !argv.isEmpty else { return outcome.record("sync", .skipped, "no sync command (UA_FACTORY_SYNC_COMMAND is empty)") }
        var record = BootstrapRecord.load(gitDirectory: gitDirectory)
            ?? BootstrapRecord(repo: request.repoURL, branch: request.branch, layout: outcome.layout)
        if record.syncedCommit == commit.hex {
            return outcome.record("sync", .unchanged, "\(argv.joined(separator: " ")) already ran for \(commit.short)")
        }
        if let group = record.syncGroup, OrphanGroup.end(group, program: record.syncProgram ?? "") {
            logger.notice("ended the sync a killed bootstrap left running (process group \(group))")
        }
        SyncMarker.clear(gitDirectory: gitDirectory)
        logger.info("running \(argv.joined(separator: " "))")
        let result: ProcessResult
        do {
            result = try ProcessRunner(environment: plan.settings.environment).run(argv, in: directory, timeout: 600, shouldStop: shouldStopSync) { pid in
                record.syncGroup = pid
                record.syncProgram = argv[0]
                try? record.write(gitDirectory: gitDirectory)
            }
        } catch {
            throw BootstrapFailure(.failed, "the sync (\(argv.joined(separator: " "))) could not start: \(error)")
        }
        record.syncGroup = nil
        record.syncProgram = nil
        if result.succeeded {
            record.syncedCommit = commit.hex
            if SyncMarker.isUvSync(argv) { SyncMarker.write(commit, gitDirectory: gitDirectory) }
        }
        do { try record.write(gitDirectory: gitDirectory) } catch { throw BootstrapFailure(.failed, "cannot record the sync: \(error)") }
        guard result.succeeded else {
            throw BootstrapFailure(.failed, "the sync (\(argv.joined(separator: " "))) failed: \(result.failureSummary)")
        }
        outcome.record("sync", .done, "ran \(argv.joined(separator: " ")) in \(result.duration.fixed(1)) s")
    }

    /// `--layout releases`: the first release, through `releases init`.
    func releaseStep(_ plan: Plan, _ outcome: inout BootstrapOutcome) throws(BootstrapFailure) {
        var initializer = ReleasesInit(factoryDirectory: directory, environment: plan.settings.environment, logger: logger)
        initializer.syncCommand = plan.settings.syncCommand
        initializer.sync = !plan.settings.syncCommand.isEmpty
        let gitDirectory = ReleasesLayout(root: directory).gitDirectory
        var record = BootstrapRecord.load(gitDirectory: gitDirectory)
            ?? BootstrapRecord(repo: request.repoURL, branch: request.branch, layout: .releases)
        // A killed run's sync may still be writing into the release init is about to rebuild.
        if let group = record.syncGroup, OrphanGroup.end(group, program: record.syncProgram ?? "") {
            logger.notice("ended the sync a killed bootstrap left running (process group \(group))")
        }
        initializer.onSyncSpawn = { pid in
            record.syncGroup = pid
            record.syncProgram = plan.settings.syncCommand.first
            try? record.write(gitDirectory: gitDirectory)
        }
        let result: ReleasesInit.Outcome
        do {
            result = try initializer.run()
        } catch {
            throw BootstrapFailure(.failed, "building the first release failed: \(error)")
        }
        if record.syncGroup != nil {
            record.syncGroup = nil
            record.syncProgram = nil
            try? record.write(gitDirectory: gitDirectory)
        }
        if result.alreadyDone {
            outcome.record("release", .unchanged, "current → releases/\(result.release)")
        } else {
            outcome.record("release", .done, "built the first release: current → releases/\(result.release)\(result.synced ? ", synced" : "")")
        }
    }
}
