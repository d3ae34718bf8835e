import FactoryKit
import Foundation
import RedisKit
import Testing
import TestSupport

/// An enrolled fleet end to end (issue 19): the shipped ACL profiles (`enroll` enrolls and
/// forgets, `hq` publishes, each factory its own user), enrolments that survive a restart of
/// Redis, a signed rollout that halts and rolls back, and a mission over TLS.
@Suite struct EnrolledFleetTests {
    static let profiles = Package.root + "/deploy/redis-users.acl"

    /// A redis-server started with `deploy/redis-users.acl` (default user off), HQ on its `hq`
    /// user; `enrollURL` is the `enroll` user's.
    static func shippedProfiles(factories: [String], persistent: Bool = false) throws -> (fleet: FleetWorld, enrollURL: String) {
        let redis = try RedisServer(password: "change-me-hq", aclFile: profiles, user: "hq", persistent: persistent)
        let fleet = try FleetWorld(factories: factories, redis: redis, hqURL: "unix://hq:change-me-hq@\(redis.socket)")
        return (fleet, "unix://enroll:change-me-enroll@\(redis.socket)")
    }

    static func authenticates(_ redis: RedisServer, _ credentials: [String: String]) throws -> Bool {
        let url = try RedisURL(credentials["UA_REDIS_URL"] ?? "")
        return try redis.cli(["AUTH", url.username ?? "", url.password ?? ""]) == "OK"
    }

