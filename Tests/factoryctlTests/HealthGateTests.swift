import Foundation
import Testing
import TestSupport

/// A tiny HTTP server for the health URL: python's http.server over a directory, so a file
/// `healthz` present answers 200 and absent answers 404. Stopped by its pid.
final class HealthServer: @unchecked Sendable {
    let directory: TemporaryDirectory
    let port: Int
    private let process = Process()

    init() throws {
        directory = TemporaryDirectory("factoryctl-health")
        port = freeLoopbackPort()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-m", "http.server", String(port), "--bind", "127.0.0.1", "--directory", directory.path]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let answers = { [port] in (try? Command.run(["curl", "-s", "-o", "/dev/null", "http://127.0.0.1:\(port)/"]).status) == 0 }
        guard eventually(timeout: 10, answers) else {
            throw Command.Failed(argv: process.arguments ?? [], status: -1, output: "http.server did not answer on 127.0.0.1:\(port)")
        }
    }

    deinit {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    var url: String { "http://127.0.0.1:\(port)/healthz" }

    func healthy(_ yes: Bool) {
        let path = directory.join("healthz")
        if yes { FileManager.default.createFile(atPath: path, contents: Data("ok\n".utf8)) } else { try? FileManager.default.removeItem(atPath: path) }
    }
}

@Suite struct HealthGateTests {
    func update(_ world: GitWorld, _ health: HealthServer, timeout: String = "2") throws -> Command.Result {
        var environment = world.environment
        environment["UA_FACTORY_HEALTH_URL"] = health.url
        environment["UA_FACTORY_HEALTH_TIMEOUT"] = timeout
        return try FactoryctlBinary.run(["update", "--restart", "--settle", "0", "--no-sync", "--json"],
                                        factoryDir: world.factory, environment: environment)
    }

    @Test func aHealthyServiceAfterTheRestartCompletesTheUpdate() throws {
        let world = try GitWorld()
        let health = try HealthServer()
        health.healthy(true)
        let target = try world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        let result = try update(world, health)
        #expect(result.status == 0, "\(result.stdout) \(result.stderr)")
        #expect(result.stdout.contains("\"health_checked\":true"))
        #expect(try world.head(world.factory) == target)
    }

    @Test func anUnhealthyServiceRollsTheUpdateBackWithTheReason() throws {
        let world = try GitWorld()
        let health = try HealthServer()
        health.healthy(false)
        let before = try world.head(world.factory)
        let protected = world.protectedSnapshot()
        try world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        let result = try update(world, health, timeout: "1.5")
        #expect(result.status == 2, "\(result.stdout) \(result.stderr)")
        #expect(result.stdout.contains("\"failure\":\"health_check_failed\""))
        #expect(result.stdout.contains("did not answer 2xx within 1 s (last: HTTP 404)"), "\(result.stdout)")
        #expect(try world.head(world.factory) == before)
        #expect(world.protectedSnapshot() == protected)
        // The rollback restarted the service on the old code.
        #expect(FakeSystemctl.calls(world.systemctlState).filter { $0.hasPrefix("--user restart") }.count == 2)
        // Nothing listening at all is a failure too (connection refused), and a bad URL is a usage error.
        var environment = world.environment
        environment["UA_FACTORY_HEALTH_URL"] = "ftp://127.0.0.1/x"
        let bad = try FactoryctlBinary.run(["update", "--restart"], factoryDir: world.factory, environment: environment)
        #expect(bad.status == 64 && bad.stderr.contains("UA_FACTORY_HEALTH_URL must be an http"), "\(bad.stderr)")
    }
}
