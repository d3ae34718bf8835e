import CGit2
import FoundationEssentials
import FactoryBasics
import Glibc

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
    /// An SSH host key that known_hosts did not vouch for (libgit2 then refuses the connection).
    var refusedHostKey: SSHHostKey?

    init(options: FetchOptions) {
        self.options = options
        let env = options.environment
        let home = homeDirectory(environment: env)
        var keys: [String] = []
        if let named = env["FACTORYCTL_SSH_KEY"], !named.isEmpty { keys.append(named) }
        keys += ["\(home)/.ssh/id_ed25519", "\(home)/.ssh/id_rsa"]
        remainingKeyFiles = keys.filter { FileManager.default.isReadableFile(atPath: $0) }
    }

    /// Whether a process accepts connections on the ssh-agent socket at `path`.
    static func agentAnswers(at path: String) -> Bool {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard path.utf8.count < capacity else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            for (index, byte) in path.utf8.enumerated() { buffer[index] = byte }
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        } == 0
    }

    /// Why authentication ended: over HTTP(S), the server refused the token offered, or asked
    /// for credentials and none were set; over SSH, every key was tried.
    func noCredentialsMessage(url: String) -> String {
        guard url.lowercased().hasPrefix("http") else { return "no credentials left to try for \(url) (ssh-agent, key files, token)" }
        let env = options.environment
        let user = env["FACTORYCTL_GIT_USERNAME"].map { "user \($0)" } ?? "user x-access-token, or the one in the URL"
        if triedToken {
            return "the server at \(url) refused these credentials (the token in \(env["FACTORYCTL_GIT_TOKEN"] != nil ? "FACTORYCTL_GIT_TOKEN" : "GITHUB_TOKEN"), \(user)); check FACTORYCTL_GIT_TOKEN and FACTORYCTL_GIT_USERNAME"
        }
        return "the server at \(url) asks for credentials and none are set: set FACTORYCTL_GIT_TOKEN (and FACTORYCTL_GIT_USERNAME if the host wants a user name)"
    }

    /// Picks the next credential to offer; nil when nothing is left to try.
    func credential(url: String, usernameFromURL: String?, allowed: UInt32) -> UnsafeMutablePointer<git_credential>? {
        let env = options.environment
        let user = usernameFromURL ?? env["FACTORYCTL_GIT_USERNAME"] ?? "git"
        var out: UnsafeMutablePointer<git_credential>?
        if allowed & GIT_CREDENTIAL_SSH_KEY.rawValue != 0 {
            // A stale agent socket (tmux or screen after a reconnect) makes libssh2's agent
            // attempt fail with an error that ends authentication, not just this credential:
            // offer the agent only when something answers on its socket.
            if !triedAgent, let socket = env["SSH_AUTH_SOCK"], !socket.isEmpty {
                triedAgent = true
                if Self.agentAnswers(at: socket), git_credential_ssh_key_from_agent(&out, user) == 0 { return out }
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
            try GitLibrary.loadCertificates(for: options.environment, url: url)
        }

        var fetchOptions = git_fetch_options()
        try check(git_fetch_options_init(&fetchOptions, UInt32(GIT_FETCH_OPTIONS_VERSION)), "init fetch options")
        let context = FetchContext(options: options)
        context.install(into: &fetchOptions.callbacks)
        fetchOptions.prune = GIT_FETCH_PRUNE_UNSPECIFIED
        fetchOptions.update_fetchhead = 1

        let code = withExtendedLifetime(context) { git_remote_fetch(remote, nil, &fetchOptions, "fetch") }
        if code < 0, let key = context.refusedHostKey {
            let url = git_remote_url(remote).map { String(cString: $0) } ?? ""
            throw GitError(operation: "fetch \(name)", code: code, errorClass: Int32(GIT_ERROR_SSH.rawValue),
                           message: key.refusal(url: url, environment: options.environment))
        }
        try check(code, "fetch \(name)")
    }
}

