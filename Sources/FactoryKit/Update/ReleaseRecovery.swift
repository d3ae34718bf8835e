import FoundationEssentials
import FactoryBasics
import GitKit

/// Crash recovery in the releases layout. `current` always names a complete release (it moves
/// only by one rename, to a release already built), so what a killed update leaves is at most a
/// half-built release beside the live one, or a swap whose restart or soak did not finish.
extension UpdatePipeline {
    func recoverRelease(_ repository: Repository, _ journal: ApplyJournal, who: String, locksNote: String) throws -> Recovery {
        let layout = ReleasesLayout(root: repository.commonDirectory.deletingLastPathComponent)
        let name = journal.release ?? "", previous = journal.previousRelease ?? ""
        let live = layout.liveName
        let what = "\(journal.from.map { String($0.prefix(7)) } ?? "?") → \(journal.to.map { String($0.prefix(7)) } ?? "?")"
        func finish(_ message: String, restored: Bool, keptLaterWork: Bool = false, soakPassed: Bool? = nil) -> Recovery {
            ApplyJournal.remove(gitDirectory: repository.gitDirectory)
            prune(layout)
            let text = message + locksNote
            logger.notice("\(text)")
            var recovery = Recovery(journal: journal, message: text, restoredCode: restored, soakPassed: soakPassed)
            recovery.keptLaterWork = keptLaterWork
            return recovery
        }
        // Killed while building: nothing ran the new release; a half-built one goes.
        if live != name, live == previous, !journal.rollingBack, journal.phase < .moved {
            if layout.release(name)?.complete != true { try? layout.remove(name) }
            return finish("an update (\(who), \(what)) was killed while building release \(name); the live release \(previous) was never touched", restored: false)
        }
        // Past the swap and not undoing, yet `current` names another release: someone else
        // pointed it there (the pipeline marks its own swap back as rolling back first).
        guard live == name || (live == previous && journal.rollingBack) else {
            return finish("an update (\(who), \(what)) was interrupted after its swap, and \(layout.current) has since been pointed at \(live ?? "nothing") by someone else: left as it is", restored: false, keptLaterWork: true)
        }
        if live == name, journal.phase == .soaking, !journal.rollingBack {
            logger.warning("an update (\(who), \(what)) was interrupted during its soak; soaking release \(name) again")
            if try resoak(repository, journal) == nil {
                return finish("an update (\(who), \(what)) was interrupted during its soak; soaked \(Int(journal.soakSeconds ?? 0)) s again and kept release \(name)", restored: false, soakPassed: true)
            }
            logger.error("soak failed again; swapping back to \(previous)")
            return try undoSwap(layout, repository, journal, finish: finish, resoakFailed: true, who: who, what: what)
        }
        return try undoSwap(layout, repository, journal, finish: finish, resoakFailed: false, who: who, what: what)
    }

    /// `current` back to the previous release, the branch back, and the services restarted when
    /// the restart had begun; the release being undone goes.
    private func undoSwap(_ layout: ReleasesLayout, _ repository: Repository, _ journal: ApplyJournal,
                          finish: (String, Bool, Bool, Bool?) -> Recovery, resoakFailed: Bool, who: String, what: String) throws -> Recovery {
        let name = journal.release ?? "", previous = journal.previousRelease ?? ""
        var undoing = journal
        undoing.rollingBack = true
        try? undoing.write(gitDirectory: repository.gitDirectory)
        do {
            try ReleaseSwap(layout: layout, release: name, previous: previous).undo()
            try restoreBranch(repository, journal)
        } catch {
            throw Stop(failure: .rollbackFailed, message: "undoing an interrupted update (\(who), \(what)) failed: \(error); \(layout.current) names \(layout.liveName ?? "nothing"). Check it and run `factoryctl update` again")
        }
        var done = ["swapped \(layout.current) back to \(previous)"]
        done.append(contentsOf: restartIfInterrupted(journal))
        try? layout.remove(name)
        // A record still at `checkout` whose release is live was killed between the rename and
        // the record's next write.
        let stage = journal.phase == .checkout && !journal.rollingBack ? "its swap" : journal.stage
        return finish("undid an update interrupted during \(stage) (\(who), \(what)): \(done.joined(separator: ", ")); no sync was needed", true, false,
                      resoakFailed ? false : nil)
    }

    /// The branch ref (and HEAD) as they were, unless someone moved them since.
    private func restoreBranch(_ repository: Repository, _ journal: ApplyJournal) throws {
        guard let to = journal.to.flatMap(ObjectID.init(hex:)),
              try repository.resolve(reference: "refs/heads/\(journal.branch)") == to else { return }
        if let before = journal.branchTipBefore.flatMap(ObjectID.init(hex:)) {
            try repository.setReference("refs/heads/\(journal.branch)", to: before, message: "factoryctl: undo an interrupted update")
        } else if journal.previousBranch != journal.branch {
            try repository.deleteReference("refs/heads/\(journal.branch)")
        }
        if let branch = journal.previousBranch, branch != journal.branch { try repository.setHead(branch: branch) }
    }
}
