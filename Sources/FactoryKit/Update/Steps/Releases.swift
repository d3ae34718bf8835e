import FoundationEssentials
import FactoryBasics
import GitKit

/// The pipeline in the releases layout (`ReleasesLayout`): plan as in place, then build the
/// target's release beside the live one (check out, link shared files, sync where it will run),
/// swap `current` in one rename, restart, health gate, soak. A failure before the swap touches
/// nothing that runs; after it, the undo is a swap back and a restart, with no sync.
extension UpdatePipeline {
    /// A rollback (a pinned commit that may rewind) to a commit whose complete release is kept
    /// needs nothing from the remote: it is a swap, and it works with the git host down.
    private func keptRollbackTarget(_ layout: ReleasesLayout, _ repository: Repository) throws -> Bool {
        guard request.allowRewind, let commit = request.commit else { return false }
        let name = ReleasesLayout.name(for: commit.hex)
        guard layout.release(name)?.complete == true, ReleasesLayout.isDirectory(layout.path(of: name)) else { return false }
        return (try? repository.commit(commit)) != nil
    }

    /// The journal a fetch would have started, without the fetch.
    private func skipFetch(_ repository: Repository, _ report: inout UpdateReport) throws -> ApplyJournal {
        var journal = ApplyJournal(phase: .fetch, startedAt: report.startedAt, branch: request.branch, jobID: request.jobID)
        try advance(&journal, to: .fetch, repository)
        logger.info("rolling back to a kept release: no fetch")
        return journal
    }

    /// The live release, its work tree and commit.
    struct LiveRelease {
        let name: String
        let record: ReleasesLayout.Release?
        let worktree: Repository
        let commit: ObjectID
        /// The branch the release was built from (its HEAD is detached).
        let branch: String?
    }

    func updateReleases(_ layout: ReleasesLayout, _ repository: Repository, _ report: inout UpdateReport) throws {
        let live = try liveRelease(layout, repository)
        let start = try preflightRelease(live, repository, &report)
        report.release = live.name
        if try alreadyAtPin(repository, start, &report) { return }
        var journal = try keptRollbackTarget(layout, repository)
            ? try skipFetch(repository, &report)
            : try fetchStep(repository, &report)
        let liveTip = live.branch == request.branch ? live.commit : nil
        guard let plan = try plan(repository, start, &report, liveTip: liveTip) else { return }
        if request.dryRun {
            report.status = .success
            return
        }
        let name = ReleasesLayout.name(for: plan.target.hex)
        guard report.changed, name != live.name else {
            if report.changed { try moveBranch(plan, repository) } // a switch to a branch at the same commit
            logger.info("already up to date at \(plan.target.short) (release \(live.name))")
            prune(layout)
            report.status = .success
            return
        }
        try refuseQuarantined(plan.upstream, target: plan.target, repository)
        try checkCancelled()
        try buildRelease(plan, name: name, live: live, layout, repository, &journal, &report)
        let rollback = try swapIn(plan, name: name, live: live, layout, repository, &journal, &report)
        try restartStep(rollback, repository, &journal, &report)
        try soakStep(rollback, repository, &journal, &report)
        if request.retryQuarantined, (try? Quarantine(gitDirectory: repository.gitDirectory).remove([plan.upstream, plan.target])) == true {
            logger.notice("\(plan.target.short) succeeded on retry: no longer quarantined")
        }
        prune(layout)
        report.status = .success
    }

    /// The release `current` names, opened; a layout whose `current` is broken is refused.
    private func liveRelease(_ layout: ReleasesLayout, _ repository: Repository) throws -> LiveRelease {
        guard let name = layout.liveName, ReleasesLayout.isDirectory(layout.path(of: name)) else {
            throw Stop(failure: .preflight,
                       message: "\(layout.current) does not name a release in \(layout.releasesDirectory) (it names \(ReleasesLayout.readLink(layout.current) ?? "nothing")); point it at a complete release (ln -sfn releases/<name> current). Nothing was changed")
        }
        let worktree: Repository
        do {
            worktree = try Repository.open(at: layout.path(of: name))
        } catch {
            throw Stop(failure: .notARepository, message: "the live release \(layout.path(of: name)) is not a git work tree (\(error)); nothing was changed")
        }
        guard let commit = try worktree.head().commit else {
            throw Stop(failure: .preflight, message: "the live release \(name) has no commit; nothing was changed")
        }
        let record = layout.release(name)
        let branch = record?.branch ?? (try? repository.head())?.branchName
        return LiveRelease(name: name, record: record, worktree: worktree, commit: commit, branch: branch)
    }

    /// The live release must be clean: an edit there would silently stop running after the swap.
    private func preflightRelease(_ live: LiveRelease, _ repository: Repository, _ report: inout UpdateReport) throws -> Start {
        report.from = live.commit.hex
        report.to = live.commit.hex
        report.previousBranch = live.branch
        let changes = try report.time("status") { try live.worktree.trackedChanges() }
        guard changes.isEmpty else {
            let list = changes.map { "\($0.change): \($0.path)" }.joined(separator: ", ")
            throw Stop(failure: .preflight,
                       message: "tracked files of the live release \(live.name) have local changes (\(list)); commit, stash or revert them first (they would stop running after the swap). Nothing was changed",
                       paths: changes.map(\.path))
        }
        try checkCancelled()
        let head: Head = live.branch.map { .branch(name: $0, commit: live.commit) } ?? .detached(commit: live.commit)
        let originBefore = try repository.resolve(reference: "refs/remotes/\(request.remote)/\(request.branch)")
        return Start(head: head, commit: live.commit, originBefore: originBefore)
    }

