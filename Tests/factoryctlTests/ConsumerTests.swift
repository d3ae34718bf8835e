import FactoryKit
import Foundation
import RedisKit
import Testing
import TestSupport

@Suite struct ConsumerTests {
    @Test func fullCycleTwoFactoriesUpdateExitRestartAndReRegisterOnTheNewCommit() throws {
        let fleet = try FleetWorld(factories: ["f-1", "f-2"])
        let supervisor = Supervisor()
        defer { supervisor.stopAll() }
        for id in ["f-1", "f-2"] {
            try supervisor.supervise(id) { try fleet.consumer(id) }
            #expect(try fleet.waitUntilRegistered(id))
        }
        let target = try fleet.world.pushUpstream(["app.py": "print('v2')\n"], message: "Ship v2")
        let result = try FactoryctlBinary.run(["publish", "update", "--wait", "--timeout", "60", "--json", "--log-level", "error"],
                                              environment: fleet.environment)
        #expect(result.status == 0, "\(result.stderr)")
        let summary = try result.json()
        #expect(summary["all_succeeded"] as? Bool == true)
        #expect((summary["targeted"] as? [String])?.sorted() == ["f-1", "f-2"])

        for id in ["f-1", "f-2"] {
            #expect(try fleet.world.head(fleet.factories[id]!) == target)
            #expect(supervisor.exitCodes(id).first == 10, "consumer \(id) should exit 10 for a restart")
            #expect(try eventually { (try? fleet.registration(id))?["commit"] as? String == target })
            #expect(try fleet.pending(id) == 0)
        }
        let fleetStatus = try FactoryctlBinary.run(["status", "--fleet"], environment: fleet.environment)
        #expect(fleetStatus.stdout.contains("f-1") && fleetStatus.stdout.contains("f-2"))
        #expect(fleetStatus.stdout.components(separatedBy: String(target.prefix(7))).count == 3)
        // Every factory's .env is untouched.
        for id in ["f-1", "f-2"] {
            #expect(fleet.world.read(fleet.factories[id]!, ".env") == (id == "f-1" ? "UA_OPS_TOKEN=secret-token\nDATABASE_URL=postgres://x\n" : "UA_OPS_TOKEN=secret-token\n"))
        }
    }

