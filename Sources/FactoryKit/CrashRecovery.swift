import FoundationEssentials
import Dispatch
import FactoryBasics
import Glibc
import GitKit
import Logging

/// Repairs what an update killed part-way left behind. Runs under the checkout lock, before the
/// preflight, from `update` and at consumer start.
///
/// An interrupted apply is undone rather than finished: the code goes back to `from` (files with
/// the interrupted target as the checkout baseline, so files it had half-written are its own and
/// are replaced or removed; untracked and ignored files stay), then the branch and HEAD; the
/// environment is synced again if the sync had started, and services are restarted if the
/// restart had started. The run that found the record then updates from a consistent `from`
/// with the whole pipeline (fetch, plan, sync, restart, rollback), so its report is the truth.
extension UpdatePipeline {
    /// What a recovery did.
    public struct Recovery: Sendable {
        public let journal: ApplyJournal
        public let message: String
        /// The checkout was moved back to `journal.from`.
        public let restoredCode: Bool
    }

    /// Takes the checkout lock (unless another update holds it) and repairs a left-over intent record.
    /// Returns nil when there was nothing to repair. The repair is recorded in the history.
    public func recoverInterruptedUpdate() -> UpdateReport? {
        GitLibrary.initialize()
        guard let repository = try? Repository.open(at: request.factoryDirectory),
              ApplyJournal.exists(gitDirectory: repository.gitDirectory) else { return nil }
        // A holder is alive (an operator's update): then the record is its own, not a crash's.
        guard let lock = try? CheckoutLock.acquire(gitDirectory: repository.gitDirectory, wait: false) else { return nil }
        defer { withExtendedLifetime(lock) {} }
        var report = UpdateReport(branch: request.branch)
        do {
            guard let recovery = try recover(repository) else { return nil }
            report.status = .success
            report.recovery = recovery.message
            report.branch = recovery.journal.branch
            report.from = recovery.journal.to
            report.to = recovery.journal.from
            report.changed = recovery.restoredCode
            report.synced = recovery.journal.sync && recovery.journal.phase >= .syncing
        } catch let stop as Stop {
            report.failure = stop.failure
            report.error = stop.message
        } catch {
            report.failure = .internalError
            report.error = "\(error)"
        }
        report.finishedAt = Date().timeIntervalSince1970
        try? UpdateHistory(gitDirectory: repository.gitDirectory).append(report)
        if report.succeeded { ApplyJournal.remove(gitDirectory: repository.gitDirectory) }
        return report
    }

