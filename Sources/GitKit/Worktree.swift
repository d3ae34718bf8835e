import CGit2
import FoundationEssentials
import Glibc

/// Linked work trees (git's `worktree`) and what the releases layout needs of the repository:
/// its untracked and ignored files, and `core.bare`.
extension Repository {
    /// The repository's own directory, shared by all its work trees (`git_repository_commondir`):
    /// the `.git` of the main checkout even when this handle is a linked work tree.
    public var commonDirectory: String {
        guard let path = git_repository_commondir(handle) else { return gitDirectory }
        let text = String(cString: path)
        return text.count > 1 && text.hasSuffix("/") ? String(text.dropLast()) : text
    }

    /// Untracked and ignored paths of the work tree, as git status --ignored shows them: a
    /// directory holding nothing tracked is one entry ending in "/". Sorted.
    public func untrackedAndIgnored() throws -> [String] {
        var options = git_status_options()
        try check(git_status_options_init(&options, UInt32(GIT_STATUS_OPTIONS_VERSION)), "init status options")
        options.show = GIT_STATUS_SHOW_WORKDIR_ONLY
        options.flags = GIT_STATUS_OPT_INCLUDE_UNTRACKED.rawValue | GIT_STATUS_OPT_INCLUDE_IGNORED.rawValue
        var list: OpaquePointer?
        try check(git_status_list_new(&list, handle, &options), "read status")
        defer { git_status_list_free(list) }
        var paths: [String] = []
        let wanted = GIT_STATUS_WT_NEW.rawValue | GIT_STATUS_IGNORED.rawValue
        for index in 0..<git_status_list_entrycount(list) {
            guard let entry = git_status_byindex(list, index)?.pointee, entry.status.rawValue & wanted != 0,
                  let delta = entry.index_to_workdir, let path = delta.pointee.new_file.path ?? delta.pointee.old_file.path else { continue }
            paths.append(String(cString: path))
        }
        return paths.sorted()
    }

    /// Sets a boolean in the repository's own config (`.git/config`).
    public func setConfig(_ name: String, _ value: Bool) throws {
        var config: OpaquePointer?
        try check(git_repository_config(&config, handle), "open config")
        defer { git_config_free(config) }
        var local: OpaquePointer?
        try check(git_config_open_level(&local, config, GIT_CONFIG_LEVEL_LOCAL), "open local config")
        defer { git_config_free(local) }
        try check(git_config_set_bool(local, name, value ? 1 : 0), "set \(name)")
    }

    /// Creates the linked work tree `path` with a detached HEAD at `commit` and its files checked
    /// out, registered as `.git/worktrees/<name>` like `git worktree add --detach` does (so the
    /// git CLI sees it), without a branch: several work trees may hold the same commit. `path`
    /// must not exist or be empty. Returns the work tree, opened.
    public func addDetachedWorktree(name: String, path: String, commit: ObjectID) throws -> Repository {
        let admin = commonDirectory + "/worktrees/" + name
        for directory in [commonDirectory + "/worktrees", admin, path] {
            if mkdir(directory, 0o755) != 0, errno != EEXIST {
                throw GitError(operation: "create \(directory)", code: -1, message: String(cString: strerror(errno)))
            }
        }
        try Self.writeFile(admin + "/HEAD", commit.hex + "\n")
        try Self.writeFile(admin + "/commondir", "../..\n")
        try Self.writeFile(admin + "/gitdir", path + "/.git\n")
        try Self.writeFile(path + "/.git", "gitdir: \(admin)\n")
        let worktree = try Repository.open(at: path)
        try worktree.checkoutTree(of: commit, force: true)
        return worktree
    }

    private static func writeFile(_ path: String, _ text: String) throws {
        let temporary = path + ".tmp"
        let fd = Glibc.open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o644)
        guard fd >= 0 else { throw GitError(operation: "write \(path)", code: -1, message: String(cString: strerror(errno))) }
        let bytes = Array(text.utf8)
        let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        close(fd)
        guard written == bytes.count, rename(temporary, path) == 0 else {
            unlink(temporary)
            throw GitError(operation: "write \(path)", code: -1, message: String(cString: strerror(errno)))
        }
    }
}

/// A file of a commit's tree.
public struct TreeFile: Sendable, Equatable {
    public let path: String
    public let id: ObjectID
    public let isLink: Bool
}

extension Repository {
    /// Every file (blob or link) of `commit`'s tree, with its content id.
    public func files(of commit: ObjectID) throws -> [TreeFile] {
        var oid = commit.raw
        var object: OpaquePointer?
        try check(git_commit_lookup(&object, handle, &oid), "look up commit \(commit.short)")
        defer { git_commit_free(object) }
        var tree: OpaquePointer?
        try check(git_commit_tree(&tree, object), "read tree of \(commit.short)")
        defer { git_tree_free(tree) }
        let collector = FileCollector()
        let code = withExtendedLifetime(collector) {
            git_tree_walk(tree, GIT_TREEWALK_PRE, { root, entry, payload in
                guard let root, let entry, let payload else { return 0 }
                let mode = git_tree_entry_filemode(entry)
                guard mode != GIT_FILEMODE_TREE, mode != GIT_FILEMODE_COMMIT, let id = git_tree_entry_id(entry) else { return 0 }
                let path = String(cString: root) + String(cString: git_tree_entry_name(entry))
                Unmanaged<FileCollector>.fromOpaque(payload).takeUnretainedValue().files
                    .append(TreeFile(path: path, id: ObjectID(id.pointee), isLink: mode == GIT_FILEMODE_LINK))
                return 0
            }, Unmanaged.passUnretained(collector).toOpaque())
        }
        try check(code, "walk tree of \(commit.short)")
        return collector.files
    }

    /// The blob id git would give the file at `path` (not following a link), nil if unreadable.
    public static func blobID(ofFileAt path: String) -> ObjectID? {
        var info = stat()
        guard lstat(path, &info) == 0 else { return nil }
        var oid = git_oid()
        if (info.st_mode & S_IFMT) == S_IFLNK {
            var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            let count = readlink(path, &buffer, buffer.count - 1)
            guard count >= 0 else { return nil }
            guard git_odb_hash(&oid, buffer, count, GIT_OBJECT_BLOB) == 0 else { return nil }
            return ObjectID(oid)
        }
        guard (info.st_mode & S_IFMT) == S_IFREG, git_odb_hashfile(&oid, path, GIT_OBJECT_BLOB) == 0 else { return nil }
        return ObjectID(oid)
    }
}

final class FileCollector {
    var files: [TreeFile] = []
}
