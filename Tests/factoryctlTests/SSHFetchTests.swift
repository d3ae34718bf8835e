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
        return try Command.run([Package.factoryctl, "update", "--factory-dir", world.factory, "--no-sync"], environment: environment)
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
        #expect(changed.stderr.contains("hostkey"))
        try FileManager.default.removeItem(atPath: ssh.home + "/.ssh/known_hosts")
        #expect(try run(world, ssh).status == 5, "an unknown host is refused too")
        #expect(try world.checkoutSnapshot() == before)
    }
}
