import Foundation
import Testing
import TestSupport

/// Fetching over HTTP(S) from real smart-HTTP git hosts: a host that sheds load
/// (Tests/fixtures/git-http-server.py, `git http-backend` behind a small server) is asked again
/// after a backoff; over TLS from nginx + fcgiwrap + `git http-backend` with basic auth
/// (`NginxGitHost`), the right token updates and refused credentials and a refused certificate
/// say what happened.
@Suite struct HTTPFetchTests {
    /// The world's origin served over HTTP(S); the factory's origin points at it.
    final class HTTPOrigin {
        let server: ConsumerProcess
        let url: String

        init(_ world: GitWorld, extra: [String] = []) throws {
            let portFile = world.directory.join("http-port")
            let arguments = [Package.root + "/Tests/fixtures/git-http-server.py", "--root", world.directory.path,
                             "--port-file", portFile, "--log", world.directory.join("http.log")] + extra
            server = try ConsumerProcess(binary: "/usr/bin/python3", arguments: arguments, environment: world.environment,
                                         log: world.directory.join("http-server.log"))
            guard eventually(timeout: 20, { FileManager.default.fileExists(atPath: portFile) }),
                  let port = try? String(contentsOfFile: portFile, encoding: .utf8) else {
                throw Unavailable(description: "the git HTTP server did not start: \(server.output)")
            }
            url = "http://127.0.0.1:\(port)/origin.git"
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

    /// The world's origin behind nginx + fcgiwrap + `git http-backend` over TLS, basic auth
    /// `ci:s3cret`; the factory's origin points at it.
    func nginxOrigin(_ world: GitWorld) throws -> NginxGitHost {
        let host = try NginxGitHost(root: world.directory.path, user: "ci", password: "s3cret")
        try world.git(["remote", "set-url", "origin", host.url("origin.git")], in: world.factory)
        return host
    }

    /// `world`'s environment with no CA bundle named (this machine's own environment may name one).
    func withoutCABundle(_ world: GitWorld) -> [String: String] {
        var env = world.environment
        env["GIT_SSL_CAINFO"] = nil
        env["SSL_CERT_FILE"] = nil
        return env
    }

    @Test func theRightTokenUpdatesOverTLSWithThePrivateCATrusted() throws {
        let world = try GitWorld()
        let host = try nginxOrigin(world)
        defer { withExtendedLifetime(host) {} }
        let target = try world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        var env = withoutCABundle(world)
        env["FACTORYCTL_GIT_TOKEN"] = "s3cret"
        env["FACTORYCTL_GIT_USERNAME"] = "ci"
        env["GIT_SSL_CAINFO"] = host.caFile
        let (result, _) = try update(world, env)
        let head = try world.head(world.factory)
        #expect(result.status == 0 && head == target, "\(result.stdout) \(result.stderr)")
    }

    @Test(arguments: [("wrong", "refused these credentials"), ("", "none are set")])
    func aRefusedOrMissingTokenSaysSoAndNamesTheVariables(token: String, says: String) throws {
        let world = try GitWorld()
        let host = try nginxOrigin(world)
        defer { withExtendedLifetime(host) {} }
        let before = try world.head(world.factory)
        try world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        var env = withoutCABundle(world)
        env["FACTORYCTL_GIT_USERNAME"] = "ci"
        env["SSL_CERT_FILE"] = host.caFile
        if !token.isEmpty { env["FACTORYCTL_GIT_TOKEN"] = token }
        let (result, object) = try update(world, env)
        let error = object["error"] as? String ?? ""
        let head = try world.head(world.factory)
        #expect(result.status == 5 && object["failure"] as? String == "remote_unreachable" && error.contains(says)
                && error.contains("FACTORYCTL_GIT_TOKEN") && !error.contains("wrong") && head == before,
                "\(result.stdout) \(result.stderr)")
    }

    /// The system bundle (no CA named), another CA's bundle, and a bundle that is not there: the
    /// certificate is refused, `tls_failed`, with the right token and nothing changed.
    @Test(arguments: [("system", "certificate"), ("other CA", "certificate"), ("missing file", "no-such-bundle.crt")])
    func anUntrustedCertificateIsTLSFailedNotUnreachable(trusting: String, says: String) throws {
        let world = try GitWorld()
        let host = try nginxOrigin(world)
        defer { withExtendedLifetime(host) {} }
        let before = try world.head(world.factory)
        try world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        var env = withoutCABundle(world)
        env["FACTORYCTL_GIT_TOKEN"] = "s3cret"
        env["FACTORYCTL_GIT_USERNAME"] = "ci"
        switch trusting {
        case "other CA":
            let other = world.directory.join("other-ca.crt")
            try Command.check(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=another CA", "-days", "1",
                               "-keyout", world.directory.join("other-ca.key"), "-out", other])
            env["GIT_SSL_CAINFO"] = other
        case "missing file": env["GIT_SSL_CAINFO"] = world.directory.join("no-such-bundle.crt")
        default: break
        }
        let (result, object) = try update(world, env)
        let error = object["error"] as? String ?? ""
        let head = try world.head(world.factory)
        #expect(result.status == 5 && object["failure"] as? String == "tls_failed" && error.contains(says) && head == before,
                "\(result.stdout) \(result.stderr)")
    }
}
