import CGit2
import FoundationEssentials
import Glibc

/// The state a repository is left in by an unfinished operation.
public enum RepositoryState: String, Sendable {
    case clean, merge, revert, cherryPick, bisect, rebase, rebaseInteractive, rebaseMerge, applyMailbox, other

    init(_ raw: Int32) {
        switch raw {
        case Int32(GIT_REPOSITORY_STATE_NONE.rawValue): self = .clean
        case Int32(GIT_REPOSITORY_STATE_MERGE.rawValue): self = .merge
        case Int32(GIT_REPOSITORY_STATE_REVERT.rawValue), Int32(GIT_REPOSITORY_STATE_REVERT_SEQUENCE.rawValue): self = .revert
        case Int32(GIT_REPOSITORY_STATE_CHERRYPICK.rawValue), Int32(GIT_REPOSITORY_STATE_CHERRYPICK_SEQUENCE.rawValue): self = .cherryPick
        case Int32(GIT_REPOSITORY_STATE_BISECT.rawValue): self = .bisect
        case Int32(GIT_REPOSITORY_STATE_REBASE.rawValue): self = .rebase
        case Int32(GIT_REPOSITORY_STATE_REBASE_INTERACTIVE.rawValue): self = .rebaseInteractive
        case Int32(GIT_REPOSITORY_STATE_REBASE_MERGE.rawValue): self = .rebaseMerge
        case Int32(GIT_REPOSITORY_STATE_APPLY_MAILBOX.rawValue), Int32(GIT_REPOSITORY_STATE_APPLY_MAILBOX_OR_REBASE.rawValue): self = .applyMailbox
        default: self = .other
        }
    }

    /// A human name: "a rebase", "a merge".
    public var inProgressName: String {
        switch self {
        case .clean: "nothing"
        case .merge: "a merge"
        case .revert: "a revert"
        case .cherryPick: "a cherry-pick"
        case .bisect: "a bisect"
        case .rebase, .rebaseInteractive, .rebaseMerge: "a rebase"
        case .applyMailbox: "git am"
        case .other: "an unfinished git operation"
        }
    }
}

/// Where HEAD points.
public enum Head: Sendable, Equatable {
    case branch(name: String, commit: ObjectID)
    case detached(commit: ObjectID)
    case unborn(name: String)

    public var commit: ObjectID? {
        switch self {
        case .branch(_, let commit), .detached(let commit): commit
        case .unborn: nil
        }
    }

    public var branchName: String? {
        switch self {
        case .branch(let name, _), .unborn(let name): name
        case .detached: nil
        }
    }
}

/// A tracked file that differs from HEAD (staged or in the work tree).
public struct TrackedChange: Sendable, Equatable, Codable {
    public init(path: String, change: String) {
        self.path = path
        self.change = change
    }

    public let path: String
    /// "modified", "deleted", "added", "renamed", "typechange", "conflicted".
    public let change: String
}

/// The sole owner of a `git_repository` handle. Not Sendable: keep it in one thread.
public final class Repository {
    let handle: OpaquePointer

    init(handle: OpaquePointer) {
        self.handle = handle
    }

    deinit {
        git_repository_free(handle)
    }

    /// Opens the repository whose work tree (or `.git`) is exactly `path`.
    public static func open(at path: String) throws -> Repository {
        try GitLibrary.initialize()
        var pointer: OpaquePointer?
        let flags = UInt32(GIT_REPOSITORY_OPEN_NO_SEARCH.rawValue)
        let code = git_repository_open_ext(&pointer, path, flags, nil)
        if code < 0 {
            if let pointer { git_repository_free(pointer) }
            throw GitError(operation: "open repository at \(path)", code: code)
        }
        return Repository(handle: pointer!)
    }

    /// The root of the work tree that contains `path`, searching upward like git does (a
    /// subdirectory of a checkout gives the checkout's root); nil outside any work tree.
    public static func workTreeRoot(containing path: String) -> String? {
        guard (try? GitLibrary.initialize()) != nil else { return nil }
        var pointer: OpaquePointer?
        guard git_repository_open_ext(&pointer, path, 0, nil) == 0, let pointer else { return nil }
        let repository = Repository(handle: pointer)
        return repository.workingDirectory
    }

