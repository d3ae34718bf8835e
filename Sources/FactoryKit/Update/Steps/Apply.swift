import FoundationEssentials
import FactoryBasics
import GitKit

/// Steps 4–5, applying: the intent record, then the work tree (all-or-nothing), then the branch
/// ref and HEAD.
extension UpdatePipeline {
    /// Moves the checkout to `plan.target`; returns what it takes to undo it. Files in the way
    /// are refused before the intent is recorded.
    func apply(_ plan: Plan, _ repository: Repository, _ journal: inout ApplyJournal,
               _ report: inout UpdateReport) throws -> Rollback {
        let branch = request.branch, target = plan.target
        let rollback = Rollback(repository: repository, original: plan.start.head, branch: branch, branchTipBefore: plan.localTip)
        // Only the paths that differ between what is checked out and the target are examined and
        // written (the preflight found no tracked change anywhere). A very large change is checked
        // out as a whole tree, which is cheaper than a huge path list.
        let changed = try repository.changedPaths(from: plan.start.commit, to: target)
        let paths: [String]? = changed.count <= 2000 ? changed : nil
        do {
            // Refuse files in the way before the intent is recorded: a recovery may then treat
            // every file at a path the target adds as one this update wrote.
            try report.time("checkout") { try repository.checkoutTree(of: target, dryRun: true, paths: paths) }
        } catch let error as GitError where error.kind == .conflict {
            throw checkoutBlocked(error, target)
        }
        record(plan, in: &journal)
        try advance(&journal, to: .checkout, repository)
        do {
            try report.time("checkout") { try repository.checkoutTree(of: target, paths: paths) }
        } catch let error as GitError where error.kind == .conflict {
            // libgit2 finds conflicts before writing anything.
            throw checkoutBlocked(error, target)
        } catch {
            // Anything else may have failed half-way through writing files.
            try rollBack(rollback, &report, failure: .internalError, reason: "checkout of \(target.short) failed: \(error)",
                         resync: false, restart: false)
        }
        // From here on a recovery holds every file to exactly one version: a file cut short
        // after this is not the checkout's (an operator's edit that dropped a file's end).
        try advance(&journal, to: .checkedOut, repository, rollback, &report)
        do {
            try repository.setReference("refs/heads/\(branch)", to: target,
                                        message: "factoryctl: pull --rebase \(request.remote) \(branch)")
            if plan.localTip == nil { try repository.setUpstream(branch: branch, remote: request.remote) }
            if plan.switching { try repository.setHead(branch: branch) }
        } catch {
            try rollBack(rollback, &report, failure: .internalError, reason: "could not move \(branch): \(error)", resync: false, restart: false)
        }
        logger.info("\(branch) now at \(target.short) (\(report.integration.rawValue))")
        try advance(&journal, to: .moved, repository, rollback, &report)
        return rollback
    }

    /// What a recovery needs to undo the move: from, to, the branches before, the later steps.
    func record(_ plan: Plan, in journal: inout ApplyJournal) {
        journal.from = plan.start.commit.hex
        if case .branch(let name, _) = plan.start.head { journal.previousBranch = name }
        journal.to = plan.target.hex
        journal.upstream = plan.upstream.hex
        journal.branchTipBefore = plan.localTip?.hex
        journal.sync = request.sync
        journal.restart = request.restart
        journal.services = request.services
    }

    private func checkoutBlocked(_ error: GitError, _ target: ObjectID) -> Stop {
        Stop(failure: .checkoutBlocked,
             message: "cannot check out \(request.branch) at \(target.short): \(error.message); nothing was changed. Move the files out of the way and retry")
    }
}
