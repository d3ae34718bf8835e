import FactoryKit
import Foundation
import RedisKit
import Testing
import TestSupport

/// One factory's credentials can touch only that factory (issue 19): what an insider holding
/// factory b's env file can do to factory a, and to the fleet, with a real redis-server.
@Suite struct FleetIdentityTests {
    /// The user and password inside an enrolled factory's `UA_REDIS_URL`.
    static func credentials(_ env: [String: String]) throws -> (user: String, password: String) {
        let url = try RedisURL(env["UA_REDIS_URL"] ?? "")
        return (url.username ?? "", url.password ?? "")
    }

    static func refused(_ output: String) -> Bool {
        output.contains("NOPERM") || output.contains("can't run this command")
    }

    /// What b tries, with a's keys, the shared keys, HQ's keys and b's own keys it has no need to
    /// write. `b:job` is a victim whose id extends the attacker's (key patterns must not overlap).
    static let attacks: [[String]] = [
        ["XREADGROUP", "GROUP", "factoryctl:a", "b", "COUNT", "1", "STREAMS", "factoryctl:f:{a}:inbox", ">"],
        ["XACK", "factoryctl:f:{a}:inbox", "factoryctl:a", "0-1"],
        ["XGROUP", "CREATE", "factoryctl:f:{a}:inbox", "evil", "0"],
        ["XRANGE", "factoryctl:f:{a}:inbox", "-", "+"],
        ["GET", "factoryctl:f:{a}:registration"],
        ["SET", "factoryctl:f:{a}:registration", "{}"],
        ["SET", "factoryctl:f:{a}:job:update-000000000001", "{}"],
        ["XADD", "factoryctl:f:{a}:results", "*", "job_id", "update-000000000001"],
        ["SET", "factoryctl:f:{b:job}:registration", "{}"],
        ["EXPIRE", "factoryctl:registry", "1"],
        ["DEL", "factoryctl:registry"],
        ["HSET", "factoryctl:registry", "a", "{}"],
        ["HSETNX", "factoryctl:job:update-000000000001", "result:a", "{}"],
        ["SET", "factoryctl:jobs:update-000000000001", "{}"],
        ["HGETALL", "factoryctl:enrolled"],
        ["XADD", "ua:missions:delegation", "*", "job_id", "x"],
        ["XADD", "ua:missions:delegation:results", "*", "job_id", "x"],
        ["XGROUP", "CREATE", "ua:missions:delegation", "factoryctl:b", "$", "MKSTREAM"],
        ["XADD", "factoryctl:f:{b}:inbox", "*", "job_id", "x"],
        ["DEL", "factoryctl:f:{b}:inbox"],
        ["EVAL", "return redis.call('DEL', KEYS[1])", "1", "factoryctl:f:{a}:inbox"],
        ["EVAL", "return redis.call('DEL', 'factoryctl:registry')", "0"],
        ["EVAL", "return redis.call('HSET', 'factoryctl:registry', 'a', '{}')", "1", "factoryctl:f:{b}:results"],
        ["CLIENT", "KILL", "USER", "factory:a"],
        ["CLIENT", "LIST"],
        ["ACL", "SETUSER", "factory:b", "+@all", "~*"],
        ["CONFIG", "SET", "maxmemory", "1"],
        ["KEYS", "*"],
        ["FLUSHALL"],
    ]