    /// The work tree root, with a trailing slash removed; nil for a bare repository.
    public var workingDirectory: String? {
        guard let path = git_repository_workdir(handle) else { return nil }
        return Self.trimmed(String(cString: path))
    }

    /// The `.git` directory.
    public var gitDirectory: String {
        Self.trimmed(String(cString: git_repository_path(handle)))
    }

    private static func trimmed(_ path: String) -> String {
        path.count > 1 && path.hasSuffix("/") ? String(path.dropLast()) : path
    }

    public var state: RepositoryState {
        RepositoryState(git_repository_state(handle))
    }

    // MARK: References

    public func head() throws -> Head {
        var ref: OpaquePointer?
        let code = git_repository_head(&ref, handle)
        if code == GIT_EUNBORNBRANCH.rawValue || code == GIT_ENOTFOUND.rawValue {
            var symbolic: OpaquePointer?
            try check(git_reference_lookup(&symbolic, handle, "HEAD"), "read HEAD")
            defer { git_reference_free(symbolic) }
            let target = git_reference_symbolic_target(symbolic).map { String(cString: $0) } ?? "HEAD"
            return .unborn(name: Self.shortBranchName(target))
        }
        try check(code, "read HEAD")
        defer { git_reference_free(ref) }
        guard let oid = git_reference_target(ref) else {
            throw GitError(operation: "read HEAD", code: -1, message: "HEAD does not point at a commit")
        }
        if git_repository_head_detached(handle) == 1 {
            return .detached(commit: ObjectID(oid.pointee))
        }
        let name = String(cString: git_reference_name(ref))
        return .branch(name: Self.shortBranchName(name), commit: ObjectID(oid.pointee))
    }

    private static func shortBranchName(_ refName: String) -> String {
        refName.hasPrefix("refs/heads/") ? String(refName.dropFirst("refs/heads/".count)) : refName
    }

    /// Resolves a reference ("refs/remotes/origin/main") to a commit, or nil when it does not exist.
    public func resolve(reference name: String) throws -> ObjectID? {
        var oid = git_oid()
        let code = git_reference_name_to_id(&oid, handle, name)
        if code == GIT_ENOTFOUND.rawValue { return nil }
        try check(code, "resolve \(name)")
        return ObjectID(oid)
    }

    /// Points `name` (a full ref name) at `target`, creating it if needed, with a reflog message.
    public func setReference(_ name: String, to target: ObjectID, message: String) throws {
        var oid = target.raw
        var ref: OpaquePointer?
        try check(git_reference_create(&ref, handle, name, &oid, 1, message), "update \(name)")
        git_reference_free(ref)
    }

    public func deleteReference(_ name: String) throws {
        var ref: OpaquePointer?
        let code = git_reference_lookup(&ref, handle, name)
        if code == GIT_ENOTFOUND.rawValue { return }
        try check(code, "look up \(name)")
        defer { git_reference_free(ref) }
        try check(git_reference_delete(ref), "delete \(name)")
    }

    /// Makes HEAD a symbolic ref to `refs/heads/<branch>` without touching index or work tree.
    public func setHead(branch: String) throws {
        try check(git_repository_set_head(handle, "refs/heads/\(branch)"), "point HEAD at \(branch)")
    }

    public func setHeadDetached(_ commit: ObjectID) throws {
        var oid = commit.raw
        try check(git_repository_set_head_detached(handle, &oid), "detach HEAD at \(commit.short)")
    }

    /// Sets `branch.<name>.remote` / `.merge` so the branch tracks `<remote>/<name>`.
    public func setUpstream(branch: String, remote: String) throws {
        var ref: OpaquePointer?
        try check(git_branch_lookup(&ref, handle, branch, GIT_BRANCH_LOCAL), "look up branch \(branch)")
        defer { git_reference_free(ref) }
        try check(git_branch_set_upstream(ref, "\(remote)/\(branch)"), "set upstream of \(branch)")
    }

