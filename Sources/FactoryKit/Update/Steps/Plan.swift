import FoundationEssentials
import FactoryBasics
import GitKit

/// Steps 4–5, planning: which commit the branch should end on, and whether the move is allowed.
/// Nothing in the checkout changes here (an in-memory rebase writes only objects).
extension UpdatePipeline {
    /// The move the update will make.
    struct Plan {
        let start: Start
        /// origin's branch tip, or the pinned commit on it.
        let upstream: ObjectID
        /// The local branch before the update (nil: it is created).
        let localTip: ObjectID?
        let target: ObjectID
        /// HEAD moves to another branch.
        let switching: Bool
    }

    /// Plans the integration (up to date, fast-forward, rebase, rewind, create) and passes the
    /// move through the gate. nil when the run is complete without a move (a dry run that would
    /// conflict).
    /// `liveTip`: the releases layout's live release commit when it is on the branch (its HEAD is
    /// detached, so commits made there are not on the branch ref): that is the local branch.
    func plan(_ repository: Repository, _ start: Start, _ report: inout UpdateReport, liveTip: ObjectID? = nil) throws -> Plan? {
        let remote = request.remote, branch = request.branch
        guard let tip = try repository.resolve(reference: "refs/remotes/\(remote)/\(branch)") else {
            throw Stop(failure: .branchMissing, message: "\(remote) has no branch '\(branch)'; nothing was changed")
        }
        let upstream = try pinnedUpstream(repository, tip: tip)
        report.upstream = upstream.hex
        let localTip = try liveTip ?? repository.resolve(reference: "refs/heads/\(branch)")
        // Incoming commits: upstream's, measured from the local branch (or from HEAD for a new branch).
        let base = localTip ?? start.commit
        let counts = try repository.aheadBehind(local: base, upstream: upstream)
        report.commitCount = counts.behind
        report.commits = try repository.commits(from: base, to: upstream, limit: 100).map(CommitLine.init)
        let target: ObjectID
        if try checkRewind(repository, base: base, upstream: upstream, originBefore: start.originBefore) {
            target = upstream
            report.integration = .rewind
            report.commitCount = 0
            report.commits = []
        } else if let localTip {
            guard let integrated = try integrate(repository, localTip: localTip, upstream: upstream, counts, &report) else { return nil }
            target = integrated
        } else {
            target = upstream
            report.integration = .created
        }
        let switching: Bool
        if case .branch(let name, _) = start.head { switching = name != branch } else { switching = true }
        report.to = target.hex
        report.changed = switching || target != start.commit
        // Up to date with commits ahead, or rebased: the target keeps the local branch's commits.
        if report.changed { try admit(upstream, localTip: target == upstream ? nil : localTip, start: start.commit, repository) }
        return Plan(start: start, upstream: upstream, localTip: localTip, target: target, switching: switching)
    }

    /// `git pull --rebase` on an existing branch: up to date, fast-forward, or the local commits
    /// rebased in memory onto upstream. nil for a dry run that would conflict (reported).
    private func integrate(_ repository: Repository, localTip: ObjectID, upstream: ObjectID,
                           _ counts: (ahead: Int, behind: Int), _ report: inout UpdateReport) throws -> ObjectID? {
        let ahead = counts.ahead
        switch (counts.ahead, counts.behind) {
        case (_, 0):
            report.integration = .upToDate
            return localTip
        case (0, _):
            report.integration = .fastForward
            return upstream
        default:
            logger.info("rebasing \(ahead) local commit(s) onto \(request.remote)/\(request.branch)")
            switch try repository.rebaseInMemory(tip: localTip, onto: upstream) {
            case .rebased(let tip, let applied, _):
                report.integration = .rebase
                report.rebasedCommits = applied
                if request.dryRun { report.wouldConflict = false }
                return tip
            case .conflict(let commit, let paths):
                if request.dryRun {
                    report.wouldConflict = true
                    report.integration = .rebase
                    report.paths = paths
                    report.status = .success
                    return nil
                }
                throw Stop(failure: .conflict,
                           message: "rebasing local commit \(commit.id.short) (\(commit.summary)) onto \(request.remote)/\(request.branch) conflicts in \(paths.joined(separator: ", ")); the rebase was aborted and the checkout is exactly as it was. Resolve by hand (git pull --rebase) or drop the local commits",
                           paths: paths)
            }
        }
    }

    /// The gate every move that changes the code passes — a fast-forward, a rebase, a rewind, and
    /// a switch to a local branch: every commit the move brings must be vouched for by an allowed
    /// signer. The upstream code is vouched for by its tip's signature (a signed release covers
    /// its history). The local branch's own commits that the target keeps (as they are, or
    /// rebased) are checked one by one, except those HEAD already runs: a commit on the branch
    /// checked out now is the operator's own, but one only on the local branch being switched to
    /// (created from another remote branch, merged from anywhere) is not vouched for by anyone.
    /// Pins and anti-rewind are applied while planning, for every move.
    private func admit(_ upstream: ObjectID, localTip: ObjectID?, start: ObjectID, _ repository: Repository) throws {
        guard let policy = request.signaturePolicy else { return }
        func refuse(_ reason: String) -> Stop {
            Stop(failure: .signatureRefused, message: "\(reason); refusing to move to it (UA_ALLOWED_SIGNERS). Nothing was changed")
        }
        do {
            let signer = try policy.check(upstream, in: repository)
            logger.info("\(upstream.short) is signed by \(signer)")
        } catch {
            throw refuse(error.description)
        }
        guard let localTip else { return }
        // What the rebase replays or the switch checks out from the local branch.
        for commit in try repository.commitIDs(reachableFrom: localTip, notFrom: [start, upstream]) {
            do {
                _ = try policy.check(commit, in: repository)
            } catch {
                throw refuse("local branch \(request.branch) carries \(error.description), which this checkout does not run yet and \(request.remote)/\(request.branch) does not contain. Sign it, or drop it from \(request.branch)")
            }
        }
    }

    /// The upstream to integrate: origin's tip, or the pinned commit, which must be on it.
    func pinnedUpstream(_ repository: Repository, tip: ObjectID) throws -> ObjectID {
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
}
