import Foundation

/// A real redis-server on a unix socket in a temp dir, started by the test and stopped by pid.
public final class RedisServer: @unchecked Sendable {
    public let directory: TemporaryDirectory
    public let socket: String
    public let password: String?
    /// With an ACL file: the user redis-cli logs in as (password in `password`).
    public let user: String?
    public let aclFile: String?
    private var process: Process?

    public init(password: String? = nil, aclFile: String? = nil, user: String? = nil) throws {
        directory = TemporaryDirectory("factoryctl-redis")
        socket = directory.join("redis.sock")
        self.password = password
        self.user = user
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

    /// Starts (again) on the same socket; no persistence, so a restart loses all data.
    public func start() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        var arguments = ["redis-server", "--port", "0", "--unixsocket", socket, "--unixsocketperm", "700",
                         "--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", directory.path,
                         "--logfile", directory.join("redis.log")]
        if let aclFile {
            arguments += ["--aclfile", aclFile]
        } else if let password {
            arguments += ["--requirepass", password]
        }
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        self.process = process
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if (try? cli(["PING"])) != nil { return }
            Thread.sleep(forTimeInterval: 0.02)
        }
        throw Command.Failed(argv: arguments, status: -1, output: "redis-server did not answer on \(socket)")
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
}
