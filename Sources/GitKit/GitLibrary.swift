import CGit2
import CGit2Loader
import CSupport

/// libgit2's process-wide state. `initialize()` runs on first use (commands that never touch git,
/// like `--version` or `publish`, never pay for it); `Repository.open` calls it.
public enum GitLibrary {
    private static let initialization: Int32 = git_libgit2_init()

    /// Initializes libgit2 (idempotent). Returns the libgit2 version string.
    @discardableResult
    public static func initialize() -> String {
        precondition(initialization >= 0, "git_libgit2_init failed")
        return version
    }

    /// Loads the CA certificates libgit2's HTTPS transport verifies servers with. Deferred at
    /// initialization (parsing the system bundle costs milliseconds that local, SSH and HTTP
    /// remotes never need); call before talking HTTPS. Idempotent. Returns false when a bundle
    /// failed to load (HTTPS servers will then fail verification, which libgit2 reports).
    @discardableResult
    public static func loadCertificates() -> Bool {
        initialize()
        return factoryctl_load_ca_certificates() >= 0
    }

    /// Whether `loadCertificates()` has run.
    public static var certificatesLoaded: Bool { factoryctl_ca_loaded() != 0 }

    /// Whether libgit2 has been loaded into this process (it is loaded on first use).
    public static var isLoaded: Bool { factoryctl_git2_loaded() != 0 }

    /// CA bundle loads still deferred (for tests and diagnostics).
    public static var deferredCertificateLoads: Int { Int(factoryctl_deferred_ca_loads()) }

    public static var version: String {
        var major: Int32 = 0, minor: Int32 = 0, patch: Int32 = 0
        git_libgit2_version(&major, &minor, &patch)
        return "\(major).\(minor).\(patch)"
    }
}
