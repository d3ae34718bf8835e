import Foundation

/// A real redis-server on a unix socket in a temp dir, started by the test and stopped by pid.
public final class RedisServer: @unchecked Sendable {
    public let directory: TemporaryDirectory
    public let socket: String
    public let password: String?
    /// With an ACL file: the user redis-cli logs in as (password in `password`).
    public let user: String?
    public let aclFile: String?
    /// With `tls`: the server also listens on 127.0.0.1:`tlsPort` for TLS (redis-cli keeps the socket).
    public let tls: TLS?
    public let tlsPort: Int?
    private var process: Process?

    /// redis-server's own TLS: its certificate and key, the CA it checks client certificates
    /// against, and whether it requires one (`tls-auth-clients`).
    public struct TLS: Sendable {
        public var certificate: TestCertificateAuthority.Issued
        public var ca: String
        public var requireClientCertificate: Bool

        public init(certificate: TestCertificateAuthority.Issued, ca: String, requireClientCertificate: Bool = false) {
            self.certificate = certificate
            self.ca = ca
            self.requireClientCertificate = requireClientCertificate
        }
    }

    /// `persistent`: an append-only file fsynced on every write, so a restart (even after SIGKILL)
    /// keeps the data; otherwise a restart loses it.
    public init(password: String? = nil, aclFile: String? = nil, user: String? = nil, tls: TLS? = nil, persistent: Bool = false) throws {
        self.persistent = persistent
        directory = TemporaryDirectory("factoryctl-redis")
        socket = directory.join("redis.sock")
        self.password = password
        self.user = user
        self.tls = tls
        tlsPort = tls == nil ? nil : freeLoopbackPort()
        if let aclFile {
            let copy = directory.join("users.acl")
            try FileManager.default.copyItem(atPath: aclFile, toPath: copy)
            self.aclFile = copy
        } else {
            self.aclFile = nil
        }
        try start()
    }

    deinit { stop() }

    public var url: String {
        "unix://\(socket)" + (password.map { "?password=\($0)" } ?? "")
    }

    /// The TLS listener as a `rediss://` URL (`host` as given: 127.0.0.1 or localhost).
    public func tlsURL(host: String = "127.0.0.1", database: Int = 0) -> String {
        let auth = password.map { "\(user ?? ""):\($0.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? $0)@" } ?? ""
        return "rediss://\(auth)\(host):\(tlsPort ?? 0)/\(database)"
    }

    private let persistent: Bool