    /// The remote-tracking branch a local branch is configured to follow, if any ("origin/main").
    public func upstreamName(ofBranch branch: String) -> String? {
        var buffer = git_buf()
        defer { git_buf_dispose(&buffer) }
        guard git_branch_upstream_name(&buffer, handle, "refs/heads/\(branch)") == 0, let ptr = buffer.ptr else {
            return nil
        }
        let full = String(cString: ptr)
        return full.hasPrefix("refs/remotes/") ? String(full.dropFirst("refs/remotes/".count)) : full
    }

    /// True when `name` is a valid local branch name for git.
    public static func isValidBranchName(_ name: String) -> Bool {
        guard (try? GitLibrary.initialize()) != nil else { return false }
        var valid: Int32 = 0
        guard git_branch_name_is_valid(&valid, name) == 0 else { return false }
        return valid == 1
    }

    /// Local branch names and the branches of `origin` (without the `origin/` prefix), sorted,
    /// without duplicates: what `update --branch` can be given (for shell completion).
    public func branchNames() -> [String] {
        var iterator: OpaquePointer?
        guard git_branch_iterator_new(&iterator, handle, GIT_BRANCH_ALL) == 0 else { return [] }
        defer { git_branch_iterator_free(iterator) }
        var names = Set<String>()
        var ref: OpaquePointer?
        var type = GIT_BRANCH_LOCAL
        while git_branch_next(&ref, &type, iterator) == 0 {
            defer { git_reference_free(ref) }
            var name: UnsafePointer<CChar>?
            guard git_branch_name(&name, ref) == 0, let name else { continue }
            let text = String(cString: name)
            if type == GIT_BRANCH_LOCAL {
                names.insert(text)
            } else if text.hasPrefix("origin/"), text != "origin/HEAD" {
                names.insert(String(text.dropFirst("origin/".count)))
            }
        }
        return names.sorted()
    }

    public func remoteURL(_ remote: String) -> String? {
        var pointer: OpaquePointer?
        guard git_remote_lookup(&pointer, handle, remote) == 0 else { return nil }
        defer { git_remote_free(pointer) }
        return git_remote_url(pointer).map { String(cString: $0) }
    }

    // MARK: Commits and history

    public func commit(_ id: ObjectID) throws -> CommitInfo {
        var oid = id.raw
        var commit: OpaquePointer?
        try check(git_commit_lookup(&commit, handle, &oid), "look up commit \(id.short)")
        defer { git_commit_free(commit) }
        return Self.info(commit!, id: id)
    }

    static func info(_ commit: OpaquePointer, id: ObjectID) -> CommitInfo {
        let summary = git_commit_summary(commit).map { String(cString: $0) } ?? ""
        let author = git_commit_author(commit)!.pointee
        return CommitInfo(
            id: id,
            summary: summary,
            authorName: author.name.map { String(cString: $0) } ?? "",
            authorEmail: author.email.map { String(cString: $0) } ?? "",
            time: Int64(author.when.time)
        )
    }

    /// Commits reachable from `tip` but not from `base`, oldest first (like `git log --reverse base..tip`).
    public func commits(from base: ObjectID?, to tip: ObjectID, limit: Int = .max) throws -> [CommitInfo] {
        try commitIDs(reachableFrom: tip, notFrom: base.map { [$0] } ?? [], limit: limit).reversed().map(commit)
    }

    /// The commits reachable from `tip` and from none of `hidden` (`git rev-list tip ^a ^b`),
    /// newest first, at most `limit`.
    public func commitIDs(reachableFrom tip: ObjectID, notFrom hidden: [ObjectID], limit: Int = .max) throws -> [ObjectID] {
        var walk: OpaquePointer?
        try check(git_revwalk_new(&walk, handle), "start history walk")
        defer { git_revwalk_free(walk) }
        try check(git_revwalk_sorting(walk, GIT_SORT_TOPOLOGICAL.rawValue), "sort history walk")
        var tipOID = tip.raw
        try check(git_revwalk_push(walk, &tipOID), "walk from \(tip.short)")
        for commit in hidden {
            var oid = commit.raw
            try check(git_revwalk_hide(walk, &oid), "hide \(commit.short)")
        }
        var result: [ObjectID] = []
        var oid = git_oid()
        while result.count < limit, git_revwalk_next(&oid, walk) == 0 {
            result.append(ObjectID(oid))
        }
        return result
    }