/// An SSH server's host key, as libgit2 shows it to the certificate callback.
struct SSHHostKey {
    let host: String
    /// OpenSSH's name for the key type ("ssh-ed25519").
    let type: String
    /// "SHA256:<base64 without padding>", as `ssh-keygen -l` prints it.
    let fingerprint: String?

    init(host: String, _ key: git_cert_hostkey) {
        self.host = host
        type = switch key.raw_type {
        case GIT_CERT_SSH_RAW_TYPE_RSA: "ssh-rsa"
        case GIT_CERT_SSH_RAW_TYPE_DSS: "ssh-dss"
        case GIT_CERT_SSH_RAW_TYPE_KEY_ECDSA_256: "ecdsa-sha2-nistp256"
        case GIT_CERT_SSH_RAW_TYPE_KEY_ECDSA_384: "ecdsa-sha2-nistp384"
        case GIT_CERT_SSH_RAW_TYPE_KEY_ECDSA_521: "ecdsa-sha2-nistp521"
        case GIT_CERT_SSH_RAW_TYPE_KEY_ED25519: "ssh-ed25519"
        default: "an unknown key type"
        }
        if key.type.rawValue & GIT_CERT_SSH_SHA256.rawValue != 0 {
            let bytes = withUnsafeBytes(of: key.hash_sha256) { Array($0) }
            var text = Data(bytes).base64EncodedString()
            while text.hasSuffix("=") { text.removeLast() }
            fingerprint = "SHA256:" + text
        } else {
            fingerprint = nil
        }
    }

    /// The port from an ssh:// URL (22 for scp-like `user@host:path`).
    static func port(inURL url: String) -> Int {
        guard url.lowercased().hasPrefix("ssh://") || url.contains("+ssh://") || url.hasPrefix("ssh+git://") else { return 22 }
        guard let scheme = url.firstRange(of: "://") else { return 22 }
        let rest = url[scheme.upperBound...]
        let authority = rest.prefix { $0 != "/" }
        let hostPort = authority.split(separator: "@").last.map(String.init) ?? String(authority)
        if hostPort.hasPrefix("["), let close = hostPort.firstIndex(of: "]") {
            let after = hostPort[hostPort.index(after: close)...]
            return after.hasPrefix(":") ? Int(after.dropFirst()) ?? 22 : 22
        }
        guard let colon = hostPort.lastIndex(of: ":") else { return 22 }
        return Int(hostPort[hostPort.index(after: colon)...]) ?? 22
    }

    /// What to tell the operator: which host, which key, whether known_hosts has another key for
    /// it (changed: maybe an attack) or none (unknown), and the command that would add it.
    func refusal(url: String, environment: [String: String]) -> String {
        let port = Self.port(inURL: url)
        let name = port == 22 ? host : "[\(host)]:\(port)"
        let knownHosts = homeDirectory(environment: environment) + "/.ssh/known_hosts"
        let lines = (try? String(contentsOfFile: knownHosts, encoding: .utf8))?.split(separator: "\n") ?? []
        let namesHost = lines.contains { line in
            let patterns = line.split(separator: " ").first?.split(separator: ",") ?? []
            return patterns.contains { $0 == name }
        }
        let hashed = lines.contains { $0.hasPrefix("|1|") }
        let state = namesHost
            ? "has CHANGED: \(knownHosts) lists another key for \(name). It may be a man-in-the-middle attack, or the server was reinstalled; do not trust the new key until you have checked it with the server's administrator"
            : hashed ? "is not in \(knownHosts) (or it is listed with another key under a hashed name)"
            : "is unknown: \(knownHosts) has no entry for \(name)"
        let scan = port == 22 ? "ssh-keyscan -t \(type) \(host)" : "ssh-keyscan -t \(type) -p \(port) \(host)"
        return "the SSH host key of \(name) (\(type) \(fingerprint ?? "fingerprint unavailable")) \(state). Nothing was fetched. Once you have verified that fingerprint out of band, add the key with: \(scan) >> ~/.ssh/known_hosts"
    }
}

