import Foundation
import Testing
import TestSupport

/// Fetching over SSH from a real sshd: key files, the key named by FACTORYCTL_SSH_KEY, and host
/// keys checked against known_hosts.
@Suite(.enabled(if: SSHServer.available && geteuid() == 0, "needs /usr/sbin/sshd (openssh-server) and root for its privilege separation"))
struct SSHFetchTests {
    func run(_ world: GitWorld, _ ssh: SSHServer, extra: [String: String] = [:]) throws -> Command.Result {
        var environment = world.environment
        environment["HOME"] = ssh.home
        environment.removeValue(forKey: "SSH_AUTH_SOCK")
        environment.merge(extra) { $1 }
        return try FactoryctlBinary.run(["update", "--no-sync"], factoryDir: world.factory, environment: environment)
    }

    @Test func fetchesOverSSHWithAKeyFileAndAKnownHost() throws {
        let world = try GitWorld()
        let ssh = try SSHServer()
        try world.git(["remote", "set-url", "origin", ssh.url(forRepository: world.origin)], in: world.factory)
        let target = try world.pushUpstream(["app.py": "print('over ssh')\n"], message: "Over SSH")
        let result = try run(world, ssh)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(try world.head(world.factory) == target)
    }

    @Test func usesTheKeyNamedByTheEnvironment() throws {
        let world = try GitWorld()
        let ssh = try SSHServer()
        let elsewhere = ssh.directory.join("deploy_key")
        try FileManager.default.moveItem(atPath: ssh.home + "/.ssh/id_ed25519", toPath: elsewhere)
        try FileManager.default.moveItem(atPath: ssh.home + "/.ssh/id_ed25519.pub", toPath: elsewhere + ".pub")
        try world.git(["remote", "set-url", "origin", ssh.url(forRepository: world.origin)], in: world.factory)
        let target = try world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        #expect(try run(world, ssh).status == 5, "no key left to try")
        let result = try run(world, ssh, extra: ["FACTORYCTL_SSH_KEY": elsewhere])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(try world.head(world.factory) == target)
    }

    @Test func unknownOrChangedHostKeyIsRefusedAndNothingChanges() throws {
        let world = try GitWorld()
        let ssh = try SSHServer()
        try world.git(["remote", "set-url", "origin", ssh.url(forRepository: world.origin)], in: world.factory)
        try world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        let before = try world.checkoutSnapshot()
        // A man in the middle: known_hosts names another key for this address.
        try Command.check(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", ssh.directory.join("impostor")])
        try ssh.trust(hostKeyPublic: String(contentsOfFile: ssh.directory.join("impostor.pub"), encoding: .utf8))
        let changed = try run(world, ssh)
        #expect(changed.status == 5)
        // The host, the key type, the fingerprint as ssh-keygen prints it, and how to add it.
        let fingerprint = try Command.check(["ssh-keygen", "-l", "-E", "sha256", "-f", ssh.directory.join("host_key.pub")])
            .split(separator: " ")[1]
        let name = "[127.0.0.1]:\(ssh.port)"
        #expect(changed.stderr.contains("the SSH host key of \(name) (ssh-ed25519 \(fingerprint)) has CHANGED"), "\(changed.stderr)")
        #expect(changed.stderr.contains("ssh-keyscan -t ssh-ed25519 -p \(ssh.port) 127.0.0.1 >> ~/.ssh/known_hosts"), "\(changed.stderr)")
        try FileManager.default.removeItem(atPath: ssh.home + "/.ssh/known_hosts")
        let unknown = try run(world, ssh)
        #expect(unknown.status == 5, "an unknown host is refused too")
        #expect(unknown.stderr.contains("(ssh-ed25519 \(fingerprint)) is unknown"), "\(unknown.stderr)")
        #expect(try world.checkoutSnapshot() == before)
        // Following the advice works (here the key is the real one).
        try Command.check(["sh", "-c", "ssh-keyscan -t ssh-ed25519 -p \(ssh.port) 127.0.0.1 >> '\(ssh.home)/.ssh/known_hosts' 2>/dev/null"])
        #expect(try run(world, ssh).status == 0)
    }

    /// tmux/screen after a reconnect: SSH_AUTH_SOCK names a socket nobody listens on (or that is
    /// gone). The agent attempt fails; the key files are still tried.
    @Test func aStaleAgentSocketFallsBackToKeyFiles() throws {
        let world = try GitWorld()
        let ssh = try SSHServer()
        try world.git(["remote", "set-url", "origin", ssh.url(forRepository: world.origin)], in: world.factory)
        let dead = ssh.directory.join("agent.sock")
        try Command.check(["python3", "-c", "import socket; s = socket.socket(socket.AF_UNIX); s.bind('\(dead)'); s.close()"])
        #expect(FileManager.default.fileExists(atPath: dead), "a socket file with no listener")
        let first = try world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        let refused = try run(world, ssh, extra: ["SSH_AUTH_SOCK": dead])
        #expect(refused.status == 0, "\(refused.stderr)")
        #expect(try world.head(world.factory) == first)
        let second = try world.pushUpstream(["app.py": "print('v3')\n"], message: "v3")
        let gone = try run(world, ssh, extra: ["SSH_AUTH_SOCK": ssh.directory.join("no-such-agent.sock")])
        #expect(gone.status == 0, "\(gone.stderr)")
        #expect(try world.head(world.factory) == second)
    }

    @Test func aLiveAgentIsStillUsedFirst() throws {
        let world = try GitWorld()
        let ssh = try SSHServer()
        try world.git(["remote", "set-url", "origin", ssh.url(forRepository: world.origin)], in: world.factory)
        let socket = ssh.directory.join("agent.sock")
        // In the foreground (-D), as our child, stopped by its pid at the end.
        let agent = Process()
        agent.executableURL = URL(fileURLWithPath: "/usr/bin/ssh-agent")
        agent.arguments = ["-D", "-a", socket]
        agent.standardOutput = FileHandle.nullDevice
        agent.standardError = FileHandle.nullDevice
        try agent.run()
        defer { kill(agent.processIdentifier, SIGKILL); agent.waitUntilExit() }
        #expect(eventually(timeout: 10) { FileManager.default.fileExists(atPath: socket) })
        try Command.check(["ssh-add", "-q", ssh.home + "/.ssh/id_ed25519"], environment: ["SSH_AUTH_SOCK": socket, "PATH": "/usr/bin:/bin"])
        // The key files are gone: only the agent can authenticate.
        try FileManager.default.removeItem(atPath: ssh.home + "/.ssh/id_ed25519")
        let target = try world.pushUpstream(["app.py": "print('via agent')\n"], message: "via agent")
        let result = try run(world, ssh, extra: ["SSH_AUTH_SOCK": socket])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(try world.head(world.factory) == target)
    }

    @Test func publishReadsTheBranchTipOverSSH() throws {
        let world = try GitWorld()
        let ssh = try SSHServer()
        let redis = try RedisServer()
        let target = try world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        var environment = world.environment
        environment["HOME"] = ssh.home
        environment.removeValue(forKey: "SSH_AUTH_SOCK")
        environment["FACTORY_ROLE"] = "HEADQUARTERS"
        environment["UA_REDIS_URL"] = redis.url
        let result = try FactoryctlBinary.run(["publish", "update", "--allow-unregistered", "--target", "f-1", "--json",
                                               "--repo", ssh.url(forRepository: world.origin)],
                                              environment: environment)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("\"commit\":\"\(target)\""), "\(result.stdout)")
    }
}