    /// Starts (again) on the same socket; unless `persistent`, a restart loses all data.
    public func start() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        var arguments = ["redis-server", "--port", "0", "--unixsocket", socket, "--unixsocketperm", "700",
                         "--save", "", "--appendonly", persistent ? "yes" : "no", "--appendfsync", "always", "--daemonize", "no", "--dir", directory.path,
                         "--logfile", directory.join("redis.log")]
        if let aclFile {
            arguments += ["--aclfile", aclFile]
        } else if let password {
            arguments += ["--requirepass", password]
        }
        if let tls, let tlsPort {
            arguments += ["--bind", "127.0.0.1", "--tls-port", String(tlsPort),
                          "--tls-cert-file", tls.certificate.certificate, "--tls-key-file", tls.certificate.key,
                          "--tls-ca-cert-file", tls.ca, "--tls-auth-clients", tls.requireClientCertificate ? "yes" : "no"]
        }
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        self.process = process
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if (try? cli(["PING"])) != nil { return }
            // A server that cannot start (a port taken meanwhile, a bad certificate) says why in its log.
            if !process.isRunning { break }
            Thread.sleep(forTimeInterval: 0.02)
        }
        let log = (try? String(contentsOfFile: directory.join("redis.log"), encoding: .utf8)) ?? ""
        throw Command.Failed(argv: arguments, status: -1, output: "redis-server did not answer on \(socket): \(log.suffix(600))")
    }

    /// Stops the server by its pid and waits for it.
    public func stop() {
        guard let process else { return }
        // Unconditionally: the server inherits the test thread's blocked signals, and
        // Process.isRunning has been seen to lie after a restart. SIGKILL cannot be blocked.
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        self.process = nil
        unlink(socket)
    }

    /// Runs redis-cli against this server; returns trimmed stdout.
    @discardableResult
    public func cli(_ arguments: [String]) throws -> String {
        var argv = ["redis-cli", "-s", socket]
        if let user { argv += ["--user", user] }
        if let password { argv += ["--no-auth-warning", "-a", password] }
        let result = try Command.run(argv + arguments)
        guard result.status == 0, !result.stdout.hasPrefix("Could not connect") else {
            throw Command.Failed(argv: argv + arguments, status: result.status, output: result.stdout + result.stderr)
        }
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Runs redis-cli as another ACL user; returns stdout and stderr, trimmed (errors included:
    /// what an attacker holding those credentials would see).
    public func cli(user: String, password: String, _ arguments: [String]) throws -> String {
        let argv = ["redis-cli", "-s", socket, "--user", user, "--no-auth-warning", "-a", password]
        let result = try Command.run(argv + arguments)
        return (result.stdout + result.stderr).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// A throwaway certificate authority in a temp dir, made with the openssl CLI: it issues server
/// and client certificates (EC P-256, SANs for IP addresses and DNS names), valid now or expired.
public final class TestCertificateAuthority: @unchecked Sendable {
    public let directory: TemporaryDirectory
    /// The CA's certificate (PEM): what a client or server trusts.
    public let certificate: String
    private let key: String
    private var serial = 0

    /// A certificate and its unencrypted key (PEM files).
    public struct Issued: Sendable {
        public let certificate: String
        public let key: String

        public init(certificate: String, key: String) {
            self.certificate = certificate
            self.key = key
        }
    }

    public enum Usage: String, Sendable {
        case server = "serverAuth"
        case client = "clientAuth"
    }

    public init(_ name: String = "factoryctl test CA") throws {
        directory = TemporaryDirectory("factoryctl-ca")
        certificate = directory.join("ca.pem")
        key = directory.join("ca.key")
        try Command.check(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                           "-keyout", key, "-out", certificate, "-days", "2", "-subj", "/CN=\(name)",
                           "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        try FileManager.default.createDirectory(atPath: directory.join("issued"), withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: directory.join("index"), contents: nil)
        try "01\n".write(toFile: directory.join("serial"), atomically: true, encoding: .utf8)
    }

    /// Issues a certificate for `names` (each an IP address or a DNS name); `expired`: valid for
    /// a day in 2020 only.
    public func issue(_ commonName: String, names: [String] = ["127.0.0.1", "localhost"], usage: Usage = .server,
                      expired: Bool = false) throws -> Issued {
        serial += 1
        let base = directory.join("\(commonName)-\(serial)")
        let issued = Issued(certificate: base + ".pem", key: base + ".key")
        try Command.check(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                           "-keyout", issued.key, "-out", base + ".csr", "-subj", "/CN=\(commonName)"])
        let alternatives = names.map { (isIPv4($0) || $0.contains(":") ? "IP:" : "DNS:") + $0 }.joined(separator: ",")
        let config = """
            [ca]
            default_ca = test
            [test]
            database = \(directory.join("index"))
            serial = \(directory.join("serial"))
            new_certs_dir = \(directory.join("issued"))
            default_md = sha256
            policy = any
            unique_subject = no
            [any]
            commonName = supplied
            [extensions]
            basicConstraints = critical,CA:FALSE
            keyUsage = critical,digitalSignature
            extendedKeyUsage = \(usage.rawValue)
            subjectAltName = \(alternatives)

            """
        try config.write(toFile: base + ".cnf", atomically: true, encoding: .utf8)
        let dates = expired ? ["-startdate", "20200101000000Z", "-enddate", "20200102000000Z"] : ["-days", "2"]
        try Command.check(["openssl", "ca", "-batch", "-notext", "-config", base + ".cnf", "-cert", certificate, "-keyfile", key,
                           "-in", base + ".csr", "-out", issued.certificate, "-extensions", "extensions"] + dates)
        return issued
    }

    private func isIPv4(_ text: String) -> Bool {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts.allSatisfy { UInt8($0) != nil }
    }
}
