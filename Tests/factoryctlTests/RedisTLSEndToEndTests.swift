import FactoryKit
import Foundation
import RedisKit
import Testing
import TestSupport

/// A factory and HQ over `rediss://` only: the consumer and `publish --wait` both speak TLS to
/// redis-server's tls-port, verified against the test CA (UA_REDIS_TLS_CA).
@Suite struct RedisTLSEndToEndTests {
    @Test func aMissionGoesOutAndItsResultComesBackOverTLS() throws {
        let world = try GitWorld()
        let ca = try TestCertificateAuthority()
        let redis = try RedisServer(tls: .init(certificate: ca.issue("redis"), ca: ca.certificate))
        var environment = world.environment
        environment["UA_REDIS_URL"] = redis.tlsURL()
        environment["UA_REDIS_TLS_CA"] = ca.certificate
        environment["FACTORY_ROLE"] = "HEADQUARTERS"
        // Under a restart loop, as systemd runs it: the consumer exits after the update and comes
        // back on the new commit.
        let supervisor = Supervisor()
        defer { supervisor.stopAll() }
        let log = world.directory.join("consume.log")
        let url = redis.tlsURL()
        let consumerEnvironment = environment
        try supervisor.supervise("f-tls") {
            try ConsumerProcess(binary: FactoryctlBinary.path, factoryID: "f-tls", factoryDirectory: world.factory,
                                redisURL: url, environment: consumerEnvironment,
                                extraArguments: ["--min-interval", "0", "--heartbeat", "1", "--no-sync"], log: log)
        }
        #expect(eventually(timeout: 30) { (try? redis.cli(["HEXISTS", "factoryctl:registry", "f-tls"])) == "1" })
        let target = try world.pushUpstream(["app.py": "print('over TLS')\n"], message: "Ship over TLS")
        let published = try FactoryctlBinary.run(["publish", "update", "--target", "f-tls", "--wait", "--timeout", "60", "--json"],
                                                 environment: environment)
        #expect(published.status == 0, "\(published.stdout) \(published.stderr)")
        #expect(try world.head(world.factory) == target)
    }

    @Test func aServerCertificateFromAnotherCAIsRefusedNamingTheHost() throws {
        let ca = try TestCertificateAuthority()
        let other = try TestCertificateAuthority("another CA")
        let redis = try RedisServer(tls: .init(certificate: ca.issue("redis"), ca: ca.certificate))
        let world = try GitWorld()
        var environment = world.environment
        environment["UA_REDIS_URL"] = redis.tlsURL()
        environment["UA_REDIS_TLS_CA"] = other.certificate
        let result = try FactoryctlBinary.run(["status", "--fleet"], environment: environment)
        #expect(result.status == 7, "\(result.stderr)")
        #expect(result.stderr.contains("127.0.0.1") && result.stderr.contains("certificate"), "\(result.stderr)")
    }
}

@Suite struct RedisTLSSettingsTests {
    @Test func rediss_urlsCarryTheTLSFilesFromTheEnvironment() throws {
        let environment = FactoryEnvironment(["UA_REDIS_URL": "rediss://h:6380/1", "UA_REDIS_TLS_CA": "/c",
                                              "UA_REDIS_TLS_CERT": "/p", "UA_REDIS_TLS_KEY": "/k"])
        #expect(try environment.redisServerURL().tls == RedisTLSOptions(ca: "/c", cert: "/p", key: "/k"))
        #expect(try environment.redisServerURL(flag: "unix:///run/redis.sock").tls == nil)
    }

    @Test(arguments: [["UA_REDIS_URL": "redis://h:6379/0", "UA_REDIS_TLS_CA": "/c"],
                      ["UA_REDIS_URL": "rediss://h:6379/0", "UA_REDIS_TLS_KEY": "/k"]])
    func tlsSettingsThatCannotApplyAreRefused(values: [String: String]) {
        #expect(throws: FactoryError.self) { try FactoryEnvironment(values).redisServerURL() }
    }
}
