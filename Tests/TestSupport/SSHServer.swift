import Foundation

/// A free TCP port on 127.0.0.1 (bound to 0, read back, released).
public func freeLoopbackPort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
    _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// A free TCP port on ::1 (bound to 0, read back, released); nil where there is no IPv6 loopback.
public func freeIPv6LoopbackPort() -> Int? {
    let fd = socket(AF_INET6, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var address = sockaddr_in6()
    address.sin6_family = sa_family_t(AF_INET6)
    guard inet_pton(AF_INET6, "::1", &address.sin6_addr) == 1 else { return nil }
    var length = socklen_t(MemoryLayout<sockaddr_in6>.size)
    let bound = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
    guard bound == 0 else { return nil }
    _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
    return Int(UInt16(bigEndian: address.sin6_port))
}

/// A real OpenSSH server on a loopback port, with its own host key and one authorized client key,
/// started by the test and stopped by pid. `home` is a HOME with `.ssh/id_ed25519` and a
/// `known_hosts` that trusts this server.
public final class SSHServer: @unchecked Sendable {
    public static var available: Bool { FileManager.default.isExecutableFile(atPath: "/usr/sbin/sshd") }

    public let directory: TemporaryDirectory
    public let port: Int
    public let home: String
    public let user: String
    private var pid: pid_t = 0

    public init() throws {
        directory = TemporaryDirectory("factoryctl-sshd")
        home = directory.join("home")
        user = String(cString: getpwuid(geteuid())!.pointee.pw_name)
        port = freeLoopbackPort()
        try FileManager.default.createDirectory(atPath: home + "/.ssh", withIntermediateDirectories: true)
        try Command.check(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", directory.join("host_key")])
        try Command.check(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", home + "/.ssh/id_ed25519"])
        try FileManager.default.copyItem(atPath: home + "/.ssh/id_ed25519.pub", toPath: directory.join("authorized_keys"))
        try trust(hostKeyPublic: try String(contentsOfFile: directory.join("host_key.pub"), encoding: .utf8))
        let config = """
        Port \(port)
        ListenAddress 127.0.0.1
        HostKey \(directory.join("host_key"))
        AuthorizedKeysFile \(directory.join("authorized_keys"))
        PasswordAuthentication no
        KbdInteractiveAuthentication no
        PubkeyAuthentication yes
        StrictModes no
        UsePAM no
        PermitRootLogin prohibit-password
        PidFile \(directory.join("sshd.pid"))

        """
        try config.write(toFile: directory.join("sshd_config"), atomically: true, encoding: .utf8)
        try? FileManager.default.createDirectory(atPath: "/run/sshd", withIntermediateDirectories: true)
        // Not Foundation.Process: sshd closes every inherited descriptor at start, which Process
        // takes for the child's exit, and its monitor thread then blocks in waitpid for good.
        let log = directory.join("sshd.log")
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let arguments: [String] = ["/usr/sbin/sshd", "-D", "-e", "-f", directory.join("sshd_config")]
        let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let spawned = posix_spawn(&pid, "/usr/sbin/sshd", &actions, nil, argv, environ)
        guard spawned == 0 else { throw Command.Failed(argv: ["sshd"], status: spawned, output: String(cString: strerror(spawned))) }
        let output = { FileManager.default.contents(atPath: log).map { String(decoding: $0, as: UTF8.self) } ?? "" }
        guard eventually(timeout: 10, { output().contains("Server listening") }) else {
            throw Command.Failed(argv: arguments, status: -1, output: "sshd is not listening: \(output())") // deinit stops it
        }
    }

    deinit {
        guard pid > 0 else { return }
        kill(pid, SIGKILL)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    }

    /// Replaces known_hosts with one entry for this server's address and the given public key.
    public func trust(hostKeyPublic: String) throws {
        let fields = hostKeyPublic.split(separator: " ").prefix(2).joined(separator: " ")
        try "[127.0.0.1]:\(port) \(fields)\n".write(toFile: home + "/.ssh/known_hosts", atomically: true, encoding: .utf8)
    }

    public func url(forRepository path: String) -> String {
        "ssh://\(user)@127.0.0.1:\(port)\(path)"
    }
}
