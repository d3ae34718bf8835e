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
        /// The environment could not be brought in line (or is left to the caller): why.
        public var environmentOwed: String? = nil
        /// The checkout changed after the crash, so nothing was undone.
        public var keptLaterWork = false
        /// An update interrupted in its soak window: soaked again and kept (true), or soaked again,
        /// failed and undone (false); nil when it was not soaking.
        public var soakPassed: Bool? = nil
    }

    /// Takes the checkout lock (unless another update holds it) and repairs a left-over intent record.
    /// Returns nil when there was nothing to repair. The repair is recorded in the history.
    public func recoverInterruptedUpdate() -> UpdateReport? {
        guard let repository = try? Repository.open(at: ReleasesLayout.repositoryPath(for: request.factoryDirectory)),
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
            report.to = recovery.restoredCode ? recovery.journal.from : (try? repository.head().commit?.hex) ?? recovery.journal.from
            report.changed = recovery.restoredCode
            report.synced = recovery.journal.sync && recovery.journal.phase >= .syncing && recovery.environmentOwed == nil
            // An update interrupted in its soak has an outcome now (kept after soaking again, or
            // failed its soak and undone): recorded under its job, so a mission that comes again is
            // answered with it. Any other undone update has none: its mission runs again.
            if let passed = recovery.soakPassed {
                report.jobID = recovery.journal.jobID
                report.soakSeconds = recovery.journal.soakSeconds ?? 0
                report.from = recovery.journal.from
                if passed {
                    report.to = recovery.journal.to
                    report.changed = true
                    report.soaked = true
                } else {
                    report.status = .failed
                    report.failure = .soakFailed
                    report.rolledBack = true
                    report.attempted = recovery.journal.to
                    report.error = recovery.message
                }
            }
            if let owed = recovery.environmentOwed {
                report.status = .failed
                report.failure = .syncFailed
                report.error = owed
            }
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
    ///
    /// Recovery only ever undoes what the interrupted run itself did. Before touching anything
    /// it compares HEAD, the branch tips and the tracked files with what the record says that
    /// run could have left; anything else (a commit, an edit, a branch switch made since) is
    /// someone's later work, and then nothing is forced: the code stays as it is, and only the
    /// environment is brought in line with it.
    ///
    /// `deferSync`: the caller (an update) syncs whatever it ends on, so the environment of a
    /// rollback that already failed to re-sync is recorded as owed (`EnvironmentDebt`) instead
    /// of being retried first: a broken previous version must not block the next one.
    func recover(_ repository: Repository, deferSync: Bool = false) throws -> Recovery? {
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
        if let done = nothingToUndo(journal, who: who, locksNote: locksNote, gitDirectory: gitDirectory) { return done }
        if journal.release != nil {
            return try recoverRelease(repository, journal, who: who, locksNote: locksNote)
        }
        guard let fromHex = journal.from, let from = ObjectID(hex: fromHex) else {
            throw Stop(failure: .rollbackFailed, message: "the record of an interrupted update (\(who)) has no starting commit; check `git status` and remove \(ApplyJournal.path(gitDirectory: gitDirectory)) by hand")
        }
        let interruptedTarget = journal.to.flatMap(ObjectID.init(hex:))
        let context = RecoveryContext(journal: journal, from: from, target: interruptedTarget, who: who,
                                      locksNote: locksNote, deferSync: deferSync)
        var resoakFailed = false
        if journal.codeRestored != true {
            let later = try laterWork(repository, context)
            if !later.isEmpty {
                return try keepLaterWork(repository, context, found: later)
            }
            if journal.phase == .soaking, !journal.rollingBack {
                if let kept = try soakAgain(repository, context) { return kept }
                resoakFailed = true
            }
            logger.warning("an update (\(who)) was interrupted during \(journal.stage) (\(from.short) → \(interruptedTarget?.short ?? "?")); putting \(from.short) back")
            try restoreCode(repository, journal, from: from, interruptedTarget: interruptedTarget, who: who)
        } else {
            logger.warning("an update (\(who)) rolled back to \(from.short) but could not restore its environment; syncing it now")
        }
        var done = journal.codeRestored == true ? [] : ["restored \(from.short)"]
        var owed: String?
        if journal.sync, journal.phase >= .syncing {
            let environment = try settleEnvironment(repository, commit: from, context)
            done.append(environment.note)
            owed = environment.owed
        }
        done.append(contentsOf: restartIfInterrupted(journal))
        ApplyJournal.remove(gitDirectory: gitDirectory)
        let restored = journal.codeRestored != true
        let message = restored
            ? "undid an update interrupted during \(journal.stage) (\(who), \(from.short) → \(interruptedTarget?.short ?? "?")): \(done.joined(separator: ", "))\(locksNote)"
            : "finished the rollback of an earlier update (\(who), \(from.short) → \(interruptedTarget?.short ?? "?")) that could not restore its environment: \(done.isEmpty ? "nothing left to do" : done.joined(separator: ", "))\(locksNote)"
        logger.notice("\(message)")
        return Recovery(journal: journal, message: message, restoredCode: restored, environmentOwed: owed,
                        soakPassed: resoakFailed ? false : nil)
    }

    /// A record whose run had finished (its outcome is in the history) or was killed before
    /// anything moved: removed, nothing to undo. A rollback that could not restore the
    /// environment keeps its record on purpose (not this case).
    private func nothingToUndo(_ journal: ApplyJournal, who: String, locksNote: String, gitDirectory: String) -> Recovery? {
        let recorded = UpdateHistory(gitDirectory: gitDirectory).last?.startedAt == journal.startedAt
        guard (recorded && !journal.rollingBack) || journal.phase == .fetch else { return nil }
        ApplyJournal.remove(gitDirectory: gitDirectory)
        let what = journal.phase == .fetch ? "was killed while fetching" : "had finished"
        let message = "an earlier update (\(who)) \(what); nothing to undo\(locksNote)"
        logger.notice("\(message)")
        return Recovery(journal: journal, message: message, restoredCode: false)
    }

    /// An update killed during its soak window (still provisional): what is running is soaked
    /// again, the whole window. Passed: kept (the record goes). Failed: quarantined, and nil: the
    /// caller undoes the update. Asked to stop: the record stays for the next run.
    private func soakAgain(_ repository: Repository, _ context: RecoveryContext) throws -> Recovery? {
        let journal = context.journal
        let seconds = journal.soakSeconds ?? max(request.soakSeconds, 1)
        logger.warning("an update (\(context.who)) was interrupted during its soak (\(context.from.short) → \(context.target?.short ?? "?")); soaking \(Int(seconds)) s again")
        if let failure = try resoak(repository, journal) {
            logger.error("soak failed again: \(failure); undoing the update")
            return nil
        }
        ApplyJournal.remove(gitDirectory: repository.gitDirectory)
        let message = "an update (\(context.who), \(context.from.short) → \(context.target?.short ?? "?")) was interrupted during its soak; soaked \(Int(seconds)) s again and kept it\(context.locksNote)"
        logger.notice("\(message)")
        return Recovery(journal: journal, message: message, restoredCode: false, soakPassed: true)
    }

    /// Soaks the units of an interrupted update again for its recorded window, compared with the
    /// runs recorded when its soak began when this is the same boot (a crash while factoryctl
    /// was dead counts). Passed: nil, and the commit is no longer quarantined (a retry that
    /// passed). Failed: the failure, and the commit is quarantined. Asked to stop: throws, the
    /// record kept.
    /// `restartedSince`: the units were restarted just now (a recovery that kept later work), so
    /// the runs recorded before are not theirs: a fresh baseline is read.
    func resoak(_ repository: Repository, _ journal: ApplyJournal, restartedSince: Bool = false) throws -> SoakWatch.Failure? {
        let seconds = journal.soakSeconds ?? max(request.soakSeconds, 1)
        var restarted = journal
        restarted.soakStartedAt = Date().timeIntervalSince1970 // what `status` counts the time left from
        try? restarted.write(gitDirectory: repository.gitDirectory)
        let watch = soakWatch(seconds: seconds, services: journal.services)
        let sameBoot = !restartedSince && journal.bootID != nil && journal.bootID == ServiceManager.bootID
        let quarantine = Quarantine(gitDirectory: repository.gitDirectory)
        let commit = journal.upstream ?? journal.to
        switch watch.run(from: sameBoot ? journal.soakBaseline : nil, shouldStop: shouldStopSync, tick: { onSoak($0) }) {
        case .passed:
            if let commit = commit.flatMap(ObjectID.init(hex:)), let target = journal.to.flatMap(ObjectID.init(hex:)) {
                try? quarantine.remove([commit, target])
            }
            return nil
        case .failed(let failure):
            if let commit {
                let entry = Quarantine.Entry(commit: commit, failure: UpdateFailure.soakFailed.rawValue,
                                             reason: "soak failed after a restart of factoryctl: \(failure)",
                                             failedAt: Date().timeIntervalSince1970, jobID: journal.jobID)
                do { try quarantine.add(entry) } catch { logger.warning("could not quarantine \(commit.prefix(7)): \(error)") }
            }
            return failure
        case .stopped:
            throw Stop(failure: .cancelled, message: "stopped while soaking an interrupted update again; it is still provisional (the next run soaks it again)", keepJournal: true)
        }
    }

    /// What changed in the checkout since this run's own move (for its rollback): the same rules
    /// a recovery applies to a record at this phase.
    func workSinceTheMove(_ repository: Repository, _ journal: ApplyJournal) throws -> [String] {
        guard let fromHex = journal.from, let from = ObjectID(hex: fromHex) else { return [] }
        let context = RecoveryContext(journal: journal, from: from, target: journal.to.flatMap(ObjectID.init(hex:)),
                                      who: "this update", locksNote: "", deferSync: false)
        return try laterWork(repository, context)
    }

    /// What a recovery works from.
    struct RecoveryContext {
        let journal: ApplyJournal
        let from: ObjectID
        let target: ObjectID?
        let who: String
        let locksNote: String
        let deferSync: Bool
    }

    /// Differences between the checkout now and every state the interrupted run could have left
    /// it in, in words; empty when the checkout holds only that run's own work.
    ///
    /// Before the move was complete (`checkout`, `checked_out`), or while a rollback was under
    /// way, HEAD may be on the previous branch (or detached) at `from` or on the branch at the
    /// target, each branch at its old or new tip, and every file the two commits differ in may
    /// hold either version; no other tracked file may differ. A file may be cut short only by a
    /// write the kill interrupted: one while the forward checkout had not returned (`checkout`),
    /// one while a rollback was writing (`cutShortLimit`). Once the move was complete, HEAD must
    /// be on the branch at the target with no tracked change at all.
    func laterWork(_ repository: Repository, _ context: RecoveryContext) throws -> [String] {
        let journal = context.journal
        guard let target = context.target else { return [] }
        let settled = journal.phase >= .moved && !journal.rollingBack
        var found: [String] = []
        let previous: Head = journal.previousBranch.map { .branch(name: $0, commit: context.from) } ?? .detached(commit: context.from)
        let moved = Head.branch(name: journal.branch, commit: target)
        let head = try repository.head()
        let headAllowed = settled ? [moved] : [previous, moved]
        if !headAllowed.contains(head) { found.append("HEAD is \(Self.describe(head))") }
        let tip = try repository.resolve(reference: "refs/heads/\(journal.branch)")
        let before = journal.previousBranch == journal.branch ? context.from : journal.branchTipBefore.flatMap(ObjectID.init(hex:))
        let tipAllowed: [ObjectID?] = settled ? [target] : [before, target]
        if !tipAllowed.contains(tip) {
            found.append("\(journal.branch) is at \(tip?.short ?? "nothing") (the update left \(target.short))")
        }
        if let name = journal.previousBranch, name != journal.branch {
            let previousTip = try repository.resolve(reference: "refs/heads/\(name)")
            if previousTip != context.from { found.append("\(name) is at \(previousTip?.short ?? "nothing") (was \(context.from.short))") }
        }
        let changes = try repository.trackedChanges().map(\.path)
        if settled {
            if !changes.isEmpty { found.append("tracked files changed: \(changes.prefix(10).joined(separator: ", "))") }
            // The run removed these paths; whatever is there now (untracked or ignored) is newer.
            let removed = try repository.changedPaths(from: context.from, to: target)
            let recreated = try repository.presentInWorkTree(removed, absentFrom: target)
            if !recreated.isEmpty { found.append("files created where the update removed them: \(recreated.prefix(10).joined(separator: ", "))") }
        } else {
            let touched = Set(try repository.changedPaths(from: context.from, to: target))
            let elsewhere = changes.filter { !touched.contains($0) }
            let edited = try repository.workTreeMatchesNeither(Array(touched).sorted(), context.from, target,
                                                               cutShortLimit: Self.cutShortLimit(journal))
            let paths = elsewhere + edited
            if !paths.isEmpty { found.append("tracked files hold neither version: \(paths.prefix(10).joined(separator: ", "))") }
        }
        return found
    }

    /// How many files the interrupted run can have left cut short: a kill interrupts one write
    /// at a time, so one for the forward checkout if it had not returned, and one for a rollback
    /// (the pipeline's, or a recovery's) that was writing. After `checked_out` the forward files
    /// are whole: a file cut short then is someone's edit. A record from before `checked_out`
    /// existed says `checkout` until `moved`, and gets the allowance of a checkout in progress.
    static func cutShortLimit(_ journal: ApplyJournal) -> Int {
        (journal.phase == .checkout ? 1 : 0) + (journal.rollingBack ? 1 : 0)
    }

    private static func describe(_ head: Head) -> String {
        switch head {
        case .branch(let name, let commit): "on \(name) at \(commit.short)"
        case .detached(let commit): "detached at \(commit.short)"
        case .unborn(let name): "on the unborn branch \(name)"
        }
    }

    /// Someone worked in the checkout after the crash: keep the code exactly as it is, bring the
    /// environment in line with what is checked out if the sync had started, restart what was
    /// being restarted, and clear the record. The update that follows judges the checkout with
    /// its usual preflight (tracked changes refused, local commits rebased).
    private func keepLaterWork(_ repository: Repository, _ context: RecoveryContext, found: [String]) throws -> Recovery {
        let journal = context.journal
        logger.warning("an update (\(context.who)) was interrupted during \(journal.stage), and the checkout changed since: \(found.joined(separator: "; ")); keeping it as it is")
        var done: [String] = ["kept the checkout as it is (changed since the crash: \(found.joined(separator: "; ")))"]
        var owed: String?
        if journal.sync, journal.phase >= .syncing || journal.rollingBack, let commit = try repository.head().commit {
            let environment = try settleEnvironment(repository, commit: commit, context)
            done.append(environment.note)
            owed = environment.owed
        }
        let restarted = restartIfInterrupted(journal)
        done.append(contentsOf: restarted)
        // Still provisional: what runs is soaked again (never undone here, the later work stays).
        if journal.phase == .soaking, !journal.rollingBack {
            if let failure = try resoak(repository, journal, restartedSince: !restarted.isEmpty) {
                done.append("soaked again and it failed (\(failure)): quarantined it, but did not undo it because of the later work; needs attention")
            } else {
                done.append("soaked \(Int(journal.soakSeconds ?? 0)) s again: passed")
            }
        }
        ApplyJournal.remove(gitDirectory: repository.gitDirectory)
        let message = "an update (\(context.who), \(context.from.short) → \(context.target?.short ?? "?")) was interrupted during \(journal.stage); nothing was undone: \(done.joined(separator: ", "))\(context.locksNote)"
        logger.notice("\(message)")
        return Recovery(journal: journal, message: message, restoredCode: false, environmentOwed: owed, keptLaterWork: true)
    }

    /// Syncs the environment for `commit`, or records that it is owed: when the caller will sync
    /// anyway (`deferSync`), or when the sync fails. A failed sync never blocks the next update;
    /// a debt that cannot be recorded stops the run with the intent record kept (`recordDebt`).
    private func settleEnvironment(_ repository: Repository, commit: ObjectID, _ context: RecoveryContext) throws -> (note: String, owed: String?) {
        let gitDirectory = repository.gitDirectory
        // A rollback already failed to restore this environment once: do not try it again
        // before the update that follows, which syncs whatever it ends on.
        if context.deferSync, context.journal.codeRestored == true {
            let reason = "an interrupted update (\(context.who)) left it half-synced"
            try recordDebt(EnvironmentDebt(commit: commit.hex, reason: reason), gitDirectory: gitDirectory)
            return ("the environment is synced by this update", reason)
        }
        let result = runSync(withinDeadline: false, journalIn: gitDirectory, for: commit)
        if result.ok { return ("re-synced the environment", nil) }
        let reason = "re-syncing after an interrupted update (\(context.who)) failed: \(result.message)"
        try recordDebt(EnvironmentDebt(commit: commit.hex, reason: reason), gitDirectory: gitDirectory)
        return ("re-syncing the environment failed (\(result.message)); the next update syncs it", reason)
    }

    func restartIfInterrupted(_ journal: ApplyJournal) -> [String] {
        guard journal.restart, journal.phase >= .restarting else { return [] }
        let services = ServiceManager(runner: ProcessRunner(environment: request.environment), logger: logger)
        let inactive = services.restart(journal.services, settle: request.settleSeconds)
        return [inactive.isEmpty ? "restarted \(journal.services.joined(separator: ", "))"
                                 : "restarted, but not active: \(inactive.joined(separator: ", "))"]
    }

    /// Puts the code back at `from` (files with the interrupted target as the baseline, so files
    /// it half-wrote are its own), then the branch and HEAD.
    ///
    /// That it is undoing is recorded first: a kill during the restore leaves a record whose files
    /// may hold either version, so the next run finishes the undo instead of taking it for later work.
    private func restoreCode(_ repository: Repository, _ journal: ApplyJournal, from: ObjectID,
                             interruptedTarget: ObjectID?, who: String) throws {
        let gitDirectory = repository.gitDirectory
        var undoing = journal
        undoing.rollingBack = true
        do {
            try undoing.write(gitDirectory: gitDirectory)
        } catch {
            throw Stop(failure: .rollbackFailed, message: "cannot record that an interrupted update (\(who)) is being undone: \(error); nothing was changed. Free space in \(gitDirectory) and run `factoryctl update` again")
        }
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
