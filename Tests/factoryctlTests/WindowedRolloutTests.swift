import Foundation
import Testing
import TestSupport

/// Sliding windows (`publish update --max-in-flight`) with eight real consumers, a real
/// redis-server and real git. Each update's sync takes a second, so updates in flight overlap.
@Suite struct WindowedRolloutTests {
    static let ids = (1...8).map { "f-\($0)" }

    /// Supervised consumers whose sync takes `seconds(id)`; `environment(id, env)` may change one's.
    func start(_ fleet: FleetWorld, _ supervisor: Supervisor, _ ids: [String] = Self.ids, seconds: (String) -> Int = { _ in 1 },
               environment: (String, inout [String: String]) -> Void = { _, _ in }) throws {
        for id in ids {
            var env = fleet.environment
            env["UA_FACTORY_SYNC_COMMAND"] = try fleet.world.script("sync-\(id)", "exec sleep \(seconds(id))\n")
            environment(id, &env)
            let consumerEnvironment = env
            try supervisor.supervise(id) { try fleet.consumer(id, ["--settle", "0"], environment: consumerEnvironment) }
        }
        for id in ids { #expect(try fleet.waitUntilRegistered(id)) }
    }

    func hq(_ fleet: FleetWorld) -> [String: String] {
        var env = fleet.environment
        env["UA_FACTORY_REPO_URL"] = fleet.world.origin
        return env
    }

    /// The most updates in flight at once, from what the factories themselves reported
    /// (each result's received_at … finished_at).
    static func peakOverlap(_ results: [[String: Any]]) -> Int {
        var events: [(Double, Int)] = []
        for result in results {
            guard let detail = result["result"] as? [String: Any], let from = detail["received_at"] as? Double,
                  let to = detail["finished_at"] as? Double else { continue }
            events += [(from, 1), (to, -1)]
        }
        var (now, peak) = (0, 0)
        for (_, step) in events.sorted(by: { ($0.0, $0.1) < ($1.0, $1.1) }) {
            now += step
            peak = max(peak, now)
        }
        return peak
    }

    @Test func aWindowOfTwoOverEightNeverHasMoreThanTwoUpdatingAndUsesBoth() throws {
        let fleet = try FleetWorld(factories: Self.ids)
        let supervisor = Supervisor()
        defer { supervisor.stopAll() }
        try start(fleet, supervisor)
        let target = try fleet.world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        let result = try FactoryctlBinary.run(["publish", "update", "--max-in-flight", "2", "--json", "--log-level", "error"],
                                              environment: hq(fleet))
        let object = JSONDoc.object(result, exit: 0)
        var results: [[String: Any]] = []
        for job in object["jobs"] as? [String] ?? [] { results += try fleet.results(job) }
        let heads = try Self.ids.map { try fleet.world.head(fleet.factories[$0]!) }
        let succeeded = results.filter { $0["status"] as? String == "SUCCESS" }.count
        #expect(object["state"] as? String == "succeeded" && succeeded == 8 && heads.allSatisfy { $0 == target }
                && Self.peakOverlap(results) == 2, "\(result.stdout) \(result.stderr)")
    }

