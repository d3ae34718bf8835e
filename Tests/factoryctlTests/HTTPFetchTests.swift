import Foundation
import Testing
import TestSupport

/// Fetching over HTTP(S) from a real smart-HTTP git host (`git http-backend` behind a small
/// server, Tests/fixtures/git-http-server.py): a host that sheds load is asked again after a
/// backoff, refused credentials and a refused certificate say what happened.
@Suite struct HTTPFetchTests {
    /// The world's origin served over HTTP(S); the factory's origin points at it.
    final class HTTPOrigin {
        let server: ConsumerProcess
        let url: String

        init(_ world: GitWorld, extra: [String] = [], tls: Bool = false) throws {
            let portFile = world.directory.join("http-port")
            var arguments = [Package.root + "/Tests/fixtures/git-http-server.py", "--root", world.directory.path,
                             "--port-file", portFile, "--log", world.directory.join("http.log")] + extra
            if tls {
                let cert = world.directory.join("host.crt"), key = world.directory.join("host.key")
                try Command.check(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
                                   "-addext", "subjectAltName=IP:127.0.0.1", "-days", "1", "-keyout", key, "-out", cert])
                arguments += ["--tls", cert, key]
            }
            server = try ConsumerProcess(binary: "/usr/bin/python3", arguments: arguments, environment: world.environment,
                                         log: world.directory.join("http-server.log"))
            guard eventually(timeout: 20, { FileManager.default.fileExists(atPath: portFile) }),
                  let port = try? String(contentsOfFile: portFile, encoding: .utf8) else {
                throw Unavailable(description: "the git HTTP server did not start: \(server.output)")
            }
            url = "\(tls ? "https" : "http")://127.0.0.1:\(port)/origin.git"
            try world.git(["remote", "set-url", "origin", url], in: world.factory)
        }

        deinit { server.stop() }
    }

    struct Unavailable: Error, CustomStringConvertible { let description: String }

    func update(_ world: GitWorld, _ env: [String: String]) throws -> (Command.Result, [String: Any]) {
        let result = try FactoryctlBinary.run(["update", "--no-sync", "--json"], factoryDir: world.factory, environment: env)
        return (result, (try? result.json()) ?? [:])
    }

    @Test func aHostAnswering503TwiceIsFetchedAfterBackoff() throws {
        let world = try GitWorld()
        let origin = try HTTPOrigin(world, extra: ["--busy", "2"])
        let target = try world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        let (result, object) = try update(world, world.environment)
        let backoff = (object["steps_ms"] as? [String: Any])?["fetch_backoff"] as? Int ?? 0
        let head = try world.head(world.factory)
        #expect(result.status == 0 && head == target && object["fetch_attempts"] as? Int == 3 && backoff >= 1000,
                "\(origin.url): \(result.stdout) \(result.stderr)")
    }

    @Test func theRightTokenUpdates() throws {
        let world = try GitWorld()
        let origin = try HTTPOrigin(world, extra: ["--auth", "ci:s3cret"])
        defer { withExtendedLifetime(origin) {} }
        let target = try world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        var env = world.environment
        env["FACTORYCTL_GIT_TOKEN"] = "s3cret"
        env["FACTORYCTL_GIT_USERNAME"] = "ci"
        let (result, _) = try update(world, env)
        let head = try world.head(world.factory)
        #expect(result.status == 0 && head == target, "\(result.stdout) \(result.stderr)")
    }

    @Test(arguments: [("wrong", "refused these credentials"), ("", "none are set")])
    func aRefusedOrMissingTokenSaysSoAndNamesTheVariables(token: String, says: String) throws {
        let world = try GitWorld()
        let origin = try HTTPOrigin(world, extra: ["--auth", "ci:s3cret"])
        defer { withExtendedLifetime(origin) {} }
        let before = try world.head(world.factory)
        try world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        var env = world.environment
        env["FACTORYCTL_GIT_USERNAME"] = "ci"
        if !token.isEmpty { env["FACTORYCTL_GIT_TOKEN"] = token }
        let (result, object) = try update(world, env)
        let error = object["error"] as? String ?? ""
        let head = try world.head(world.factory)
        #expect(result.status == 5 && object["failure"] as? String == "remote_unreachable" && error.contains(says)
                && error.contains("FACTORYCTL_GIT_TOKEN") && !error.contains("wrong") && head == before,
                "\(result.stdout) \(result.stderr)")
    }

    @Test func anUntrustedCertificateIsTLSFailedNotUnreachable() throws {
        let world = try GitWorld()
        let origin = try HTTPOrigin(world, tls: true)
        defer { withExtendedLifetime(origin) {} }
        let before = try world.head(world.factory)
        try world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        let (result, object) = try update(world, world.environment)
        let head = try world.head(world.factory)
        #expect(result.status == 5 && object["failure"] as? String == "tls_failed" && head == before,
                "\(result.stdout) \(result.stderr)")
    }
}
