import CGit2
import FoundationEssentials
import FactoryBasics

/// Progress of a fetch, as libgit2 reports it.
public struct FetchProgress: Sendable {
    public let receivedObjects: Int
    public let indexedObjects: Int
    public let totalObjects: Int
    public let receivedBytes: Int

    public init(receivedObjects: Int, indexedObjects: Int, totalObjects: Int, receivedBytes: Int) {
        self.receivedObjects = receivedObjects
        self.indexedObjects = indexedObjects
        self.totalObjects = totalObjects
        self.receivedBytes = receivedBytes
    }
}

/// How to authenticate and report while fetching.
public struct FetchOptions {
    /// Environment used for credentials: `SSH_AUTH_SOCK`, `HOME`, `FACTORYCTL_SSH_KEY`,
    /// `FACTORYCTL_SSH_PASSPHRASE`, `FACTORYCTL_GIT_TOKEN` / `GITHUB_TOKEN`, `FACTORYCTL_GIT_USERNAME`.
    public var environment: [String: String]
    /// Called from the fetch as objects arrive (on the calling thread).
    public var progress: ((FetchProgress) -> Void)?
    /// Polled during the transfer; returning true cancels the fetch.
    public var shouldCancel: (() -> Bool)?
    /// Called when the remote shows life other than pack data (server messages, a credential
    /// request): a watchdog counts it as progress.
    public var activity: (() -> Void)?

    public init(environment: [String: String] = ProcessInfo.processInfo.environment,
                progress: ((FetchProgress) -> Void)? = nil,
                shouldCancel: (() -> Bool)? = nil,
                activity: (() -> Void)? = nil) {
        self.environment = environment
        self.progress = progress
        self.shouldCancel = shouldCancel
        self.activity = activity
    }
}

/// Lives for one fetch; C callbacks reach it through an unretained payload.
final class FetchContext {
    let options: FetchOptions
    var triedAgent = false
    var remainingKeyFiles: [String]
    var triedToken = false
    var triedUsername = false
    var lastCredentialError: String?

    init(options: FetchOptions) {
        self.options = options
        let env = options.environment
        let home = homeDirectory(environment: env)
        var keys: [String] = []
        if let named = env["FACTORYCTL_SSH_KEY"], !named.isEmpty { keys.append(named) }
        keys += ["\(home)/.ssh/id_ed25519", "\(home)/.ssh/id_rsa"]
        remainingKeyFiles = keys.filter { FileManager.default.isReadableFile(atPath: $0) }
    }

    /// Picks the next credential to offer; nil when nothing is left to try.
    func credential(url: String, usernameFromURL: String?, allowed: UInt32) -> UnsafeMutablePointer<git_credential>? {
        let env = options.environment
        let user = usernameFromURL ?? env["FACTORYCTL_GIT_USERNAME"] ?? "git"
        var out: UnsafeMutablePointer<git_credential>?
        if allowed & GIT_CREDENTIAL_SSH_KEY.rawValue != 0 {
            if !triedAgent, env["SSH_AUTH_SOCK"] != nil {
                triedAgent = true
                if git_credential_ssh_key_from_agent(&out, user) == 0 { return out }
            }
            while !remainingKeyFiles.isEmpty {
                let key = remainingKeyFiles.removeFirst()
                let publicKey = FileManager.default.fileExists(atPath: key + ".pub") ? key + ".pub" : nil
                if git_credential_ssh_key_new(&out, user, publicKey, key, env["FACTORYCTL_SSH_PASSPHRASE"]) == 0 {
                    return out
                }
            }
        }
        if allowed & GIT_CREDENTIAL_USERPASS_PLAINTEXT.rawValue != 0, !triedToken,
           let token = env["FACTORYCTL_GIT_TOKEN"] ?? env["GITHUB_TOKEN"], !token.isEmpty {
            triedToken = true
            let name = usernameFromURL ?? env["FACTORYCTL_GIT_USERNAME"] ?? "x-access-token"
            if git_credential_userpass_plaintext_new(&out, name, token) == 0 { return out }
        }
        if allowed & GIT_CREDENTIAL_USERNAME.rawValue != 0, !triedUsername {
            triedUsername = true
            if git_credential_username_new(&out, user) == 0 { return out }
        }
        return nil
    }
}

extension Repository {
    /// Fetches `remote` with its configured refspecs (like `git fetch origin`).
    ///
    /// Credentials: ssh-agent, then key files; HTTPS with a token from the environment.
    /// SSH host keys are checked against `~/.ssh/known_hosts` by libgit2 itself.
    public func fetch(remote name: String = "origin", options: FetchOptions = FetchOptions()) throws {
        var remote: OpaquePointer?
        try check(git_remote_lookup(&remote, handle, name), "look up remote \(name)")
        defer { git_remote_free(remote) }
        // HTTPS, and plain HTTP too: a server may redirect it to HTTPS.
        if let url = git_remote_url(remote).map({ String(cString: $0) }), url.lowercased().hasPrefix("http") {
            GitLibrary.loadCertificates()
        }

        var fetchOptions = git_fetch_options()
        try check(git_fetch_options_init(&fetchOptions, UInt32(GIT_FETCH_OPTIONS_VERSION)), "init fetch options")
        let context = FetchContext(options: options)
        fetchOptions.callbacks.payload = Unmanaged.passUnretained(context).toOpaque()
        fetchOptions.callbacks.credentials = { out, url, username, allowed, payload in
            guard let out, let payload else { return -1 }
            let context = Unmanaged<FetchContext>.fromOpaque(payload).takeUnretainedValue()
            context.options.activity?()
            let urlText = url.map { String(cString: $0) } ?? ""
            if let credential = context.credential(
                url: urlText, usernameFromURL: username.map { String(cString: $0) }, allowed: allowed
            ) {
                out.pointee = credential
                return 0
            }
            git_error_set_str(Int32(GIT_ERROR_CALLBACK.rawValue),
                              "no credentials left to try for \(urlText) (ssh-agent, key files, token)")
            return GIT_EAUTH.rawValue
        }
        fetchOptions.callbacks.transfer_progress = { stats, payload in
            guard let stats, let payload else { return 0 }
            let context = Unmanaged<FetchContext>.fromOpaque(payload).takeUnretainedValue()
            if context.options.shouldCancel?() == true { return -1 }
            let s = stats.pointee
            context.options.progress?(FetchProgress(
                receivedObjects: Int(s.received_objects), indexedObjects: Int(s.indexed_objects),
                totalObjects: Int(s.total_objects), receivedBytes: Int(s.received_bytes)))
            return 0
        }
        fetchOptions.callbacks.sideband_progress = { _, _, payload in
            guard let payload else { return 0 }
            let context = Unmanaged<FetchContext>.fromOpaque(payload).takeUnretainedValue()
            context.options.activity?()
            return context.options.shouldCancel?() == true ? -1 : 0
        }
        fetchOptions.prune = GIT_FETCH_PRUNE_UNSPECIFIED
        fetchOptions.update_fetchhead = 1

        let code = withExtendedLifetime(context) { git_remote_fetch(remote, nil, &fetchOptions, "fetch") }
        try check(code, "fetch \(name)")
    }
}
