import CGit2

/// libgit2's process-wide state. Call `initialize()` once at start-up, before any `Repository`.
public enum GitLibrary {
    private static let initialization: Int32 = git_libgit2_init()

    /// Initializes libgit2 (idempotent). Returns the libgit2 version string.
    @discardableResult
    public static func initialize() -> String {
        precondition(initialization >= 0, "git_libgit2_init failed")
        return version
    }

    public static var version: String {
        var major: Int32 = 0, minor: Int32 = 0, patch: Int32 = 0
        git_libgit2_version(&major, &minor, &patch)
        return "\(major).\(minor).\(patch)"
    }
}