    @Test func aSplayedBroadcastSpreadsTheFetchesOverTheWindowAndAllSucceed() throws {
        let ids = ["s-1", "s-2", "s-3"]
        let fleet = try FleetWorld(factories: ids)
        let supervisor = Supervisor()
        defer { supervisor.stopAll() }
        for id in ids {
            try supervisor.supervise(id) { try fleet.consumer(id) }
            _ = try fleet.waitUntilRegistered(id)
        }
        try fleet.world.pushUpstream(["app.py": "print('v2')\n"], message: "Ship v2")
        let result = try FactoryctlBinary.run(["publish", "update", "--splay", "3", "--wait", "--timeout", "60", "--json", "--log-level", "error"],
                                              environment: fleet.environment)
        let summary = (try? result.json()) ?? [:]
        let splays = (summary["results"] as? [[String: Any]] ?? []).compactMap {
            (($0["result"] as? [String: Any])?["steps_ms"] as? [String: Any])?["splay"] as? Int
        }
        // Each factory drew its own delay in [0, 3 s): three different waits, none past the window.
        #expect(summary["all_succeeded"] as? Bool == true && splays.count == 3 && Set(splays).count == 3
                && splays.allSatisfy { (0..<3000).contains($0) }, "\(result.stdout) \(result.stderr)")
    }

    @Test func targetedMissionRunsOnlyOnItsTarget() throws {
        let fleet = try FleetWorld(factories: ["f-1", "f-2"])
        let one = try fleet.consumer("f-1")
        let two = try fleet.consumer("f-2")
        defer { one.stop(); two.stop() }
        #expect(try fleet.waitUntilRegistered("f-1") && fleet.waitUntilRegistered("f-2"))
        let before = try fleet.world.head(fleet.factories["f-1"]!)
        try fleet.world.pushUpstream(["app.py": "print('v2')\n"], message: "Ship v2")
        let job = try fleet.publish(["update", "--target", "f-2"])
        #expect(two.waitForExit(timeout: 30) == 10)
        #expect(try fleet.results(job).map { $0["result"] as? [String: Any] }.compactMap { $0?["factory_id"] as? String } == ["f-2"])
        #expect(try eventually { try fleet.pending("f-1") == 0 && fleet.redis.cli(["XINFO", "GROUPS", "ua:missions:delegation"]).contains("factoryctl:f-1") })
        #expect(try fleet.world.head(fleet.factories["f-1"]!) == before)
        #expect(one.status == nil, "f-1 keeps consuming")
        // f-2 reported, so its update is no longer in flight: a new one needs no --force.
        #expect(try FactoryctlBinary.run(["publish", "update", "--target", "f-2"], environment: fleet.environment).status == 0)
    }

    @Test func malformedEntriesGoToTheDeadLetterStreamAndTheConsumerLives() throws {
        let fleet = try FleetWorld()
        let consumer = try fleet.consumer("f-1")
        defer { consumer.stop() }
        #expect(try fleet.waitUntilRegistered("f-1"))
        let stream = "ua:missions:delegation"
        try fleet.redis.cli(["XADD", stream, "*", "job_id", "bad-1", "envelope", "{not json"])
        try fleet.redis.cli(["XADD", stream, "*", "job_id", "bad-2", "idempotency_key", "k", "envelope",
                             #"{"job_id": "bad-2", "idempotency_key": "k", "payload": {"task": "t", "context": {"mission_kind": "system:update_factory", "branch": "-x"}}}"#])
        try fleet.redis.cli(["XADD", stream, "*", "something", "else"])
        try fleet.redis.cli(["XADD", stream, "*", "job_id", "bad-4", "envelope",
                             #"{"job_id": "bad-4", "idempotency_key": "k", "payload": {"task": "t", "context": {"mission_kind": "system:format_disk"}}}"#])
        #expect(try eventually { try fleet.redis.cli(["XLEN", "ua:missions:dlq"]) == "4" })
        let dlq = try fleet.redis.cli(["XRANGE", "ua:missions:dlq", "-", "+"])
        #expect(dlq.contains("not valid JSON"))
        #expect(dlq.contains("starts with '-'"))
        #expect(dlq.contains("no envelope field"))
        #expect(dlq.contains("something") && dlq.contains("else"), "raw fields of a non-envelope are kept")
        #expect(dlq.contains("unknown system mission kind"))
        #expect(dlq.contains("\"failure_error\": "), "a valid envelope gets failure_error inside it")
        #expect(try fleet.pending("f-1") == 0)
        #expect(consumer.status == nil)
        // Still consuming: a valid mission after the bad ones is handled.
        try fleet.world.pushUpstream(["app.py": "print('v2')\n"], message: "Ship v2")
        let job = try fleet.publish(["update"])
        #expect(consumer.waitForExit(timeout: 30) == 10)
        #expect(try fleet.results(job).first?["status"] as? String == "SUCCESS")
    }

    @Test func missionRedeliveredAfterACrashIsReportedNotRunTwice() throws {
        let fleet = try FleetWorld()
        try fleet.world.pushUpstream(["app.py": "print('v2')\n"], message: "Ship v2")
        // The group exists, the mission was delivered to f-1 and the update ran, then the process died before acking.
        try fleet.redis.cli(["XGROUP", "CREATE", "ua:missions:delegation", "factoryctl:f-1", "$", "MKSTREAM"])
        let job = try fleet.publish(["update"])
        try fleet.redis.cli(["XREADGROUP", "GROUP", "factoryctl:f-1", "f-1", "COUNT", "10", "STREAMS", "ua:missions:delegation", ">"])
        var request = UpdateRequest(factoryDirectory: fleet.world.factory)
        request.environment = fleet.world.environment
        request.jobID = job
        request.restart = true
        request.settleSeconds = 0
        #expect(UpdatePipeline(request: request).run().succeeded)
        let restarts = { FakeSystemctl.calls(fleet.world.systemctlState).filter { $0.contains(" restart ") }.count }
        let callsBefore = restarts()
        #expect(try fleet.pending("f-1") == 1)

        let consumer = try fleet.consumer("f-1")
        defer { consumer.stop() }
        #expect(try eventually { try fleet.pending("f-1") == 0 })
        let results = try fleet.results(job)
        #expect(results.count == 1)
        #expect(results.first?["status"] as? String == "SUCCESS")
        #expect((results.first?["result"] as? [String: Any])?["duplicate_delivery"] as? Bool == true)
        #expect(UpdateHistory(gitDirectory: fleet.world.factory + "/.git").entries().filter { $0.jobID == job }.count == 1)
        #expect(restarts() == callsBefore, "nothing restarted again")
        #expect(consumer.status == nil, "no update ran, so no exit for restart")
    }

    @Test func pendingUpdatesCollapseIntoOneRunOfTheNewest() throws {
        let fleet = try FleetWorld()
        try fleet.redis.cli(["XGROUP", "CREATE", "ua:missions:delegation", "factoryctl:f-1", "$", "MKSTREAM"])
        var jobs: [String] = []
        for version in 2...4 {
            try fleet.world.pushUpstream(["app.py": "print('v\(version)')\n"], message: "v\(version)")
            // Named: published before f-1 first started, a broadcast would be skipped (it joined later).
            jobs.append(try fleet.publish(["update", "--target", "f-1", "--allow-unregistered", "--force"]))
        }
        let consumer = try fleet.consumer("f-1")
        defer { consumer.stop() }
        #expect(consumer.waitForExit(timeout: 30) == 10)
        #expect(try fleet.results(jobs[2]).first?["status"] as? String == "SUCCESS")
        for old in jobs.prefix(2) {
            let result = try fleet.results(old).first
            #expect(result?["status"] as? String == "FAILED")
            #expect((result?["result"] as? [String: Any])?["superseded_by"] as? String == jobs[2])
        }
        #expect(UpdateHistory(gitDirectory: fleet.world.factory + "/.git").entries().count == 1, "exactly one update ran")
        #expect(FakeSystemctl.calls(fleet.world.systemctlState).filter { $0.contains("restart") }.count == 1)
    }

    @Test func publishRefusesASecondUpdateWhileOneIsInFlight() throws {
        let fleet = try FleetWorld()
        // A live registered factory that has not reported yet.
        let consumer = try fleet.consumer("f-1", ["--no-sync"])
        #expect(try fleet.waitUntilRegistered("f-1"))
        consumer.signal(SIGSTOP) // frozen: registered, but cannot act
        defer { consumer.signal(SIGCONT); consumer.stop() }
        let first = try fleet.publish(["update", "--target", "f-1"])
        let refused = try FactoryctlBinary.run(["publish", "update", "--target", "f-1"], environment: fleet.environment)
        #expect(refused.status == 8)
        #expect(refused.stderr.contains(first))
        let other = try FactoryctlBinary.run(["publish", "update", "--target", "f-9", "--allow-unregistered"],
                                             environment: fleet.environment)
        #expect(other.status == 0, "a different target is not blocked")
        let forced = try FactoryctlBinary.run(["publish", "update", "--target", "f-1", "--force"], environment: fleet.environment)
        #expect(forced.status == 0)
    }

    /// The group's `last-delivered-id` and pending count, from XINFO GROUPS.
    func group(_ fleet: FleetWorld, _ name: String) throws -> (lastDelivered: String, pending: Int)? {
        let lines = try fleet.redis.cli(["XINFO", "GROUPS", "ua:missions:delegation"]).split(separator: "\n").map(String.init)
        guard let at = lines.firstIndex(of: name) else { return nil }
        var last = "", pending = -1
        for index in stride(from: at + 1, to: lines.count - 1, by: 1) {
            if lines[index] == "name" { break }
            if lines[index] == "last-delivered-id" { last = lines[index + 1] }
            if lines[index] == "pending" { pending = Int(lines[index + 1]) ?? -1 }
        }
        return (last, pending)
    }

    @Test func aFactoryThatJoinsLaterSkipsOlderBroadcastsEvenFromAGroupMadeAtZeroAndRunsOnesNamingIt() throws {
        let fleet = try FleetWorld()
        let stream = "ua:missions:delegation"
        let before = try fleet.world.head(fleet.world.factory)
        let target = try fleet.world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        // Someone with stream access made f-1's group in advance, at the start of the stream, and
        // the fleet was sent a broadcast update, a glob update and a broadcast pause before f-1 came.
        try fleet.redis.cli(["XGROUP", "CREATE", stream, "factoryctl:f-1", "0", "MKSTREAM"])
        let broadcast = try fleet.publish(["update"])
        let glob = try fleet.publish(["update", "--target", "f-*", "--allow-unregistered", "--force"])
        let pause = try fleet.publish(["pause", "--target", "*"])
        let last = try fleet.redis.cli(["XREVRANGE", stream, "+", "-", "COUNT", "1"]).split(separator: "\n").first.map(String.init) ?? ""

        let consumer = try fleet.consumer("f-1")
        defer { consumer.stop() }
        #expect(try fleet.waitUntilRegistered("f-1"))
        // All three delivered to it and acked, none run.
        #expect(try eventually { try group(fleet, "factoryctl:f-1").map { $0.lastDelivered == last && $0.pending == 0 } == true },
                "\(consumer.output)")
        for job in [broadcast, glob, pause] {
            #expect(consumer.output.contains("skipping \(job)"), "\(consumer.output)")
            #expect(try fleet.results(job).isEmpty, "no result: the job never counted f-1")
        }
        #expect(try fleet.world.head(fleet.world.factory) == before)
        #expect(try fleet.registration("f-1")?["registration_status"] as? String == "online", "not paused")
        #expect(consumer.status == nil)
        #expect(FileManager.default.fileExists(atPath: fleet.world.factory + "/.git/factoryctl/joined.json"))

        // A mission naming it runs, however it was delivered.
        let named = try fleet.publish(["update", "--target", "f-1", "--force"])
        #expect(consumer.waitForExit(timeout: 30) == 10, "\(consumer.output)")
        #expect(try fleet.results(named).first?["status"] as? String == "SUCCESS")
        #expect(try fleet.world.head(fleet.world.factory) == target)
    }

    @Test func aFactoryThatRegistersAfterAFleetWideJobIsNeitherPendingNorInFlightForIt() throws {
        let fleet = try FleetWorld(factories: ["f-1", "f-2"])
        // f-1 is registered and live but cannot report: the fleet-wide job stays in flight for it.
        let one = try fleet.consumer("f-1", ["--no-sync"])
        #expect(try fleet.waitUntilRegistered("f-1"))
        one.signal(SIGSTOP)
        defer { one.signal(SIGCONT); one.stop() }
        let fleetWide = try fleet.publish(["update"])
        // f-2 joins afterwards.
        let two = try fleet.consumer("f-2", ["--no-sync"])
        defer { two.stop() }
        #expect(try fleet.waitUntilRegistered("f-2"))

        let job = JSONDoc.object(try FactoryctlBinary.run(["status", "--job", fleetWide, "--json"],
                                                          environment: fleet.environment), exit: 0)
        #expect(job["pending"] as? [String] == ["f-1"], "\(job)")
        #expect((job["meta"] as? [String: Any])?["factories"] as? [String] == ["f-1"], "\(job)")
        // An update for f-2 alone is not refused as in flight (it was exit 8 until the old job timed out).
        let forNew = try FactoryctlBinary.run(["publish", "update", "--target", "f-2", "--log-level", "error"],
                                              environment: fleet.environment)
        #expect(forNew.status == 0, "\(forNew.stderr)")
        // f-1 still has it in flight.
        let forOld = try FactoryctlBinary.run(["publish", "update", "--target", "f-1"], environment: fleet.environment)
        #expect(forOld.status == 8 && forOld.stderr.contains(fleetWide), "\(forOld.stderr)")
    }

    @Test func publishNeedsTheHeadquartersRole() throws {
        let fleet = try FleetWorld()
        var environment = fleet.environment
        environment["FACTORY_ROLE"] = "LOCAL_WORKER"
        let result = try FactoryctlBinary.run(["publish", "update"], environment: environment)
        #expect(result.status == 8)
        #expect(result.stderr.contains("delegation publish not allowed on this machine"))
        #expect(try fleet.redis.cli(["EXISTS", "ua:missions:delegation"]) == "0")
        #expect(try FactoryctlBinary.run(["publish", "update", "--branch", "-x"], environment: fleet.environment).status == 64)
        #expect(try FactoryctlBinary.run(["publish", "pause"], environment: fleet.environment).status == 64, "pause needs --target")
        let unreachable = try FactoryctlBinary.run(["publish", "update", "--redis-url", "unix:///nonexistent/redis.sock"],
                                                   environment: fleet.environment)
        #expect(unreachable.status == 7)
        #expect(unreachable.stderr.contains("cannot connect"))
        #expect(try FactoryctlBinary.run(["status", "--fleet", "--redis-url", "rediss://h:6379/x"],
                                         environment: fleet.environment).status == 64, "a bad Redis URL is a usage error")
    }

    @Test func pauseStopsUpdatesUntilResume() throws {
        let fleet = try FleetWorld()
        let consumer = try fleet.consumer("f-1")
        defer { consumer.stop() }
        #expect(try fleet.waitUntilRegistered("f-1"))
        let before = try fleet.world.head(fleet.world.factory)
        _ = try fleet.publish(["pause", "--target", "f-1"])
        #expect(try fleet.waitUntilRegistered("f-1", status: "paused"))
        try fleet.world.pushUpstream(["app.py": "print('v2')\n"], message: "Ship v2")
        let update = try fleet.publish(["update", "--target", "f-1"])
        // Received, and the consumer back in its loop (a heartbeat after it, still paused): had it
        // run the update, it would have registered "updating" and exited for the restart.
        #expect(eventually { consumer.output.contains("received \(update)") }, "\(consumer.output)")
        #expect(fleet.heardFrom("f-1", after: Date().timeIntervalSince1970, status: "paused"), "\(consumer.output)")
        #expect(try fleet.world.head(fleet.world.factory) == before, "no update while paused")
        #expect(try fleet.results(update).isEmpty)
        #expect(try fleet.registration("f-1")?["registration_status"] as? String == "paused", "registration continues")
        _ = try fleet.publish(["resume", "--target", "f-1"])
        #expect(consumer.waitForExit(timeout: 30) == 10)
        #expect(try fleet.results(update).first?["status"] as? String == "SUCCESS")
        #expect(try fleet.world.head(fleet.world.factory) == fleet.world.originHead())
    }

    @Test func consumerSurvivesARedisRestart() throws {
        let fleet = try FleetWorld()
        let consumer = try fleet.consumer("f-1")
        defer { consumer.stop() }
        #expect(try fleet.waitUntilRegistered("f-1"))
        fleet.redis.stop()
        // Failed to reach it and retried (a second failure), instead of exiting.
        #expect(eventually { consumer.redisFailures >= 2 }, "\(consumer.output)")
        #expect(consumer.status == nil, "no crash while Redis is down")
        try fleet.redis.start()
        #expect(try fleet.waitUntilRegistered("f-1"), "registers again after Redis returns")
        try fleet.world.pushUpstream(["app.py": "print('v2')\n"], message: "Ship v2")
        let job = try fleet.publish(["update"])
        #expect(consumer.waitForExit(timeout: 30) == 10)
        #expect(try fleet.results(job).first?["status"] as? String == "SUCCESS")
    }

    @Test func redisDownAtStartIsRetriedNotACrash() throws {
        let fleet = try FleetWorld()
        fleet.redis.stop()
        let consumer = try fleet.consumer("f-1")
        defer { consumer.stop() }
        // Failed to reach it and retried (a second failure), instead of exiting.
        #expect(eventually { consumer.redisFailures >= 2 }, "\(consumer.output)")
        #expect(consumer.status == nil)
        try fleet.redis.start()
        #expect(try fleet.waitUntilRegistered("f-1"))
    }

    @Test func sigtermWhenIdleExitsPromptlyWithZero() throws {
        let fleet = try FleetWorld()
        let consumer = try fleet.consumer("f-1")
        #expect(try fleet.waitUntilRegistered("f-1"))
        consumer.signal(SIGTERM)
        #expect(consumer.waitForExit(timeout: 5) == 0)
        #expect(try fleet.registration("f-1")?["registration_status"] as? String == "offline")
    }

    @Test func sigtermMidMissionNeverLeavesAHalfAppliedUpdate() throws {
        let fleet = try FleetWorld()
        var environment = fleet.environment
        environment["UA_FACTORY_SYNC_COMMAND"] = "sleep 2"
        let consumer = try fleet.consumer("f-1", environment: environment)
        defer { consumer.stop() }
        #expect(try fleet.waitUntilRegistered("f-1"))
        let before = try fleet.world.head(fleet.world.factory)
        let target = try fleet.world.pushUpstream(["app.py": "print('v2')\n"], message: "Ship v2")
        let job = try fleet.publish(["update"])
        // The checkout has moved and the sync runs: past the point where a stop can leave nothing changed.
        #expect(eventually { consumer.output.contains("running sleep 2") }, "\(consumer.output)")
        #expect(try fleet.world.head(fleet.world.factory) != before)
        consumer.signal(SIGTERM)
        // One stop request: the 2 s sync is well inside its grace period, so the update is finished
        // (synced, restarted, reported) and the consumer exits for the restart.
        #expect(consumer.waitForExit(timeout: 20) == 10, "\(consumer.output)")
        #expect(try fleet.world.head(fleet.world.factory) == target)
        #expect(try fleet.results(job).first?["status"] as? String == "SUCCESS", "the applied update is reported")
        #expect(FakeSystemctl.calls(fleet.world.systemctlState).contains("--user restart universal-agent-local-factory"))
        #expect(try fleet.world.git(["status", "--porcelain", "--untracked-files=no"], in: fleet.world.factory).isEmpty)
        #expect(try fleet.pending("f-1") == 0, "acked before exiting")
    }

    @Test func missionTimeoutIsTheDeadlineAndASyncPastItRollsBack() throws {
        let fleet = try FleetWorld()
        // A sync that hangs on the new code only; on the previous code (the rollback's re-sync) it is quick.
        let script = try fleet.world.script("slow-sync.sh", "grep -q v2 app.py && exec sleep 30\nexit 0\n")
        var environment = fleet.environment
        environment["UA_FACTORY_SYNC_COMMAND"] = script
        let consumer = try fleet.consumer("f-1", environment: environment)
        defer { consumer.stop() }
        #expect(try fleet.waitUntilRegistered("f-1"))
        let before = try fleet.world.head(fleet.world.factory)
        try fleet.world.pushUpstream(["app.py": "print('v2')\n"], message: "Ship v2")
        let job = try fleet.publish(["update", "--mission-timeout", "2"])
        #expect(try eventually(timeout: 30) { try fleet.results(job).count == 1 })
        let result = try fleet.results(job).first
        #expect(result?["status"] as? String == "FAILED")
        let details = result?["result"] as? [String: Any]
        #expect(details?["rolled_back"] as? Bool == true)
        #expect(details?["failure"] as? String == "sync_failed")
        #expect((result?["error"] as? String)?.contains("timed out") == true)
        #expect((result?["error"] as? String)?.contains("re-syncing") == false, "the previous environment was synced again")
        #expect(try fleet.world.head(fleet.world.factory) == before)
        #expect(consumer.status == nil, "a rolled-back update keeps the consumer running")
    }

    @Test func minimumIntervalDelaysTheNextUpdateInsteadOfDroppingIt() throws {
        let fleet = try FleetWorld()
        let supervisor = Supervisor()
        defer { supervisor.stopAll() }
        try supervisor.supervise("f-1") {
            try ConsumerProcess(binary: FactoryctlBinary.path, factoryID: "f-1", factoryDirectory: fleet.world.factory,
                                redisURL: fleet.redis.url, environment: fleet.environment,
                                extraArguments: ["--min-interval", "3", "--heartbeat", "1", "--no-sync"],
                                log: fleet.world.directory.join("consume.log"))
        }
        #expect(try fleet.waitUntilRegistered("f-1"))
        try fleet.world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        let first = try fleet.publish(["update"])
        #expect(try eventually { try fleet.results(first).count == 1 })
        try fleet.world.pushUpstream(["app.py": "print('v3')\n"], message: "v3")
        let second = try fleet.publish(["update", "--force"])
        #expect(try eventually(timeout: 30) { try fleet.results(second).first?["status"] as? String == "SUCCESS" })
        let history = UpdateHistory(gitDirectory: fleet.world.factory + "/.git").entries()
        try #require(history.count == 2)
        #expect(history[1].startedAt - (history[0].finishedAt ?? 0) >= 3, "second update started inside the interval")
    }

    @Test func fleetStatusMarksStaleFactories() throws {
        let fleet = try FleetWorld()
        let consumer = try fleet.consumer("f-1")
        defer { consumer.stop() }
        #expect(try fleet.waitUntilRegistered("f-1"))
        let old = #"{"factory_id":"gone-1","factory_role":"LOCAL_WORKER","deployment_profile":"x","registration_status":"online","capabilities":[],"metadata":{},"version":"0.1.0","pid":1,"host":"h","started_at":1,"last_seen_at":1}"#
        try fleet.redis.cli(["HSET", "factoryctl:registry", "gone-1", old])
        let text = try FactoryctlBinary.run(["status", "--fleet"], environment: fleet.environment).stdout
        let lines = text.split(separator: "\n")
        #expect(lines.first { $0.hasPrefix("gone-1") }?.contains("online (stale)") == true)
        #expect(lines.first { $0.hasPrefix("f-1") }?.contains("stale") == false)
        let object = try FactoryctlBinary.run(["status", "--fleet", "--json"], environment: fleet.environment).json()
        let json = object["factories"] as? [[String: Any]]
        #expect(json?.first { $0["factory_id"] as? String == "gone-1" }?["stale"] as? Bool == true)
        #expect(json?.first { $0["factory_id"] as? String == "f-1" }?["stale"] as? Bool == false)
    }

    @Test func statusJobShowsPerFactoryResultsAndPendingFactories() throws {
        let fleet = try FleetWorld(factories: ["f-1", "f-2"])
        let one = try fleet.consumer("f-1")
        let two = try fleet.consumer("f-2")
        #expect(try fleet.waitUntilRegistered("f-1") && fleet.waitUntilRegistered("f-2"))
        two.stop()
        try fleet.redis.cli(["HSET", "factoryctl:registry", "f-2", try fleet.redis.cli(["HGET", "factoryctl:registry", "f-2"])
            .replacingOccurrences(of: "\"registration_status\":\"offline\"", with: "\"registration_status\":\"online\"")])
        defer { one.stop() }
        let job = try fleet.publish(["update"]) // nothing new upstream: SUCCESS, changed false
        #expect(try eventually { try fleet.results(job).count == 1 })
        let text = try FactoryctlBinary.run(["status", "--job", job], environment: fleet.environment)
        #expect(text.stdout.contains("f-1") && text.stdout.contains("SUCCESS") && text.stdout.contains("up_to_date"))
        #expect(text.stdout.contains("f-2") && text.stdout.contains("PENDING"))
        #expect(one.status == nil, "an update that changed nothing keeps consuming")
        #expect(!FakeSystemctl.calls(fleet.world.systemctlState).contains { $0.contains(" restart ") }, "nothing restarted")
        #expect(try FactoryctlBinary.run(["status", "--job", "update-000000000000"], environment: fleet.environment).status == 1)
    }
}