    @Test(arguments: attacks)
    func anotherFactorysKeysAndEveryKeyThatIsNotItsOwnAreRefused(_ attack: [String]) throws {
        let redis = try RedisServer()
        let env = ["FACTORY_ROLE": "HEADQUARTERS", "UA_REDIS_URL": redis.url, "PATH": ProcessInfo.processInfo.environment["PATH"] ?? ""]
        for id in ["a", "b:job"] { #expect(try FactoryctlBinary.run(["enroll", id], environment: env).status == 0) }
        let result = try FactoryctlBinary.run(["enroll", "b", "--log-level", "error"], environment: env)
        let line = result.stdout.split(separator: "\n").first { $0.hasPrefix("UA_REDIS_URL=") }.map { String($0.dropFirst(13)) } ?? ""
        let b = try Self.credentials(["UA_REDIS_URL": line])
        let output = try redis.cli(user: b.user, password: b.password, attack)
        #expect(Self.refused(output), "b was allowed \(attack.joined(separator: " ")): \(output)")
    }

    @Test func anEnrolledAndAnUnenrolledFactoryUpdateTogetherAndEachIsKnownFromItsOwnKeys() throws {
        let fleet = try FleetWorld(factories: ["a", "legacy"])
        let credentials = try fleet.enroll("a")
        let supervisor = Supervisor()
        defer { supervisor.stopAll() }
        try supervisor.supervise("a") { try fleet.enrolledConsumer("a", credentials: credentials) }
        try supervisor.supervise("legacy") { try fleet.consumer("legacy") }
        #expect(try fleet.waitUntilRegistered("a") && fleet.waitUntilRegistered("legacy"))
        let target = try fleet.world.pushUpstream(["app.py": "print('v2')\n"], message: "Ship v2")
        let result = try FactoryctlBinary.run(["publish", "update", "--wait", "--timeout", "60", "--json", "--log-level", "error"],
                                              environment: fleet.environment)
        let summary = try result.json()
        let heads = try ["a", "legacy"].map { try fleet.world.head(fleet.factories[$0]!) }
        let ownKeys = try fleet.redis.cli(["EXISTS", "factoryctl:f:{a}:registration", "factoryctl:f:{a}:results"])
        let sharedRow = try fleet.redis.cli(["HEXISTS", "factoryctl:registry", "a"])
        #expect(summary["all_succeeded"] as? Bool == true && heads == [target, target] && ownKeys == "2" && sharedRow == "0",
                "\(result.stdout) \(result.stderr) heads \(heads) own keys \(ownKeys) shared row \(sharedRow)")
    }