    /// Builds `name` beside the live release: its tree checked out, shared files linked, the
    /// environment synced in its own directory. A kept complete release of the target is used as
    /// it is (a rollback: no checkout, no sync). Nothing that runs is touched; a failure removes
    /// what was built.
    private func buildRelease(_ plan: Plan, name: String, live: LiveRelease, _ layout: ReleasesLayout, _ repository: Repository,
                              _ journal: inout ApplyJournal, _ report: inout UpdateReport) throws {
        record(plan, name: name, live: live, in: &journal)
        try advance(&journal, to: .checkout, repository)
        if let kept = layout.release(name), kept.complete, kept.commit == plan.target.hex, try keptReleaseIsClean(name, layout) {
            logger.info("release \(name) is kept from before: swapping back to it (no checkout, no sync)")
            report.releaseReused = true
            return
        }
        func failed(_ failure: UpdateFailure, _ what: String) -> Stop {
            try? layout.remove(name)
            return Stop(failure: failure, message: "\(what); removed the release. The live release \(live.name) was not touched and nothing was restarted")
        }
        try? layout.remove(name) // a half-built one from an earlier run
        let path = layout.path(of: name)
        do {
            try ReleasesLayout.makeDirectories(layout.releasesDirectory)
            _ = try report.time("checkout") { try repository.addDetachedWorktree(name: name, path: path, commit: plan.target) }
            try layout.linkShared(layout.linkedPaths(extra: try FactoryEnvironment(request.environment).sharedPaths()), into: path)
            try layout.record(.init(name: name, commit: plan.target.hex, branch: request.branch, complete: false,
                                    builtAt: Date().timeIntervalSince1970))
        } catch {
            throw failed(.internalError, "could not build the release of \(plan.target.short) in \(path): \(error)")
        }
        if request.sync {
            if let environment = request.environment["UV_PROJECT_ENVIRONMENT"], environment.hasPrefix("/") {
                throw failed(.syncFailed, "UV_PROJECT_ENVIRONMENT=\(environment) is one environment for every release; in the releases layout each release has its own (.venv inside it): unset it or make it relative")
            }
            let result = report.time("sync") { runSync(journalIn: repository.gitDirectory, for: nil, in: path) }
            if result.stopped {
                throw failed(.cancelled, "stopped during the dependency sync of the release of \(plan.target.short) (asked to stop)")
            }
            guard result.ok else {
                throw failed(.syncFailed, "syncing the release of \(plan.target.short) failed: \(result.message)")
            }
            report.synced = true
        }
        try layout.record(.init(name: name, commit: plan.target.hex, branch: request.branch, complete: true,
                                builtAt: Date().timeIntervalSince1970))
        logger.info("built release \(name) beside \(live.name)")
    }

    /// A kept release whose tracked files were edited is not swapped in (the edit would run) nor
    /// rebuilt (the edit would be lost): refused.
    private func keptReleaseIsClean(_ name: String, _ layout: ReleasesLayout) throws -> Bool {
        guard let changes = try? Repository.open(at: layout.path(of: name)).trackedChanges() else { return false }
        guard changes.isEmpty else {
            throw Stop(failure: .preflight,
                       message: "the kept release \(name) has local changes (\(changes.map(\.path).joined(separator: ", "))); revert them or remove \(layout.path(of: name)). Nothing was changed")
        }
        return true
    }

    /// The in-place record, plus the release being built and the one to swap back to.
    private func record(_ plan: Plan, name: String, live: LiveRelease, in journal: inout ApplyJournal) {
        record(plan, in: &journal)
        journal.release = name
        journal.previousRelease = live.name
    }

    /// `current` → the new release in one rename, then the branch (for `git log`, status and the
    /// registration). Returns the undo: a swap back.
    private func swapIn(_ plan: Plan, name: String, live: LiveRelease, _ layout: ReleasesLayout, _ repository: Repository,
                        _ journal: inout ApplyJournal, _ report: inout UpdateReport) throws -> Rollback {
        var rollback = Rollback(repository: repository, original: plan.start.head, branch: request.branch, branchTipBefore: plan.localTip)
        rollback.swap = ReleaseSwap(layout: layout, release: name, previous: live.name)
        do {
            try report.time("swap") { try layout.swap(to: name) }
        } catch {
            throw Stop(failure: .internalError, message: "\(error); the live release \(live.name) was not touched")
        }
        report.release = name
        do {
            try moveBranch(plan, repository)
        } catch {
            try rollBack(rollback, &report, failure: .internalError, reason: "could not move \(request.branch): \(error)", resync: false, restart: false)
        }
        logger.info("\(layout.current) now names release \(name) (\(plan.target.short), \(report.integration.rawValue))")
        try advance(&journal, to: .moved, repository, rollback, &report)
        return rollback
    }

    private func moveBranch(_ plan: Plan, _ repository: Repository) throws {
        try repository.setReference("refs/heads/\(request.branch)", to: plan.target,
                                    message: "factoryctl: pull --rebase \(request.remote) \(request.branch) (release)")
        if plan.localTip == nil { try repository.setUpstream(branch: request.branch, remote: request.remote) }
        if plan.switching { try repository.setHead(branch: request.branch) }
    }

    /// Half-built releases, and complete ones beyond `UA_FACTORY_KEEP_RELEASES`.
    func prune(_ layout: ReleasesLayout) {
        let keep = (try? FactoryEnvironment(request.environment).keepReleases()) ?? 3
        let removed = layout.prune(keep: keep)
        if !removed.isEmpty { logger.info("pruned release(s) \(removed.joined(separator: ", ")) (keeping \(keep) besides the live one)") }
    }
}