    /// (ahead, behind): commits in `local` not in `upstream`, and the other way round.
    public func aheadBehind(local: ObjectID, upstream: ObjectID) throws -> (ahead: Int, behind: Int) {
        var ahead = 0, behind = 0
        var l = local.raw, u = upstream.raw
        try check(git_graph_ahead_behind(&ahead, &behind, handle, &l, &u), "count commits")
        return (ahead, behind)
    }

    /// True when `ancestor` is `commit` or one of its ancestors.
    public func contains(_ ancestor: ObjectID, in commit: ObjectID) throws -> Bool {
        if ancestor == commit { return true }
        var c = commit.raw, a = ancestor.raw
        return try check(git_graph_descendant_of(handle, &c, &a), "compare \(commit.short) with \(ancestor.short)") == 1
    }

    /// The commit's signature (the `gpgsig` header, armored) and the exact bytes it signs; nil
    /// for an unsigned commit.
    public func commitSignature(_ id: ObjectID) throws -> (signature: String, signedData: [UInt8])? {
        var signature = git_buf(), data = git_buf()
        defer { git_buf_dispose(&signature); git_buf_dispose(&data) }
        var oid = id.raw
        let code = git_commit_extract_signature(&signature, &data, handle, &oid, nil)
        if code == GIT_ENOTFOUND.rawValue { return nil }
        try check(code, "read the signature of \(id.short)")
        guard let signaturePointer = signature.ptr, let dataPointer = data.ptr else { return nil }
        let text = String(decoding: UnsafeRawBufferPointer(start: signaturePointer, count: signature.size), as: UTF8.self)
        let bytes = Array(UnsafeRawBufferPointer(start: dataPointer, count: data.size))
        return (text, bytes)
    }

    /// True when the object database has this commit.
    public func hasCommit(_ id: ObjectID) -> Bool {
        var oid = id.raw
        var commit: OpaquePointer?
        guard git_commit_lookup(&commit, handle, &oid) == 0 else { return false }
        git_commit_free(commit)
        return true
    }

    // MARK: Work tree

    /// Tracked files that differ from HEAD, staged or not. Untracked and ignored files are not listed.
    public func trackedChanges() throws -> [TrackedChange] {
        var options = git_status_options()
        try check(git_status_options_init(&options, UInt32(GIT_STATUS_OPTIONS_VERSION)), "init status options")
        options.show = GIT_STATUS_SHOW_INDEX_AND_WORKDIR
        options.flags = 0 // no untracked, no ignored
        var list: OpaquePointer?
        try check(git_status_list_new(&list, handle, &options), "read status")
        defer { git_status_list_free(list) }
        var changes: [TrackedChange] = []
        for index in 0..<git_status_list_entrycount(list) {
            guard let entry = git_status_byindex(list, index)?.pointee else { continue }
            let flags = entry.status.rawValue
            if flags == GIT_STATUS_CURRENT.rawValue { continue }
            let delta = entry.index_to_workdir ?? entry.head_to_index
            let path = delta.flatMap { $0.pointee.new_file.path ?? $0.pointee.old_file.path }
                .map { String(cString: $0) } ?? "?"
            changes.append(TrackedChange(path: path, change: Self.describe(flags)))
        }
        return changes
    }

    private static func describe(_ flags: UInt32) -> String {
        func has(_ f: git_status_t) -> Bool { flags & f.rawValue != 0 }
        if has(GIT_STATUS_CONFLICTED) { return "conflicted" }
        if has(GIT_STATUS_WT_DELETED) || has(GIT_STATUS_INDEX_DELETED) { return "deleted" }
        if has(GIT_STATUS_INDEX_NEW) { return "added" }
        if has(GIT_STATUS_WT_RENAMED) || has(GIT_STATUS_INDEX_RENAMED) { return "renamed" }
        if has(GIT_STATUS_WT_TYPECHANGE) || has(GIT_STATUS_INDEX_TYPECHANGE) { return "typechange" }
        return "modified"
    }

