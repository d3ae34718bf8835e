import CGit2

/// The outcome of replaying local commits onto an upstream commit.
public enum RebaseOutcome: Sendable, Equatable {
    /// Replayed; `tip` is the new branch tip. `skipped` commits were already upstream.
    case rebased(tip: ObjectID, applied: Int, skipped: Int)
    /// Replaying `commit` conflicted in `paths`; nothing was written to refs, index or work tree.
    case conflict(commit: CommitInfo, paths: [String])
}

extension Repository {
    /// Replays the commits of `tip` that are not in `upstream` onto `upstream`, like
    /// `git rebase upstream` / `git pull --rebase`, keeping authors and messages.
    ///
    /// The rebase runs in memory: refs, index and work tree are not touched, so a conflict leaves
    /// the checkout exactly as it was. The caller moves the branch (see `checkoutTree` and
    /// `setReference`) once the new tip is known. Merge commits are flattened, and a commit whose
    /// change is already upstream is dropped, as the git CLI does.
    public func rebaseInMemory(tip: ObjectID, onto upstream: ObjectID) throws -> RebaseOutcome {
        var tipOID = tip.raw, upstreamOID = upstream.raw
        var branchCommit: OpaquePointer?, upstreamCommit: OpaquePointer?
        try check(git_annotated_commit_lookup(&branchCommit, handle, &tipOID), "look up \(tip.short)")
        defer { git_annotated_commit_free(branchCommit) }
        try check(git_annotated_commit_lookup(&upstreamCommit, handle, &upstreamOID), "look up \(upstream.short)")
        defer { git_annotated_commit_free(upstreamCommit) }

        var options = git_rebase_options()
        try check(git_rebase_options_init(&options, UInt32(GIT_REBASE_OPTIONS_VERSION)), "init rebase options")
        options.inmemory = 1

        var rebase: OpaquePointer?
        try check(git_rebase_init(&rebase, handle, branchCommit, upstreamCommit, nil, &options), "start rebase")
        defer { git_rebase_free(rebase) }

        let committer = try committerSignature()
        defer { git_signature_free(committer) }

        var current = upstream
        var applied = 0, skipped = 0
        while true {
            var operation: UnsafeMutablePointer<git_rebase_operation>?
            let next = git_rebase_next(&operation, rebase)
            if next == GIT_ITEROVER.rawValue { break }
            if next < 0 {
                let error = GitError(operation: "rebase", code: next)
                git_rebase_abort(rebase)
                throw error
            }
            let picked = ObjectID(operation!.pointee.id)

            var index: OpaquePointer?
            try check(git_rebase_inmemory_index(&index, rebase), "read rebase index")
            let conflicted = git_index_has_conflicts(index) == 1
            let paths = conflicted ? Self.conflictPaths(index!) : []
            git_index_free(index)
            if conflicted {
                git_rebase_abort(rebase)
                return .conflict(commit: try commit(picked), paths: paths)
            }

            var newOID = git_oid()
            let code = git_rebase_commit(&newOID, rebase, nil, committer, nil, nil)
            if code == GIT_EAPPLIED.rawValue {
                skipped += 1
                continue
            }
            if code < 0 {
                let error = GitError(operation: "rebase commit \(picked.short)", code: code)
                git_rebase_abort(rebase)
                throw error
            }
            current = ObjectID(newOID)
            applied += 1
        }
        try check(git_rebase_finish(rebase, committer), "finish rebase")
        return .rebased(tip: current, applied: applied, skipped: skipped)
    }

    private static func conflictPaths(_ index: OpaquePointer) -> [String] {
        var iterator: OpaquePointer?
        guard git_index_conflict_iterator_new(&iterator, index) == 0 else { return [] }
        defer { git_index_conflict_iterator_free(iterator) }
        var paths: [String] = []
        var ancestor: UnsafePointer<git_index_entry>?, ours: UnsafePointer<git_index_entry>?, theirs: UnsafePointer<git_index_entry>?
        while git_index_conflict_next(&ancestor, &ours, &theirs, iterator) == 0 {
            if let entry = ours ?? theirs ?? ancestor, let path = entry.pointee.path {
                paths.append(String(cString: path))
            }
        }
        return paths
    }
}