extension ConsumerProcess {
    /// How many times the consumer logged that Redis could not be reached (each followed by a retry).
    var redisFailures: Int { output.components(separatedBy: "Redis unavailable").count - 1 }
}

@Suite struct ConsumerRedisFailureTests {
    @Test func resultLostToARedisOutageIsReportedWhenRedisReturnsThenTheConsumerRestarts() throws {
        let fleet = try FleetWorld()
        // The "sync" step takes Redis down (without saving), so the result cannot be written.
        let script = fleet.world.directory.join("sync-kills-redis.sh")
        try "#!/bin/sh\nredis-cli -s \(fleet.redis.socket) shutdown nosave >/dev/null 2>&1\nexit 0\n"
            .write(toFile: script, atomically: true, encoding: .utf8)
        chmod(script, 0o755)
        var environment = fleet.environment
        environment["UA_FACTORY_SYNC_COMMAND"] = script
        let consumer = try fleet.consumer("f-1", environment: environment)
        defer { consumer.stop() }
        #expect(try fleet.waitUntilRegistered("f-1"))
        let target = try fleet.world.pushUpstream(["app.py": "print('v2')\n"], message: "Ship v2")
        let job = try fleet.publish(["update"])
        #expect(eventually { consumer.output.contains("Redis unavailable") })
        fleet.redis.stop() // reap the server that shut itself down
        #expect(consumer.status == nil, "waits for Redis instead of exiting with the result unreported")
        try fleet.redis.start()
        #expect(consumer.waitForExit(timeout: 30) == 10)
        #expect(consumer.output.contains("reported \(job) after Redis came back"))
        #expect(try fleet.results(job).first?["status"] as? String == "SUCCESS")
        #expect(try fleet.world.head(fleet.world.factory) == target)
    }
}
