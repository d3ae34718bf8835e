import CGit2
import CGit2Loader
import CSupport

/// libgit2's process-wide state. `initialize()` runs on first use (commands that never touch git,
/// like `--version` or `publish`, never pay for it); `Repository.open` calls it.
public enum GitLibrary {
    /// The outcome of loading libgit2 and `git_libgit2_init`, computed once.
    private static let initialization: Result<String, GitError> = {
        var message: UnsafePointer<CChar>?
        guard factoryctl_git2_load(&message) == 0 else {
            return .failure(GitError(operation: "load libgit2", code: -1, errorClass: 0,
                                     message: message.map { String(cString: $0) } ?? "cannot load libgit2"))
        }
        let code = git_libgit2_init()
        guard code >= 0 else {
            return .failure(GitError(operation: "initialize libgit2", code: code, errorClass: 0, message: "git_libgit2_init failed"))
        }
        // libgit2's own socket stream, plus TCP_NODELAY (CGit2Loader/socket_stream.c): without it
        // every HTTPS fetch waits twice for the server's delayed ACK.
        let registered = factoryctl_git2_register_socket_stream()
        guard registered >= 0 else { return .failure(GitError(operation: "register the socket stream", code: registered)) }
        var major: Int32 = 0, minor: Int32 = 0, patch: Int32 = 0
        git_libgit2_version(&major, &minor, &patch)
        return .success("\(major).\(minor).\(patch)")
    }()

    /// Loads and initializes libgit2 (idempotent). Returns the libgit2 version string; throws,
    /// never exits, when the library (or a function factoryctl needs) is missing, so every
    /// command reports it in its normal way (`--json` included) and `serve`/`consume` stay up.
    @discardableResult
    public static func initialize() throws -> String {
        try initialization.get()
    }

    /// Loads the CA certificates libgit2's HTTPS transport verifies servers with. Deferred at
    /// initialization (parsing the system bundle costs milliseconds that local, SSH and HTTP
    /// remotes never need); call before talking HTTPS. Idempotent. Returns false when a bundle
    /// failed to load (HTTPS servers will then fail verification, which libgit2 reports).
    /// `bundle`, when given, is loaded instead of the system bundle: the only CAs trusted (the
    /// first load in a process decides).
    @discardableResult
    public static func loadCertificates(bundle: String? = nil) -> Bool {
        guard (try? initialize()) != nil else { return false }
        return factoryctl_load_ca_certificates_from(bundle) >= 0
    }

    /// Loads the CA certificates for an HTTPS fetch with `environment`'s bundle, if it names one;
    /// a named bundle that cannot be loaded is an error (nothing would be trusted), the system
    /// bundle failing is left to libgit2's verification to report.
    static func loadCertificates(for environment: [String: String], url: String) throws(GitError) {
        let bundle = certificateBundle(environment: environment)
        guard !loadCertificates(bundle: bundle), let bundle else { return }
        throw GitError(operation: "fetch \(url)", code: -1, errorClass: Int32(GIT_ERROR_SSL.rawValue),
                       message: "the CA certificate bundle \(bundle) (GIT_SSL_CAINFO or SSL_CERT_FILE) could not be loaded: not a readable PEM file of certificates, or libgit2 has no CA store to load it into")
    }

    /// The CA bundle an HTTPS fetch trusts instead of the system one, from the environment:
    /// `GIT_SSL_CAINFO` (git's name) or else `SSL_CERT_FILE` (OpenSSL's); nil for the system bundle.
    public static func certificateBundle(environment: [String: String]) -> String? {
        for name in ["GIT_SSL_CAINFO", "SSL_CERT_FILE"] {
            if let value = environment[name], !value.isEmpty { return value }
        }
        return nil
    }

    /// Whether `loadCertificates()` has run.
    public static var certificatesLoaded: Bool { factoryctl_ca_loaded() != 0 }

    /// Whether libgit2 has been loaded into this process (it is loaded on first use).
    public static var isLoaded: Bool { factoryctl_git2_loaded() != 0 }

    /// CA bundle loads still deferred (for tests and diagnostics).
    public static var deferredCertificateLoads: Int { Int(factoryctl_deferred_ca_loads()) }

    /// The libgit2 version, or nil when it cannot be loaded.
    public static var version: String? { try? initialize() }
}