    @Test func aFailureRateHaltsTheWindowAndNothingMoreIsSent() throws {
        let fleet = try FleetWorld(factories: Self.ids)
        let supervisor = Supervisor()
        defer { supervisor.stopAll() }
        let health = try HealthServer()
        health.healthy(false)
        try start(fleet, supervisor, environment: { id, env in
            guard id == "f-1" || id == "f-2" else { return }
            env["UA_FACTORY_HEALTH_URL"] = health.url
            env["UA_FACTORY_HEALTH_TIMEOUT"] = "1"
        })
        try fleet.world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        // The budget would tolerate many failures; the rate (more than 1 in 10 minutes) does not.
        let result = try FactoryctlBinary.run(["publish", "update", "--max-in-flight", "2", "--max-failures", "100",
                                               "--max-failure-rate", "1/600", "--json", "--log-level", "error"],
                                              environment: hq(fleet))
        let object = JSONDoc.object(result, exit: 1)
        let members = object["members"] as? [[String: Any]] ?? []
        let notSent = members.filter { $0["status"] as? String == "NOT_SENT" }.compactMap { $0["factory_id"] as? String }
        #expect(object["state"] as? String == "halted" && (object["halt_reason"] as? String ?? "").contains("--max-failure-rate 1/600")
                && notSent.contains("f-8") && notSent.count >= 4, "\(result.stdout) \(result.stderr)")
    }

    @Test func aFactoryThatDoesNotAnswerWithinTheWaveTimeoutGivesBackItsSlot() throws {
        let ids = ["f-1", "f-2", "f-3"]
        let fleet = try FleetWorld(factories: ids)
        let supervisor = Supervisor()
        defer { supervisor.stopAll() }
        // f-1's sync takes 20 s: it says nothing for longer than the rollout's 4 s per factory.
        try start(fleet, supervisor, ids, seconds: { $0 == "f-1" ? 20 : 1 })
        let target = try fleet.world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        let result = try FactoryctlBinary.run(["publish", "update", "--max-in-flight", "1", "--max-failures", "1", "--wave-timeout", "4",
                                               "--json", "--log-level", "error"],
                                              environment: hq(fleet))
        let object = JSONDoc.object(result, exit: 0)
        let members = object["members"] as? [[String: Any]] ?? []
        let status = Dictionary(uniqueKeysWithValues: members.compactMap { m in (m["factory_id"] as? String).map { ($0, m["status"] as? String ?? "") } })
        #expect(object["state"] as? String == "succeeded" && status == ["f-1": "TIMED_OUT", "f-2": "SUCCESS", "f-3": "SUCCESS"]
                && (try? fleet.world.head(fleet.factories["f-3"]!)) == target, "\(result.stdout) \(result.stderr)")
    }

    @Test func aWindowedRolloutWhosePublisherIsKilledIsResumedWhereItWas() throws {
        let ids = ["f-1", "f-2", "f-3"]
        let fleet = try FleetWorld(factories: ids)
        let supervisor = Supervisor()
        defer { supervisor.stopAll() }
        try start(fleet, supervisor, ids, seconds: { _ in 2 })
        let target = try fleet.world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        var env = hq(fleet)
        env["FACTORYCTL_ROLLOUT_LEASE_SECONDS"] = "2"
        let publisher = try ConsumerProcess(binary: FactoryctlBinary.path,
                                            arguments: ["publish", "update", "--max-in-flight", "1", "--log-level", "error"],
                                            environment: env, log: fleet.world.directory.join("publisher.log"))
        // Killed while the first factory is updating.
        #expect(eventually(timeout: 30) { publisher.output.contains("f-1 → ") }, "\(publisher.output)")
        publisher.signal(SIGKILL)
        _ = publisher.waitForExit(timeout: 10)
        let id = publisher.output.split(separator: "\n").first { $0.hasPrefix("rollout-") }.map(String.init) ?? ""
        #expect(eventually(timeout: 10) { (try? fleet.redis.cli(["EXISTS", "factoryctl:rollout:\(id):lease"])) == "0" })
        let resumed = try FactoryctlBinary.run(["publish", "resume-rollout", id, "--json", "--log-level", "error"], environment: env)
        let object = JSONDoc.object(resumed, exit: 0)
        // f-1's mission was followed, not sent again: three missions in all, one per factory.
        let heads = try ids.map { try fleet.world.head(fleet.factories[$0]!) }
        #expect(object["state"] as? String == "succeeded" && (object["jobs"] as? [String])?.count == 3 && heads.allSatisfy { $0 == target },
                "\(resumed.stdout) \(resumed.stderr)")
    }
}