    /// Checks out the tree of `commit` into index and work tree.
    ///
    /// `safe` (the default) refuses before writing anything when a modified tracked file or an
    /// untracked file would be overwritten; the paths in the way are listed in the error.
    /// Ignored files are never overwritten, and untracked files are never removed.
    /// `dryRun` only checks (nothing is written). `baseline` names the commit the work tree is
    /// believed to hold (default: the index) — crash recovery passes the commit an interrupted
    /// checkout was writing, so files it had already written are recognised as its own.
    ///
    /// `paths` limits the checkout to exactly those paths (no pattern matching): with the paths
    /// that differ between the checked-out commit and `commit` (`changedPaths`), only those files
    /// are examined and written, instead of every file of the work tree.
    public func checkoutTree(of commit: ObjectID, force: Bool = false, dryRun: Bool = false, baseline: ObjectID? = nil,
                             paths: [String]? = nil) throws {
        let collector = PathCollector()
        var baselineTree: OpaquePointer?
        defer { git_tree_free(baselineTree) }
        if let baseline {
            var oid = baseline.raw
            var baselineCommit: OpaquePointer?
            try check(git_commit_lookup(&baselineCommit, handle, &oid), "look up commit \(baseline.short)")
            defer { git_commit_free(baselineCommit) }
            try check(git_commit_tree(&baselineTree, baselineCommit), "read tree of \(baseline.short)")
        }
        let code = try withCommitObject(commit) { object in
            var options = try checkoutOptions(force: force)
            if dryRun { options.checkout_strategy |= GIT_CHECKOUT_DRY_RUN.rawValue }
            options.baseline = baselineTree
            options.notify_flags = GIT_CHECKOUT_NOTIFY_CONFLICT.rawValue
            options.notify_payload = Unmanaged.passUnretained(collector).toOpaque()
            options.notify_cb = { _, path, _, _, _, payload in
                if let payload, let path {
                    Unmanaged<PathCollector>.fromOpaque(payload).takeUnretainedValue().paths.append(String(cString: path))
                }
                return 0
            }
            guard let paths else {
                return withExtendedLifetime(collector) { git_checkout_tree(handle, object, &options) }
            }
            options.checkout_strategy |= GIT_CHECKOUT_DISABLE_PATHSPEC_MATCH.rawValue
            let copies = paths.map { strdup($0) }
            defer { copies.forEach { free($0) } }
            return copies.withUnsafeBufferPointer { buffer in
                options.paths = git_strarray(strings: UnsafeMutablePointer(mutating: buffer.baseAddress), count: buffer.count)
                return withExtendedLifetime(collector) { git_checkout_tree(handle, object, &options) }
            }
        }
        if code == GIT_ECONFLICT.rawValue {
            let paths = collector.paths.isEmpty ? "" : ": " + collector.paths.joined(separator: ", ")
            throw GitError(operation: "checkout \(commit.short)", code: code, errorClass: 0,
                           message: "files in the way would be overwritten\(paths)")
        }
        try check(code, "checkout \(commit.short)")
    }

    /// The paths whose content, mode or existence differs between the trees of two commits
    /// (a tree-to-tree diff: the work tree is not read). Renames appear as both paths.
    public func changedPaths(from old: ObjectID, to new: ObjectID) throws -> [String] {
        func tree(_ id: ObjectID) throws -> OpaquePointer? {
            var oid = id.raw
            var commit: OpaquePointer?
            try check(git_commit_lookup(&commit, handle, &oid), "look up commit \(id.short)")
            defer { git_commit_free(commit) }
            var tree: OpaquePointer?
            try check(git_commit_tree(&tree, commit), "read tree of \(id.short)")
            return tree
        }
        let oldTree = try tree(old)
        defer { git_tree_free(oldTree) }
        let newTree = try tree(new)
        defer { git_tree_free(newTree) }
        var diff: OpaquePointer?
        try check(git_diff_tree_to_tree(&diff, handle, oldTree, newTree, nil), "diff \(old.short)..\(new.short)")
        defer { git_diff_free(diff) }
        var paths: [String] = []
        var seen = Set<String>()
        for index in 0..<git_diff_num_deltas(diff) {
            guard let delta = git_diff_get_delta(diff, index)?.pointee else { continue }
            for pointer in [delta.old_file.path, delta.new_file.path] {
                guard let pointer else { continue }
                let path = String(cString: pointer)
                if seen.insert(path).inserted { paths.append(path) }
            }
        }
        return paths
    }

