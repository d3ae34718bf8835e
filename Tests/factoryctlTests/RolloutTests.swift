import Foundation
import Testing
import TestSupport

/// Staged rollouts with six real consumers, a real redis-server and real git.
@Suite struct RolloutTests {
    static let ids = ["f-1", "f-2", "f-3", "f-4", "f-5", "f-6"]

    /// Six supervised consumers; `environment(id)` may give one its own (a failing health URL).
    func start(_ fleet: FleetWorld, _ supervisor: Supervisor, environment: (String) -> [String: String]? = { _ in nil }) throws {
        for id in Self.ids {
            let env = environment(id) ?? fleet.environment
            try supervisor.supervise(id) { try fleet.consumer(id, ["--no-sync"], environment: env) }
        }
        for id in Self.ids { #expect(try fleet.waitUntilRegistered(id)) }
    }

    var hq: (FleetWorld) -> [String: String] = { fleet in
        var env = fleet.environment
        env["UA_FACTORY_REPO_URL"] = fleet.world.origin
        return env
    }

    @Test func canaryThenBatchesInOrderWithWavesThatNeverOverlap() throws {
        let fleet = try FleetWorld(factories: Self.ids)
        let supervisor = Supervisor()
        defer { supervisor.stopAll() }
        try start(fleet, supervisor)
        let target = try fleet.world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        // A pause between waves, and the rollout goes on after it.
        let result = try FactoryctlBinary.run(["publish", "update", "--canary", "1", "--batch", "2", "--pause", "0.2", "--json",
                                               "--log-level", "error"],
                                              environment: hq(fleet))
        let object = JSONDoc.object(result, exit: 0)
        #expect(object["state"] as? String == "succeeded", "\(result.stdout) \(result.stderr)")
        #expect((object["waves"] as? [[String]]) == [["f-1"], ["f-2", "f-3"], ["f-4", "f-5"], ["f-6"]])
        #expect(object["commit"] as? String == target)
        for id in Self.ids { #expect(try fleet.world.head(fleet.factories[id]!) == target) }
        // Each wave began only after the previous one had finished.
        let jobs = object["jobs"] as? [String] ?? []
        #expect(jobs.count == 4)
        var previousEnd = 0.0
        for job in jobs {
            let results = try fleet.results(job).compactMap { $0["result"] as? [String: Any] }
            let received = results.compactMap { $0["received_at"] as? Double }
            let finished = results.compactMap { $0["finished_at"] as? Double }
            #expect(!received.isEmpty && received.min()! >= previousEnd, "wave \(job) overlapped the previous one")
            previousEnd = finished.max() ?? previousEnd
        }
        let status = try FactoryctlBinary.run(["status", "--rollout", object["id"] as? String ?? ""], environment: fleet.environment)
        #expect(status.stdout.contains("succeeded") && status.stdout.contains("f-6"), "\(status.stdout)")
    }

    @Test func aWaveThatFailsItsHealthGateHaltsAndRollsBack() throws {
        let fleet = try FleetWorld(factories: Self.ids)
        let supervisor = Supervisor()
        defer { supervisor.stopAll() }
        let health = try HealthServer()
        health.healthy(false)
        try start(fleet, supervisor) { id in
            guard id == "f-3" else { return nil }
            var env = fleet.environment
            env["UA_FACTORY_HEALTH_URL"] = health.url
            env["UA_FACTORY_HEALTH_TIMEOUT"] = "1"
            return env
        }
        let before = try fleet.world.head(fleet.world.factory)
        try fleet.world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        let result = try FactoryctlBinary.run(["publish", "update", "--canary", "1", "--batch", "2", "--rollback-on-halt", "--json",
                                               "--log-level", "error"],
                                              environment: hq(fleet))
        let object = JSONDoc.object(result, exit: 2)
        #expect(object["state"] as? String == "rolled_back", "\(result.stdout)")
        #expect((object["failures"] as? [[String: Any]])?.compactMap { $0["factory_id"] as? String } == ["f-3"], "\(result.stdout)")
        #expect((object["jobs"] as? [String])?.count == 2, "wave 3 was never sent")
        // Waves 1 and 2 are back on the old commit; waves 3 and 4 never moved.
        for id in Self.ids {
            #expect(try eventually { (try? fleet.world.head(fleet.factories[id]!)) == before }, "\(id)")
        }
        for id in ["f-4", "f-5", "f-6"] {
            #expect(try fleet.registration(id)?["last_job_id"] == nil, "\(id) received nothing")
        }
        // Another rollout for the same factories may start now (this one is over).
        let status = JSONDoc.object(try FactoryctlBinary.run(["status", "--rollout", object["id"] as? String ?? "", "--json"],
                                                             environment: fleet.environment), exit: 0)
        #expect(status["state"] as? String == "rolled_back")
    }

    @Test func maxFailuresToleratesAFailedFactoryAndTheRolloutGoesOn() throws {
        let fleet = try FleetWorld(factories: Self.ids)
        let supervisor = Supervisor()
        defer { supervisor.stopAll() }
        let health = try HealthServer()
        health.healthy(false)
        try start(fleet, supervisor) { id in
            guard id == "f-3" else { return nil }
            var env = fleet.environment
            env["UA_FACTORY_HEALTH_URL"] = health.url
            env["UA_FACTORY_HEALTH_TIMEOUT"] = "1"
            return env
        }
        let before = try fleet.world.head(fleet.world.factory)
        let target = try fleet.world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        let result = try FactoryctlBinary.run(["publish", "update", "--canary", "1", "--batch", "2", "--max-failures", "1", "--json",
                                               "--log-level", "error"],
                                              environment: hq(fleet))
        let object = JSONDoc.object(result, exit: 0)
        #expect(object["state"] as? String == "succeeded", "\(result.stdout)")
        #expect((object["failures"] as? [[String: Any]])?.compactMap { $0["factory_id"] as? String } == ["f-3"])
        for id in Self.ids where id != "f-3" { #expect(try fleet.world.head(fleet.factories[id]!) == target, "\(id)") }
        #expect(try fleet.world.head(fleet.factories["f-3"]!) == before, "f-3 rolled itself back")
    }

    @Test func aPublisherKilledMidRolloutIsResumedAndAnOverlappingRolloutIsRefused() throws {
        let fleet = try FleetWorld(factories: Self.ids)
        let supervisor = Supervisor()
        defer { supervisor.stopAll() }
        try start(fleet, supervisor)
        let target = try fleet.world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        var env = hq(fleet)
        env["FACTORYCTL_ROLLOUT_LEASE_SECONDS"] = "2"
        let publisher = try ConsumerProcess(binary: FactoryctlBinary.path,
                                            arguments: ["publish", "update", "--canary", "1", "--batch", "5", "--pause", "30", "--log-level", "error"],
                                            environment: env, log: fleet.world.directory.join("publisher.log"))
        // Killed during the pause after the canary wave.
        #expect(eventually(timeout: 30) { publisher.output.contains("pausing") }, "\(publisher.output)")
        publisher.signal(SIGKILL)
        _ = publisher.waitForExit(timeout: 10)
        let id = publisher.output.split(separator: "\n").first { $0.hasPrefix("rollout-") }.map(String.init) ?? ""
        #expect(!id.isEmpty, "\(publisher.output)")
        #expect(try fleet.world.head(fleet.factories["f-1"]!) == target)
        #expect(try fleet.world.head(fleet.factories["f-2"]!) != target)
        // Still marked running: an overlapping rollout is refused.
        let overlapping = try FactoryctlBinary.run(["publish", "update", "--batch", "1", "--target", "f-2"], environment: hq(fleet))
        #expect(overlapping.status == 8 && overlapping.stderr.contains("rollout \(id) is in progress"), "\(overlapping.stderr)")
        // The dead publisher's lease runs out on its own.
        #expect(eventually(timeout: 10) { (try? fleet.redis.cli(["EXISTS", "factoryctl:rollout:\(id):lease"])) == "0" })
        let resumed = try FactoryctlBinary.run(["publish", "resume-rollout", id, "--json", "--log-level", "error"], environment: env)
        #expect(JSONDoc.object(resumed, exit: 0)["state"] as? String == "succeeded", "\(resumed.stdout) \(resumed.stderr)")
        for id in Self.ids { #expect(try fleet.world.head(fleet.factories[id]!) == target, "\(id)") }
    }

    @Test func aSecondRunnerIsRefusedNamingTheHolderAndResumeWorksOnceTheDeadHoldersLeaseExpires() throws {
        let ids = ["f-1", "f-2"]
        let fleet = try FleetWorld(factories: ids)
        let supervisor = Supervisor()
        defer { supervisor.stopAll() }
        for id in ids { try supervisor.supervise(id) { try fleet.consumer(id, ["--no-sync"]) } }
        for id in ids { #expect(try fleet.waitUntilRegistered(id)) }
        let target = try fleet.world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        var env = hq(fleet)
        env["FACTORYCTL_ROLLOUT_LEASE_SECONDS"] = "2"
        let first = try ConsumerProcess(binary: FactoryctlBinary.path,
                                        arguments: ["publish", "update", "--canary", "1", "--batch", "1", "--pause", "60", "--log-level", "error"],
                                        environment: env, log: fleet.world.directory.join("first.log"))
        defer { first.stop() }
        #expect(eventually(timeout: 30) { first.output.contains("pausing") }, "\(first.output)")
        let id = first.output.split(separator: "\n").first { $0.hasPrefix("rollout-") }.map(String.init) ?? ""
        let lease = "factoryctl:rollout:\(id):lease"
        let holder = (try? JSONSerialization.jsonObject(with: Data(try fleet.redis.cli(["GET", lease]).utf8))) as? [String: Any]
        #expect(holder?["pid"] as? Int == Int(first.pid) && holder?["runner"] as? String == "factoryctl publish", "\(String(describing: holder))")
        // Renewed while it runs: its time to live goes back up (it is 2 s, renewed every 0.67 s).
        var lowest = Int.max
        #expect(eventually(timeout: 10) {
            let left = Int((try? fleet.redis.cli(["PTTL", lease])) ?? "") ?? -2
            lowest = min(lowest, left)
            return left > lowest + 200
        }, "the lease was not renewed")

        // A second runner while the first drives it: refused, the holder named, nothing changed.
        for arguments in [["publish", "resume-rollout", id], ["publish", "resume-rollout", id, "--json"]] {
            let second = try FactoryctlBinary.run(arguments + ["--log-level", "error"], environment: env)
            let message = arguments.contains("--json") ? JSONDoc.object(second, exit: 8)["error"] as? String ?? "" : second.stderr
            #expect(second.status == 8, "\(second.stdout) \(second.stderr)")
            #expect(message.contains("already being driven by factoryctl publish, pid \(first.pid)"), "\(message)")
        }
        #expect(try fleet.redis.cli(["HGET", "factoryctl:rollout:\(id)", "wave"]) == "1")
        #expect(try fleet.redis.cli(["HEXISTS", "factoryctl:rollout:\(id)", "wave:1:job"]) == "0", "wave 2 not sent")
        #expect(first.status == nil)

        // The first dies; once its lease has expired, resume drives the rollout to the end.
        first.signal(SIGKILL)
        _ = first.waitForExit(timeout: 10)
        #expect(eventually(timeout: 10) { (try? fleet.redis.cli(["EXISTS", lease])) == "0" })
        let resumed = JSONDoc.object(try FactoryctlBinary.run(["publish", "resume-rollout", id, "--json", "--log-level", "error"],
                                                              environment: env), exit: 0)
        #expect(resumed["state"] as? String == "succeeded", "\(resumed)")
        #expect((resumed["jobs"] as? [String])?.count == 2, "each wave sent once")
        #expect((resumed["failures"] as? [Any])?.isEmpty == true)
        for id in ids { #expect(try fleet.world.head(fleet.factories[id]!) == target, "\(id)") }
        #expect(try fleet.redis.cli(["EXISTS", lease]) == "0", "released at the end")
    }
}