    /// b forges a result and a registration for a wherever it (or any factory on the shared user)
    /// can write: nothing of it counts for a.
    @Test func resultsAndRegistrationsClaimingAnotherFactoryDoNotCount() throws {
        let fleet = try FleetWorld(factories: ["a", "b"])
        let credentialsA = try fleet.enroll("a"), credentialsB = try fleet.enroll("b")
        let consumer = try fleet.enrolledConsumer("a", credentials: credentialsA)
        defer { consumer.stop() }
        #expect(try fleet.waitUntilRegistered("a"))
        consumer.stop()
        // A mission for a that a never runs (its consumer is stopped).
        let job = try fleet.publish(["update", "--target", "a"])
        let b = try Self.credentials(credentialsB)
        let forged = #"{"error": null, "job_id": "\#(job)", "result": {"factory_id": "a", "outcome": "updated"}, "status": "SUCCESS"}"#
        _ = try fleet.redis.cli(user: b.user, password: b.password, ["SET", "factoryctl:f:{b}:job:\(job)", forged])
        _ = try fleet.redis.cli(user: b.user, password: b.password, ["XADD", "factoryctl:f:{b}:results", "*", "job_id", job, "status", "SUCCESS", "envelope", forged])
        // What a factory on the old shared user could write.
        try fleet.redis.cli(["HSETNX", "factoryctl:job:\(job)", "result:a", forged])
        try fleet.redis.cli(["XADD", "ua:missions:delegation:results", "*", "job_id", job, "status", "SUCCESS", "envelope", forged])
        var registration = try #require(try fleet.registration("a"))
        registration["commit"] = String(repeating: "0", count: 40)
        try fleet.redis.cli(["HSET", "factoryctl:registry", "a", String(decoding: try JSONSerialization.data(withJSONObject: registration), as: UTF8.self)])
        let status = try FactoryctlBinary.run(["status", "--job", job, "--json"], environment: fleet.environment).json()
        let waited = try FactoryctlBinary.run(["publish", "update", "--target", "a", "--force", "--wait", "--timeout", "2", "--json", "--log-level", "error"],
                                              environment: fleet.environment).json()
        let fleetRows = try FactoryctlBinary.run(["status", "--fleet", "--json"], environment: fleet.environment).json()
        let commits = ((fleetRows["factories"] as? [[String: Any]]) ?? []).compactMap { $0["commit"] as? String }
        #expect((status["results"] as? [Any])?.isEmpty == true && (waited["results"] as? [Any])?.isEmpty == true
                && !commits.contains(String(repeating: "0", count: 40)),
                "job \(status) wait \(waited) fleet \(fleetRows)")
    }

    @Test func afterForgetTheFactorysCredentialsNoLongerAuthenticate() throws {
        let fleet = try FleetWorld(factories: ["a"])
        let credentials = try fleet.enroll("a")
        let consumer = try fleet.enrolledConsumer("a", credentials: credentials)
        defer { consumer.stop() }
        #expect(try fleet.waitUntilRegistered("a"))
        consumer.stop()
        let forget = try FactoryctlBinary.run(["forget", "a", "--force"], environment: fleet.environment)
        let a = try Self.credentials(credentials)
        let auth = try fleet.redis.cli(["AUTH", a.user, a.password])
        #expect(forget.status == 0 && auth.contains("WRONGPASS"), "forget: \(forget.stdout) \(forget.stderr); AUTH: \(auth)")
    }

    @Test func rotatingClosesTheOldCredentialsConnectionsAndOnlyTheNewPasswordWorks() throws {
        let fleet = try FleetWorld(factories: ["a"])
        let old = try fleet.enroll("a")
        let consumer = try fleet.enrolledConsumer("a", credentials: old)
        defer { consumer.stop() }
        #expect(try fleet.waitUntilRegistered("a"))
        let new = try fleet.enroll("a", ["--rotate"])
        let (oldAuth, newAuth) = (try Self.credentials(old), try Self.credentials(new))
        let results = try [oldAuth, newAuth].map { try fleet.redis.cli(["AUTH", $0.user, $0.password]) }
        let clients = try fleet.redis.cli(["CLIENT", "LIST", "USER", "factory:a"])
        #expect(results[0].contains("WRONGPASS") && results[1] == "OK" && !clients.contains("user=factory:a"),
                "old: \(results[0]) new: \(results[1]) clients: \(clients)")
    }

    @Test func enrollingAnEnrolledFactoryWithoutRotateIsRefusedAndChangesNothing() throws {
        let fleet = try FleetWorld(factories: ["a"])
        let first = try fleet.enroll("a")
        let again = try FactoryctlBinary.run(["enroll", "a"], environment: fleet.environment)
        let a = try Self.credentials(first)
        let auth = try fleet.redis.cli(["AUTH", a.user, a.password])
        #expect(again.status == 8 && again.stdout.isEmpty && auth == "OK",
                "\(again.status) \(again.stderr)")
    }

    @Test func theAclFileGetsTheUsersLineWithAHashedPasswordAndOtherLinesKept() throws {
        let fleet = try FleetWorld(factories: ["a"])
        let file = fleet.world.directory.join("users.acl")
        try "user hq on >hq-password ~* +@all\n".write(toFile: file, atomically: true, encoding: .utf8)
        let credentials = try fleet.enroll("a", ["--acl-file", file])
        let text = try String(contentsOfFile: file, encoding: .utf8)
        let password = try Self.credentials(credentials).password
        let mode = (try FileManager.default.attributesOfItem(atPath: file)[.posixPermissions] as? Int) ?? 0
        #expect(text.hasPrefix("user hq on >hq-password ~* +@all\nuser factory:a on #") && !text.contains(password) && mode == 0o600,
                "\(text) mode \(String(mode, radix: 8))")
    }
}