    /// The paths among `paths` whose work-tree file matches neither its version in `first` nor
    /// in `second` (a path absent from a commit matches when the file is absent too). Crash
    /// recovery uses it to tell a half-finished checkout between two commits (every file is one
    /// or the other) from edits someone made since. Contents are hashed as git would store them
    /// (the repository's filters applied); a symbolic link is compared by its target.
    ///
    /// A checkout killed while writing a file leaves that one file cut short: a regular file whose
    /// bytes are a beginning of one of the two versions (empty included). Up to `cutShortLimit`
    /// such files count as that version (one per write that may have been interrupted); when
    /// there are more, no kill explains them, and every one of them is listed (an edit that
    /// deleted the end of a file looks exactly like this).
    public func workTreeMatchesNeither(_ paths: [String], _ first: ObjectID, _ second: ObjectID,
                                       cutShortLimit: Int) throws -> [String] {
        guard let root = workingDirectory else { return [] }
        let firstTree = try tree(of: first)
        defer { git_tree_free(firstTree) }
        let secondTree = try tree(of: second)
        defer { git_tree_free(secondTree) }
        var neither = Set<String>(), cutShort = Set<String>()
        for path in paths {
            let full = root + "/" + path
            let actual = try workTreeBlob(full, relative: path)
            let versions = [blob(at: path, in: firstTree), blob(at: path, in: secondTree)]
            if versions.contains(actual) { continue }
            let isPrefix = actual.map { actual in
                !actual.link && !actual.other && versions.contains { version in
                    guard let version, !version.link else { return false }
                    return isCutShortCopy(full, of: version.id)
                }
            } ?? false
            if isPrefix { cutShort.insert(path) } else { neither.insert(path) }
        }
        if cutShort.count > cutShortLimit { neither.formUnion(cutShort) }
        return paths.filter(neither.contains)
    }

    /// The paths among `paths` that `commit` has no file at but the work tree has something at
    /// (a file, link or directory, tracked or not, ignored or not).
    public func presentInWorkTree(_ paths: [String], absentFrom commit: ObjectID) throws -> [String] {
        guard let root = workingDirectory else { return [] }
        let commitTree = try tree(of: commit)
        defer { git_tree_free(commitTree) }
        return paths.filter { path in
            var info = stat()
            return blob(at: path, in: commitTree) == nil && lstat(root + "/" + path, &info) == 0
        }
    }

    /// Whether the file at `path` holds the first bytes of blob `id` and no more.
    private func isCutShortCopy(_ path: String, of id: ObjectID) -> Bool {
        var oid = id.raw
        var blob: OpaquePointer?
        guard git_blob_lookup(&blob, handle, &oid) == 0, let blob else { return false }
        defer { git_blob_free(blob) }
        let size = Int(git_blob_rawsize(blob))
        guard let content = git_blob_rawcontent(blob),
              let data = FileManager.default.contents(atPath: path), data.count < size else { return false }
        let expected = UnsafeRawBufferPointer(start: content, count: data.count)
        return data.elementsEqual(expected)
    }

    /// A file's blob id and whether it is a link, as it is in the work tree now; nil when absent.
    private func workTreeBlob(_ fullPath: String, relative: String) throws -> BlobIdentity? {
        var info = stat()
        guard lstat(fullPath, &info) == 0 else { return nil }
        var oid = git_oid()
        switch info.st_mode & S_IFMT {
        case S_IFLNK:
            var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            let count = readlink(fullPath, &buffer, buffer.count - 1)
            guard count >= 0 else { return nil }
            _ = try check(git_odb_hash(&oid, buffer, count, GIT_OBJECT_BLOB), "hash link \(relative)")
            return BlobIdentity(id: ObjectID(oid), link: true, executable: false)
        case S_IFREG:
            _ = try check(git_repository_hashfile(&oid, handle, relative, GIT_OBJECT_BLOB, nil), "hash \(relative)")
            return BlobIdentity(id: ObjectID(oid), link: false, executable: info.st_mode & 0o100 != 0)
        default:
            // A directory (or anything else) where a file was: matches no file version.
            return BlobIdentity(id: ObjectID(oid), link: false, executable: false, other: true)
        }
    }

