import FoundationEssentials
import FactoryBasics
import GitKit

/// Step 2 of the pipeline: the checkout must be clean and on a commit before anything moves.
extension UpdatePipeline {
    /// Where the checkout starts from.
    struct Start {
        let head: Head
        let commit: ObjectID
        /// origin's branch before the fetch: what this factory last knew as upstream.
        var originBefore: ObjectID?
    }

    /// Refuses a checkout mid-rebase/merge, without a commit, or with tracked changes (listed).
    func preflight(_ repository: Repository, _ report: inout UpdateReport) throws -> Start {
        let state = repository.state
        guard state == .clean else {
            throw Stop(failure: .preflight,
                       message: "the checkout is in the middle of \(state.inProgressName); finish or abort it (git \(abortHint(state))) and run the update again. Nothing was changed")
        }
        let head = try repository.head()
        guard let commit = head.commit else {
            throw Stop(failure: .preflight, message: "HEAD has no commit yet (unborn branch \(head.branchName ?? "?")); nothing was changed")
        }
        report.from = commit.hex
        report.to = commit.hex
        report.previousBranch = head.branchName
        let changes = try report.time("status") { try repository.trackedChanges() }
        guard changes.isEmpty else {
            let list = changes.map { "\($0.change): \($0.path)" }.joined(separator: ", ")
            throw Stop(failure: .preflight,
                       message: "tracked files have local changes (\(list)); commit, stash or revert them first. Nothing was changed",
                       paths: changes.map(\.path))
        }
        try checkCancelled()
        let originBefore = try repository.resolve(reference: "refs/remotes/\(request.remote)/\(request.branch)")
        return Start(head: head, commit: commit, originBefore: originBefore)
    }

    /// Dedupe by version: pinned to the commit the branch already runs, nothing to fetch (an
    /// environment still owed is synced). True when the update is complete.
    func alreadyAtPin(_ repository: Repository, _ start: Start, _ report: inout UpdateReport) throws -> Bool {
        report.pinned = request.commit?.hex
        guard let pinned = request.commit, case .branch(let name, let commit) = start.head,
              name == request.branch, commit == pinned else { return false }
        logger.info("already at the pinned commit \(pinned.short)")
        if let owed = EnvironmentDebt.read(gitDirectory: repository.gitDirectory), request.sync {
            try payDebt(owed, repository, commit: pinned, &report)
        }
        report.upstream = pinned.hex
        report.integration = .upToDate
        report.status = .success
        return true
    }

    func abortHint(_ state: RepositoryState) -> String {
        switch state {
        case .merge: "merge --abort"
        case .cherryPick: "cherry-pick --abort"
        case .revert: "revert --abort"
        case .bisect: "bisect reset"
        case .applyMailbox: "am --abort"
        default: "rebase --abort"
        }
    }
}