    @Test func withTheShippedProfilesAnEnrolledFactoryIsUpdatedByHQAndNothingIsRefused() throws {
        let (fleet, enrollURL) = try Self.shippedProfiles(factories: ["a"])
        let credentials = try fleet.enroll("a", redisURL: enrollURL)
        let supervisor = Supervisor()
        defer { supervisor.stopAll() }
        try supervisor.supervise("a") { try fleet.enrolledConsumer("a", credentials: credentials, ["--no-sync"]) }
        #expect(try fleet.waitUntilRegistered("a"))
        let target = try fleet.world.pushUpstream(["app.py": "print('v2')\n"], message: "Ship v2")
        let published = try FactoryctlBinary.run(["publish", "update", "--wait", "--timeout", "60", "--json", "--log-level", "error"],
                                                 environment: fleet.environment)
        let log = (try? String(contentsOfFile: fleet.world.directory.join("consume-a.log"), encoding: .utf8)) ?? ""
        let succeeded = (try? published.json())?["all_succeeded"] as? Bool == true
        let head = try fleet.world.head(fleet.world.factory)
        #expect(published.status == 0 && succeeded && head == target && !log.contains("NOPERM"),
                "\(published.stdout) \(published.stderr) \(log.suffix(2000))")
    }

    /// `enroll` and `forget` save the ACL (`ACL SAVE` to the server's aclfile): a restart of Redis
    /// neither locks an enrolled factory out nor brings a revoked one back.
    @Test func anEnrolmentAndARevocationBothSurviveARestartOfRedis() throws {
        let (fleet, enrollURL) = try Self.shippedProfiles(factories: ["a"], persistent: true)
        let credentials = try fleet.enroll("a", redisURL: enrollURL)
        fleet.redis.stop()
        try fleet.redis.start()
        let afterEnrol = try Self.authenticates(fleet.redis, credentials)
        var admin = fleet.environment
        admin["UA_REDIS_URL"] = enrollURL
        let forget = try FactoryctlBinary.run(["forget", "a", "--force", "--log-level", "warning"], environment: admin)
        fleet.redis.stop()
        try fleet.redis.start()
        let afterForget = try Self.authenticates(fleet.redis, credentials)
        #expect(afterEnrol && forget.status == 0 && !forget.stderr.contains("memory only") && !afterForget,
                "enrolled after restart: \(afterEnrol); forget: \(forget.status) \(forget.stderr); revoked after restart: \(!afterForget)")
    }

    @Test func enrollWarnsWhenTheServerHasNoAclFileToSaveTheUserTo() throws {
        let fleet = try FleetWorld(factories: ["a"])
        let result = try FactoryctlBinary.run(["enroll", "a", "--json"], environment: fleet.environment)
        let object = try result.json()
        #expect(result.status == 0 && object["acl_saved"] as? Bool == false && result.stderr.contains("memory only"),
                "\(result.stdout) \(result.stderr)")
    }

    /// Three enrolled factories verifying HQ's signature; f-2's health gate fails: the rollout
    /// halts at its wave and HQ's signed rewind brings f-1 and f-2 back to the commit each itself
    /// reported before (f-3 never moved).
    @Test func aSignedRolloutOnAnEnrolledFleetHaltsAndRollsBackToWhatEachFactoryReported() throws {
        let ids = ["f-1", "f-2", "f-3"]
        let fleet = try FleetWorld(factories: ids)
        let keys = fleet.world.directory.join("hq-keys")
        #expect(try FactoryctlBinary.run(["keys", "generate", "--out", keys], environment: fleet.environment).status == 0)
        let health = try HealthServer()
        health.healthy(false)
        let supervisor = Supervisor()
        defer { supervisor.stopAll() }
        for id in ids {
            let credentials = try fleet.enroll(id)
            var more = ["UA_MISSION_VERIFY_KEYS": keys + "/mission.pub"]
            if id == "f-2" { more.merge(["UA_FACTORY_HEALTH_URL": health.url, "UA_FACTORY_HEALTH_TIMEOUT": "1"]) { $1 } }
            let environment = more
            try supervisor.supervise(id) { try fleet.enrolledConsumer(id, credentials: credentials, ["--no-sync"], environment: environment) }
        }
        for id in ids { #expect(try fleet.waitUntilRegistered(id)) }
        let before = try fleet.world.head(fleet.world.factory)
        try fleet.world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        var hq = fleet.environment
        hq["UA_FACTORY_REPO_URL"] = fleet.world.origin
        hq["UA_MISSION_SIGNING_KEY"] = keys + "/mission.key"
        let result = try FactoryctlBinary.run(["publish", "update", "--canary", "1", "--batch", "1", "--rollback-on-halt", "--json",
                                               "--log-level", "error"], environment: hq)
        let object = try result.json()
        let failed = (object["failures"] as? [[String: Any]])?.compactMap { $0["factory_id"] as? String }
        let heads = ids.map { id in eventually { (try? fleet.world.head(fleet.factories[id]!)) == before } }
        #expect(result.status == 2 && object["state"] as? String == "rolled_back" && failed == ["f-2"] && heads == [true, true, true],
                "\(result.stdout) \(result.stderr) heads back: \(heads)")
    }

    /// A signed rollout's wave reaches each enrolled member as an entry of its own that names only
    /// that member (issue 22: one envelope naming every member used to go into every inbox, over
    /// the 64 KiB field limit for a large wave of long ids), each signed and run.
    @Test func aSignedRolloutGivesEachEnrolledMemberAnInboxEntryNamingOnlyItAndEachRunsIt() throws {
        let ids = (1...3).map { "factory-with-a-long-identifier-for-the-scale-test-number-\($0)" }
        let fleet = try FleetWorld(factories: ids)
        let keys = fleet.world.directory.join("hq-keys")
        #expect(try FactoryctlBinary.run(["keys", "generate", "--out", keys], environment: fleet.environment).status == 0)
        let supervisor = Supervisor()
        defer { supervisor.stopAll() }
        for id in ids {
            let credentials = try fleet.enroll(id)
            try supervisor.supervise(id) {
                try fleet.enrolledConsumer(id, credentials: credentials, ["--no-sync"], environment: ["UA_MISSION_VERIFY_KEYS": keys + "/mission.pub"])
            }
        }
        for id in ids { #expect(try fleet.waitUntilRegistered(id)) }
        let target = try fleet.world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        var hq = fleet.environment
        hq["UA_FACTORY_REPO_URL"] = fleet.world.origin
        hq["UA_MISSION_SIGNING_KEY"] = keys + "/mission.key"
        let result = try FactoryctlBinary.run(["publish", "update", "--batch", "100%", "--json", "--log-level", "error"], environment: hq)
        var named: [String: [String]] = [:]
        for id in ids {
            let lines = try fleet.redis.cli(["XRANGE", "factoryctl:f:{\(id)}:inbox", "-", "+"]).split(separator: "\n").map(String.init)
            for (index, line) in lines.enumerated() where line == "envelope" && index + 1 < lines.count {
                let envelope = try JSONSerialization.jsonObject(with: Data(lines[index + 1].utf8)) as? [String: Any]
                let context = (envelope?["payload"] as? [String: Any])?["context"] as? [String: Any]
                named[id, default: []].append(context?["target_factory_ids"] == nil ? context?["target_factory_id"] as? String ?? "?" : "a list")
            }
        }
        let heads = try ids.map { try fleet.world.head(fleet.factories[$0]!) }
        #expect(result.status == 0 && (try? result.json())?["state"] as? String == "succeeded"
                && ids.allSatisfy { named[$0] == [$0] } && heads.allSatisfy { $0 == target },
                "\(result.stdout) \(result.stderr) inbox entries name: \(named)")
    }

    @Test func anEnrolledFactoryOverTLSRunsAMissionAndReportsIt() throws {
        let ca = try TestCertificateAuthority()
        let redis = try RedisServer(tls: .init(certificate: ca.issue("redis"), ca: ca.certificate))
        let fleet = try FleetWorld(factories: ["f-tls"], redis: redis)
        let credentials = try fleet.enroll("f-tls", ["--factory-redis-url", redis.tlsURL()])
        let supervisor = Supervisor()
        defer { supervisor.stopAll() }
        try supervisor.supervise("f-tls") {
            try fleet.enrolledConsumer("f-tls", credentials: credentials, ["--no-sync"], environment: ["UA_REDIS_TLS_CA": ca.certificate])
        }
        #expect(try fleet.waitUntilRegistered("f-tls"))
        let target = try fleet.world.pushUpstream(["app.py": "print('over TLS')\n"], message: "Ship over TLS")
        let published = try FactoryctlBinary.run(["publish", "update", "--wait", "--timeout", "60", "--json", "--log-level", "error"],
                                                 environment: fleet.environment)
        let head = try fleet.world.head(fleet.world.factory)
        #expect(credentials["UA_REDIS_URL"]?.hasPrefix("rediss://factory") == true && published.status == 0 && head == target, "\(credentials["UA_REDIS_URL"] ?? "") \(published.stderr)")
    }
}