extension FetchContext {
    /// Credentials, host-key notes, progress and cancellation: the callbacks of a fetch or a
    /// connection. The payload is this context, unretained: keep it alive around the call.
    func install(into callbacks: inout git_remote_callbacks) {
        callbacks.payload = Unmanaged.passUnretained(self).toOpaque()
        callbacks.credentials = { out, url, username, allowed, payload in
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
            git_error_set_str(Int32(GIT_ERROR_CALLBACK.rawValue), context.noCredentialsMessage(url: urlText))
            return GIT_EAUTH.rawValue
        }
        callbacks.transfer_progress = { stats, payload in
            guard let stats, let payload else { return 0 }
            let context = Unmanaged<FetchContext>.fromOpaque(payload).takeUnretainedValue()
            if context.options.shouldCancel?() == true { return -1 }
            let s = stats.pointee
            context.options.progress?(FetchProgress(
                receivedObjects: Int(s.received_objects), indexedObjects: Int(s.indexed_objects),
                totalObjects: Int(s.total_objects), receivedBytes: Int(s.received_bytes)))
            return 0
        }
        callbacks.sideband_progress = { _, _, payload in
            guard let payload else { return 0 }
            let context = Unmanaged<FetchContext>.fromOpaque(payload).takeUnretainedValue()
            context.options.activity?()
            return context.options.shouldCancel?() == true ? -1 : 0
        }
        callbacks.certificate_check = { cert, valid, host, payload in
            // Only notes an SSH host key that known_hosts does not vouch for; the decision stays
            // libgit2's (GIT_PASSTHROUGH), and TLS certificates are left alone entirely.
            guard let cert, let payload, valid == 0, cert.pointee.cert_type == GIT_CERT_HOSTKEY_LIBSSH2 else { return GIT_PASSTHROUGH.rawValue }
            let context = Unmanaged<FetchContext>.fromOpaque(payload).takeUnretainedValue()
            let hostkey = UnsafeRawPointer(cert).assumingMemoryBound(to: git_cert_hostkey.self).pointee
            context.refusedHostKey = SSHHostKey(host: host.map { String(cString: $0) } ?? "?", hostkey)
            return GIT_PASSTHROUGH.rawValue
        }
    }
}

extension Repository {
    /// The commit `branch` points at on the remote at `url`, without a local repository (like
    /// `git ls-remote URL refs/heads/BRANCH`); nil when the remote has no such branch.
    public static func remoteBranchTip(url: String, branch: String, options: FetchOptions = FetchOptions()) throws -> ObjectID? {
        try GitLibrary.initialize()
        if url.lowercased().hasPrefix("http") { try GitLibrary.loadCertificates(for: options.environment, url: url) }
        var remote: OpaquePointer?
        try check(git_remote_create_detached(&remote, url), "open remote \(url)")
        defer { git_remote_free(remote) }
        let context = FetchContext(options: options)
        var callbacks = git_remote_callbacks()
        try check(git_remote_init_callbacks(&callbacks, UInt32(GIT_REMOTE_CALLBACKS_VERSION)), "init callbacks")
        context.install(into: &callbacks)
        let connected = withExtendedLifetime(context) { git_remote_connect(remote, GIT_DIRECTION_FETCH, &callbacks, nil, nil) }
        if connected < 0, let key = context.refusedHostKey {
            throw GitError(operation: "connect to \(url)", code: connected, errorClass: Int32(GIT_ERROR_SSH.rawValue),
                           message: key.refusal(url: url, environment: options.environment))
        }
        try check(connected, "connect to \(url)")
        defer { git_remote_disconnect(remote) }
        var heads: UnsafeMutablePointer<UnsafePointer<git_remote_head>?>?
        var count = 0
        try check(git_remote_ls(&heads, &count, remote), "list \(url)")
        let wanted = "refs/heads/" + branch
        for index in 0..<count {
            guard let head = heads?[index]?.pointee, let name = head.name, String(cString: name) == wanted else { continue }
            return ObjectID(head.oid)
        }
        return nil
    }
}