    /// The blob at `path` in `tree`, nil when the tree has no file there.
    private func blob(at path: String, in tree: OpaquePointer?) -> BlobIdentity? {
        var entry: OpaquePointer?
        guard git_tree_entry_bypath(&entry, tree, path) == 0, let entry else { return nil }
        defer { git_tree_entry_free(entry) }
        let mode = git_tree_entry_filemode(entry)
        guard mode != GIT_FILEMODE_TREE, mode != GIT_FILEMODE_COMMIT, let id = git_tree_entry_id(entry) else { return nil }
        return BlobIdentity(id: ObjectID(id.pointee), link: mode == GIT_FILEMODE_LINK,
                            executable: mode == GIT_FILEMODE_BLOB_EXECUTABLE)
    }

    private func tree(of commit: ObjectID) throws -> OpaquePointer? {
        var oid = commit.raw
        var object: OpaquePointer?
        _ = try check(git_commit_lookup(&object, handle, &oid), "look up commit \(commit.short)")
        defer { git_commit_free(object) }
        var tree: OpaquePointer?
        _ = try check(git_commit_tree(&tree, object), "read tree of \(commit.short)")
        return tree
    }

    /// `git reset --hard <commit>` on the current HEAD: moves the current branch, resets index and work tree.
    /// Untracked files stay; ignored files are not overwritten.
    public func resetHard(to commit: ObjectID) throws {
        let code = try withCommitObject(commit) { object in
            var options = try checkoutOptions(force: true)
            return git_reset(handle, object, GIT_RESET_HARD, &options)
        }
        try check(code, "reset to \(commit.short)")
    }

    private func withCommitObject<T>(_ commit: ObjectID, _ body: (OpaquePointer?) throws -> T) throws -> T {
        var oid = commit.raw
        var object: OpaquePointer?
        try check(git_object_lookup(&object, handle, &oid, GIT_OBJECT_COMMIT), "look up commit \(commit.short)")
        defer { git_object_free(object) }
        return try body(object)
    }

    /// SAFE (refuse to overwrite anything not in the baseline) or FORCE; never overwrite ignored files.
    private func checkoutOptions(force: Bool) throws -> git_checkout_options {
        var options = git_checkout_options()
        try check(git_checkout_options_init(&options, UInt32(GIT_CHECKOUT_OPTIONS_VERSION)), "init checkout options")
        let base = force ? GIT_CHECKOUT_FORCE.rawValue : GIT_CHECKOUT_SAFE.rawValue
        options.checkout_strategy = base | GIT_CHECKOUT_DONT_OVERWRITE_IGNORED.rawValue
        return options
    }

    /// The signature git would use for a commit made now (env, config, then a fallback).
    func committerSignature() throws -> UnsafeMutablePointer<git_signature> {
        var signature: UnsafeMutablePointer<git_signature>?
        let env = ProcessInfo.processInfo.environment
        if let name = env["GIT_COMMITTER_NAME"], let email = env["GIT_COMMITTER_EMAIL"],
           git_signature_now(&signature, name, email) == 0, let signature {
            return signature
        }
        if git_signature_default(&signature, handle) == 0, let signature {
            return signature
        }
        let host = ProcessInfo.processInfo.hostName
        try check(git_signature_now(&signature, "factoryctl", "factoryctl@\(host)"), "make committer signature")
        return signature!
    }
}

/// Collects paths from a C callback.
final class PathCollector {
    var paths: [String] = []
}

/// A file as git would record it: content id, link or not, executable bit.
struct BlobIdentity: Equatable {
    let id: ObjectID
    let link: Bool
    let executable: Bool
    var other = false
}
