import CGit2
import FoundationEssentials
import Glibc

extension Repository {
    /// A new, empty repository with a work tree at `path` (like `git init`; the directory is made
    /// when it does not exist). Refuses a path that already holds a repository: a clone starts
    /// from nothing.
    public static func initialize(at path: String) throws -> Repository {
        try GitLibrary.initialize()
        var options = git_repository_init_options()
        try check(git_repository_init_options_init(&options, UInt32(GIT_REPOSITORY_INIT_OPTIONS_VERSION)), "init \(path)")
        options.flags = GIT_REPOSITORY_INIT_MKPATH.rawValue | GIT_REPOSITORY_INIT_NO_REINIT.rawValue
        var pointer: OpaquePointer?
        let code = git_repository_init_ext(&pointer, path, &options)
        if code < 0 {
            if let pointer { git_repository_free(pointer) }
            throw GitError(operation: "init repository at \(path)", code: code)
        }
        return Repository(handle: pointer!)
    }

    /// Adds the remote `name` at `url` with git's default fetch refspec
    /// (`+refs/heads/*:refs/remotes/<name>/*`), as `git clone` sets up `origin`.
    public func addRemote(_ name: String, url: String) throws {
        var remote: OpaquePointer?
        try check(git_remote_create(&remote, handle, name, url), "add remote \(name)")
        git_remote_free(remote)
    }
}