    /// Repairs a left-over record, if any. Call with the checkout lock held. Throws `Stop` when
    /// the repair itself fails; the record is then kept, so the next run tries again.
    func recover(_ repository: Repository) throws -> Recovery? {
        let gitDirectory = repository.gitDirectory
        guard ApplyJournal.exists(gitDirectory: gitDirectory) else { return nil }
        let removedLocks = StaleGitLocks.remove(gitDirectory: gitDirectory)
        let locksNote = removedLocks.isEmpty ? "" : "; removed stale lock files it left: \(removedLocks.joined(separator: ", "))"
        guard let journal = ApplyJournal.load(gitDirectory: gitDirectory) else {
            ApplyJournal.remove(gitDirectory: gitDirectory)
            let message = "an unreadable update record was left by a process that died\(locksNote)"
            logger.notice("\(message)")
            return Recovery(journal: ApplyJournal(phase: .fetch, startedAt: 0, branch: request.branch, jobID: nil),
                            message: message, restoredCode: false)
        }
        let who = "pid \(journal.pid)\(journal.jobID.map { ", job \($0)" } ?? "")"
        if let group = journal.childGroup, OrphanGroup.end(group, program: journal.childProgram ?? "") {
            logger.notice("ended process group \(group) (\(journal.childProgram ?? "sync")) left running by \(who)")
        }
        let recorded = UpdateHistory(gitDirectory: gitDirectory).last?.startedAt == journal.startedAt
        // A rollback that could not restore the environment keeps its record on purpose.
        if (recorded && !journal.rollingBack) || journal.phase == .fetch {
            // Finished (its outcome is in the history) or killed before anything moved.
            ApplyJournal.remove(gitDirectory: gitDirectory)
            let what = journal.phase == .fetch ? "was killed while fetching" : "had finished"
            let message = "an earlier update (\(who)) \(what); nothing to undo\(locksNote)"
            logger.notice("\(message)")
            return Recovery(journal: journal, message: message, restoredCode: false)
        }
        guard let fromHex = journal.from, let from = ObjectID(hex: fromHex) else {
            throw Stop(failure: .rollbackFailed, message: "the record of an interrupted update (\(who)) has no starting commit; check `git status` and remove \(ApplyJournal.path(gitDirectory: gitDirectory)) by hand")
        }
        let interruptedTarget = journal.to.flatMap(ObjectID.init(hex:))
        if journal.codeRestored == true {
            logger.warning("an update (\(who)) rolled back to \(from.short) but could not restore its environment; syncing it now")
        } else {
            logger.warning("an update (\(who)) was interrupted during \(journal.stage) (\(from.short) → \(interruptedTarget?.short ?? "?")); putting \(from.short) back")
        }
        if journal.codeRestored != true {
            try restoreCode(repository, journal, from: from, interruptedTarget: interruptedTarget, who: who)
        }
        var done = journal.codeRestored == true ? [] : ["restored \(from.short)"]
        if journal.sync, journal.phase >= .syncing {
            let result = runSync(withinDeadline: false, journalIn: gitDirectory, for: from)
            guard result.ok else {
                throw Stop(failure: .rollbackFailed, message: "undid an interrupted update (\(who)) back to \(from.short), but re-syncing its environment failed: \(result.message). Run `factoryctl update` again once the sync works")
            }
            done.append("re-synced the environment")
        }
        if journal.restart, journal.phase >= .restarting {
            let services = ServiceManager(runner: ProcessRunner(environment: request.environment), logger: logger)
            let inactive = services.restart(journal.services, settle: request.settleSeconds)
            done.append(inactive.isEmpty ? "restarted \(journal.services.joined(separator: ", "))"
                                         : "restarted, but not active: \(inactive.joined(separator: ", "))")
        }
        ApplyJournal.remove(gitDirectory: gitDirectory)
        let restored = journal.codeRestored != true
        let message = restored
            ? "undid an update interrupted during \(journal.stage) (\(who), \(from.short) → \(interruptedTarget?.short ?? "?")): \(done.joined(separator: ", "))\(locksNote)"
            : "finished the rollback of an earlier update (\(who), \(from.short) → \(interruptedTarget?.short ?? "?")) that could not restore its environment: \(done.isEmpty ? "nothing left to do" : done.joined(separator: ", "))\(locksNote)"
        logger.notice("\(message)")
        return Recovery(journal: journal, message: message, restoredCode: restored)
    }

    /// Puts the code back at `from` (files with the interrupted target as the baseline, so files
    /// it half-wrote are its own), then the branch and HEAD.
    private func restoreCode(_ repository: Repository, _ journal: ApplyJournal, from: ObjectID,
                             interruptedTarget: ObjectID?, who: String) throws {
        do {
            try repository.checkoutTree(of: from, force: true, baseline: interruptedTarget)
            if let previous = journal.previousBranch {
                try repository.setReference("refs/heads/\(previous)", to: from, message: "factoryctl: undo interrupted update")
                try repository.setHead(branch: previous)
            } else {
                try repository.setHeadDetached(from)
            }
            if journal.branch != journal.previousBranch {
                if let before = journal.branchTipBefore.flatMap(ObjectID.init(hex:)) {
                    try repository.setReference("refs/heads/\(journal.branch)", to: before, message: "factoryctl: undo interrupted update")
                } else {
                    try repository.deleteReference("refs/heads/\(journal.branch)")
                }
            }
        } catch {
            throw Stop(failure: .rollbackFailed, message: "could not undo an interrupted update (\(who)) back to \(from.short): \(error). The checkout needs attention: check `git status`")
        }
    }
}
