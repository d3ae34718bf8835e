import Foundation
import Testing
import TestSupport

/// The signed-commit policy (UA_ALLOWED_SIGNERS) against real SSH-signed commits, with
/// `git verify-commit` as the oracle.
@Suite struct SignedCommitTests {
    struct Keys {
        let directory: TemporaryDirectory
        let allowed: String
        let trusted: String
        let stranger: String

        init() throws {
            directory = TemporaryDirectory("factoryctl-signers")
            trusted = directory.join("release_key")
            stranger = directory.join("stranger_key")
            for key in [trusted, stranger] {
                try Command.check(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", key])
            }
            allowed = directory.join("allowed_signers")
            let pub = try String(contentsOfFile: trusted + ".pub", encoding: .utf8).split(separator: " ").prefix(2).joined(separator: " ")
            try "# release managers\nrelease@example.com namespaces=\"git\" \(pub)\n".write(toFile: allowed, atomically: true, encoding: .utf8)
        }
    }

    func signedCommit(_ world: GitWorld, key: String?, _ content: String) throws -> String {
        try world.write(world.seed, "app.py", content)
        try world.git(["add", "app.py"], in: world.seed)
        var argv = ["-c", "gpg.format=ssh"]
        if let key { argv += ["-c", "user.signingkey=\(key)", "commit", "--quiet", "-S", "-m", content] } else { argv += ["commit", "--quiet", "-m", content] }
        try world.git(argv, in: world.seed)
        try world.git(["push", "--quiet", "origin", "HEAD:refs/heads/main"], in: world.seed)
        return try world.head(world.seed)
    }

    func verifyCommit(_ world: GitWorld, _ keys: Keys, _ commit: String) throws -> Bool {
        try Command.run(["git", "-C", world.seed, "-c", "gpg.ssh.allowedSignersFile=\(keys.allowed)", "verify-commit", commit],
                        environment: world.environment).status == 0
    }

    func update(_ world: GitWorld, _ keys: Keys) throws -> Command.Result {
        var environment = world.environment
        environment["UA_ALLOWED_SIGNERS"] = keys.allowed
        return try FactoryctlBinary.run(["update", "--no-sync", "--json"], factoryDir: world.factory, environment: environment)
    }

    @Test func onlyCodeSignedByAnAllowedSignerIsCheckedOut() throws {
        let world = try GitWorld()
        let keys = try Keys()
        let start = try world.head(world.factory)

        let unsigned = try signedCommit(world, key: nil, "print('unsigned')\n")
        #expect(try !verifyCommit(world, keys, unsigned))
        let refused = try update(world, keys)
        #expect(refused.status == 1)
        #expect(refused.stdout.contains("\"failure\":\"signature_refused\"") && refused.stdout.contains("is not signed"), "\(refused.stdout)")
        #expect(try world.head(world.factory) == start)

        let foreign = try signedCommit(world, key: keys.stranger, "print('foreign')\n")
        #expect(try !verifyCommit(world, keys, foreign))
        let stranger = try update(world, keys)
        #expect(stranger.status == 1 && stranger.stdout.contains("not in UA_ALLOWED_SIGNERS"), "\(stranger.stdout)")
        #expect(try world.head(world.factory) == start)

        let good = try signedCommit(world, key: keys.trusted, "print('release')\n")
        #expect(try verifyCommit(world, keys, good))
        let accepted = try update(world, keys)
        #expect(accepted.status == 0, "\(accepted.stdout) \(accepted.stderr)")
        #expect(try world.head(world.factory) == good)
    }

    @Test func aSignedCommitAlteredAfterSigningIsRefused() throws {
        let world = try GitWorld()
        let keys = try Keys()
        let start = try world.head(world.factory)
        let good = try signedCommit(world, key: keys.trusted, "print('release')\n")
        // The same commit object with its message changed: the signature header is kept.
        let raw = try world.git(["cat-file", "commit", good], in: world.seed)
        let altered = raw.replacingOccurrences(of: "print('release')", with: "print('evil')")
        #expect(altered != raw)
        let file = world.directory.join("altered-commit")
        try (altered + "\n").write(toFile: file, atomically: true, encoding: .utf8)
        let forged = try world.git(["hash-object", "-t", "commit", "-w", file], in: world.seed).trimmingCharacters(in: .whitespacesAndNewlines)
        try world.git(["push", "--quiet", "--force", "origin", "\(forged):refs/heads/main"], in: world.seed)
        #expect(try !verifyCommit(world, keys, forged), "git agrees the signature is bad")
        let result = try update(world, keys)
        #expect(result.status == 1 && result.stdout.contains("bad signature for release@example.com"), "\(result.stdout)")
        #expect(try world.head(world.factory) == start)
    }

    @Test func anUnusableAllowedSignersFileIsAUsageError() throws {
        let world = try GitWorld()
        let keys = try Keys()
        try "release@example.com cert-authority ssh-ed25519 AAAA\n".write(toFile: keys.allowed, atomically: true, encoding: .utf8)
        let result = try update(world, keys)
        #expect(result.status == 64 && result.stderr.contains("lists no usable ssh-ed25519 key"), "\(result.stderr)")
    }

    @Test func aMissionToUnsignedCodeFailsOnAFactoryWithThePolicy() throws {
        let fleet = try FleetWorld()
        let keys = try Keys()
        var factory = fleet.environment
        factory["UA_ALLOWED_SIGNERS"] = keys.allowed
        let consumer = try fleet.consumer("f-1", ["--no-sync"], environment: factory)
        defer { consumer.stop() }
        #expect(try fleet.waitUntilRegistered("f-1"))
        let start = try fleet.world.head(fleet.world.factory)
        _ = try signedCommit(fleet.world, key: nil, "print('unsigned')\n")
        let job = try fleet.publish(["update", "--target", "f-1"])
        #expect(eventually { (try? fleet.results(job).count) == 1 })
        let result = try fleet.results(job).first?["result"] as? [String: Any]
        #expect(result?["failure"] as? String == "signature_refused", "\(result ?? [:])")
        #expect(try fleet.world.head(fleet.world.factory) == start)
        // Signed by the release key: the next mission runs.
        let good = try signedCommit(fleet.world, key: keys.trusted, "print('release')\n")
        let next = try fleet.publish(["update", "--target", "f-1"])
        #expect(eventually { (try? fleet.results(next).first?["status"] as? String) == "SUCCESS" })
        #expect(try fleet.world.head(fleet.world.factory) == good)
    }
}
