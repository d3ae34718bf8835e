import FactoryKit
import RedisKit
import Foundation
import Testing
import TestSupport

/// Hung remotes, kills at bad moments, and what the next run makes of them. End to end, with the
/// built binary, real git and real uv.
@Suite struct HardeningTests {
    /// A sync command that runs `uv sync`, then stamps the commit the environment is for.
    func stampingSync(_ world: GitWorld, sleepFirst seconds: Int = 0) throws -> String {
        try world.script("stamp-sync-\(seconds)", """
        set -e
        sleep \(seconds)
        uv sync --offline --quiet
        git rev-parse HEAD > .venv/synced-commit

        """)
    }

    @Test(arguments: ["http", "ssh"])
    func aRemoteThatNeverAnswersEndsAtTheFetchTimeoutWithNothingChanged(scheme: String) throws {
        let world = try GitWorld()
        let silent = try SilentServer()
        try world.git(["remote", "set-url", "origin", "\(scheme)://git@127.0.0.1:\(silent.port)/factory.git"], in: world.factory)
        let before = try world.checkoutSnapshot()
        let protected = world.protectedSnapshot()
        let result = try FactoryctlBinary.run(["update", "--fetch-timeout", "1"], factoryDir: world.factory, environment: world.environment)
        #expect(result.status == 5, "\(result.stderr)")
        #expect(result.stderr.contains("made no progress for 1 s"), "\(result.stderr)")
        #expect(result.stderr.contains("Nothing was changed"))
        #expect(try world.checkoutSnapshot() == before)
        #expect(world.protectedSnapshot() == protected)
        // The lock was released: the next update gets as far as the fetch again (5, not 3).
        var env = world.environment
        env["FACTORYCTL_FETCH_TIMEOUT"] = "1"
        #expect(try FactoryctlBinary.run(["update"], factoryDir: world.factory, environment: env).status == 5)
        #expect(!FileManager.default.fileExists(atPath: world.factory + "/.git/factoryctl/journal.json"))
    }

    @Test(arguments: [SIGTERM, SIGINT])
    func aSignalEndsAHungFetchAndReleasesTheLock(signal: Int32) throws {
        let world = try GitWorld()
        let silent = try SilentServer()
        try world.git(["remote", "set-url", "origin", "http://127.0.0.1:\(silent.port)/factory.git"], in: world.factory)
        let before = try world.checkoutSnapshot()
        let update = try ConsumerProcess(binary: FactoryctlBinary.path, arguments: ["update", "--factory-dir", world.factory],
                                         environment: world.environment, log: world.directory.join("update.log"))
        defer { update.stop() }
        #expect(eventually(timeout: 20) { update.output.contains("fetching origin") })
        // The helper is connected and waiting on the silent remote.
        #expect(eventually(timeout: 20) { (try? Command.run(["pgrep", "-f", "fetch-helper --git-dir \(world.factory)"]).status) == 0 })
        update.signal(signal)
        let status = update.waitForExit(timeout: 10)
        #expect(status == 1, "\(update.output)")
        #expect(update.output.contains("the fetch was cancelled; nothing was changed"))
        #expect(try Command.run(["pgrep", "-f", "fetch-helper --git-dir \(world.factory)"]).status == 1, "no helper left")
        #expect(try world.checkoutSnapshot() == before)
        try world.git(["remote", "set-url", "origin", world.origin], in: world.factory)
        #expect(try FactoryctlBinary.run(["update", "--no-sync"],
                                         factoryDir: world.factory, environment: world.environment).status == 0, "the lock is free")
    }

    @Test func aFetchHelperDiesWithAKilledUpdate() throws {
        let world = try GitWorld()
        let silent = try SilentServer()
        try world.git(["remote", "set-url", "origin", "ssh://git@127.0.0.1:\(silent.port)/factory.git"], in: world.factory)
        let update = try ConsumerProcess(binary: FactoryctlBinary.path, arguments: ["update", "--factory-dir", world.factory],
                                         environment: world.environment, log: world.directory.join("update.log"))
        defer { update.stop() }
        let helper = ["pgrep", "-f", "fetch-helper --git-dir \(world.factory)"]
        #expect(eventually(timeout: 20) { (try? Command.run(helper).status) == 0 })
        update.signal(SIGKILL)
        _ = update.waitForExit(timeout: 10)
        #expect(eventually(timeout: 5) { (try? Command.run(helper).status) == 1 }, "the helper went with its parent")
        try world.git(["remote", "set-url", "origin", world.origin], in: world.factory)
        let target = try world.pushUpstream(["app.py": "print('v2')\n"], message: "Ship v2")
        let next = try FactoryctlBinary.run(["update", "--no-sync"], factoryDir: world.factory, environment: world.environment)
        #expect(next.status == 0, "\(next.stderr)")
        #expect(next.stdout.contains("was killed while fetching; nothing to undo"), "\(next.stdout)")
        #expect(try world.head(world.factory) == target)
    }

    @Test func theMissionDeadlineEndsAHungFetchAndTheConsumerCarriesOn() throws {
        let fleet = try FleetWorld()
        let silent = try SilentServer()
        let factory = fleet.world.factory
        try fleet.world.git(["remote", "set-url", "origin", "http://127.0.0.1:\(silent.port)/factory.git"], in: factory)
        let consumer = try fleet.consumer("f-1")
        defer { consumer.stop() }
        #expect(try fleet.waitUntilRegistered("f-1"))
        let before = try fleet.world.checkoutSnapshot()
        let job = try fleet.publish(["update", "--target", "f-1", "--mission-timeout", "2"])
        #expect(eventually(timeout: 30) { ((try? fleet.results(job)) ?? []).count == 1 }, "\(consumer.output)")
        let result = try fleet.results(job).first
        #expect(result?["status"] as? String == "FAILED")
        #expect((result?["result"] as? [String: Any])?["failure"] as? String == "cancelled")
        #expect((result?["error"] as? String)?.contains("deadline passed during the fetch") == true, "\(String(describing: result))")
        #expect(try fleet.world.checkoutSnapshot() == before)
        #expect(consumer.status == nil, "the consumer carries on")
        #expect(try Command.run(["pgrep", "-f", "fetch-helper --git-dir \(factory)"]).status == 1, "no helper left")
        // The lock is free and the consumer healthy: with the remote back, the next mission runs.
        try fleet.world.git(["remote", "set-url", "origin", fleet.world.origin], in: factory)
        let target = try fleet.world.pushUpstream(["app.py": "print('v2')\n"], message: "Ship v2")
        _ = try fleet.publish(["update", "--target", "f-1"])
        #expect(consumer.waitForExit(timeout: 60) == 10, "\(consumer.output)")
        #expect(try fleet.world.head(factory) == target)
    }

    @Test func aKillDuringTheSyncIsUndoneAndTheNextUpdateSyncsForItsCommit() throws {
        let world = try GitWorld()
        let slow = try stampingSync(world, sleepFirst: 30)
        let target = try world.pushUpstream(["app.py": "print('v2')\n", "added.py": "x = 1\n"], message: "Ship v2")
        let before = try world.head(world.factory)
        var env = world.environment
        env["UA_FACTORY_SYNC_COMMAND"] = slow
        let update = try ConsumerProcess(binary: FactoryctlBinary.path, arguments: ["update", "--factory-dir", world.factory],
                                         environment: env, log: world.directory.join("update.log"))
        let journal = world.factory + "/.git/factoryctl/journal.json"
        #expect(eventually(timeout: 30) {
            (FileManager.default.contents(atPath: journal).flatMap { String(data: $0, encoding: .utf8) } ?? "").contains("child_group")
        })
        update.signal(SIGKILL)
        _ = update.waitForExit(timeout: 10)
        // The state the old pipeline left: new commit, environment of the old one, sync still running.
        #expect(try world.head(world.factory) == target)
        #expect(try Command.run(["pgrep", "-f", slow]).status == 0, "the orphaned sync is still running")
        env["UA_FACTORY_SYNC_COMMAND"] = try stampingSync(world)
        let next = try FactoryctlBinary.run(["update", "--json"], factoryDir: world.factory, environment: env)
        #expect(next.status == 0, "\(next.stderr)")
        let object = try next.json()
        #expect((object["recovery"] as? String)?.contains("interrupted during syncing") == true, "\(next.stdout)")
        #expect(object["from"] as? String == before)
        #expect(object["to"] as? String == target)
        #expect(object["changed"] as? Bool == true)
        #expect(world.read(world.factory, ".venv/synced-commit")?.trimmingCharacters(in: .whitespacesAndNewlines) == target)
        #expect(eventually(timeout: 5) { (try? Command.run(["pgrep", "-f", slow]).status) == 1 }, "the orphaned sync was ended")
        #expect(!FileManager.default.fileExists(atPath: journal))
        #expect(try world.git(["status", "--porcelain", "--untracked-files=no"], in: world.factory).isEmpty)
    }

    @Test func killsAtSpreadMomentsNeverLeaveACheckoutTheNextUpdateRefuses() throws {
        let world = try GitWorld()
        let sync = try stampingSync(world)
        var env = world.environment
        env["UA_FACTORY_SYNC_COMMAND"] = sync
        _ = try world.commit(in: world.factory, ["local.txt": "mine\n"], message: "Local commit")
        let protected = world.protectedSnapshot()
        let journal = world.factory + "/.git/factoryctl/journal.json"
        for round in 0..<8 {
            var files: [String: String] = [:]
            for k in 0..<20 { files["data-\(k % 7).txt"] = "round \(round) change \(k)\n" }
            files["new-\(round).txt"] = "added in round \(round)\n"
            _ = try world.pushUpstream(files, message: "Round \(round)")
            let update = try ConsumerProcess(binary: FactoryctlBinary.path, arguments: ["update", "--factory-dir", world.factory],
                                             environment: env, log: world.directory.join("kill-\(round).log"))
            // The moment under test, not a wait for something: round r kills r × 35 ms after the
            // start (0 to 245 ms), the same moments on every run.
            let moment = Double(round) * 0.035
            Thread.sleep(forTimeInterval: moment)
            update.signal(SIGKILL)
            try #require(update.waitForExit(timeout: 10) != nil, "round \(round): the killed update is gone")
            // Whatever the kill interrupted, the next update repairs exactly what it left: a record
            // means a repair first (said on stdout), no record means none.
            let recordLeft = FileManager.default.fileExists(atPath: journal)
            let next = try FactoryctlBinary.run(["update"], factoryDir: world.factory, environment: env)
            #expect(next.status == 0, "round \(round): \(next.stderr)")
            #expect(next.stdout.contains("Recovered first") == recordLeft,
                    "round \(round), killed at \(moment) s, record left: \(recordLeft): \(next.stdout)")
            #expect(!FileManager.default.fileExists(atPath: journal), "round \(round): the record is gone")
            let head = try world.head(world.factory)
            #expect(try world.git(["rev-parse", "HEAD~1"], in: world.factory).trimmingCharacters(in: .whitespacesAndNewlines)
                    == (try world.originHead()), "round \(round): the local commit sits on top of origin/main")
            #expect(world.read(world.factory, ".venv/synced-commit")?.trimmingCharacters(in: .whitespacesAndNewlines) == head,
                    "round \(round): environment synced for HEAD")
            #expect(try world.git(["status", "--porcelain", "--untracked-files=no"], in: world.factory).isEmpty, "round \(round)")
            #expect(world.protectedSnapshot() == protected, "round \(round)")
        }
    }

    @Test func lockFilesAKilledFetchLeftAreRemovedOnlyWhenOursAndNamedOtherwise() throws {
        let world = try GitWorld()
        let target = try world.pushUpstream(["app.py": "print('v2')\n"], message: "Ship v2")
        let lock = world.factory + "/.git/refs/remotes/origin/main.lock"
        // Someone else's lock (no record of ours): left alone, and the message says what it is.
        try Data("junk".utf8).write(to: URL(fileURLWithPath: lock))
        let blocked = try FactoryctlBinary.run(["update", "--no-sync"], factoryDir: world.factory, environment: world.environment)
        #expect(blocked.status == 5)
        #expect(blocked.stderr.contains("main.lock"), "\(blocked.stderr)")
        #expect(FileManager.default.fileExists(atPath: lock))
        // Left by a factoryctl fetch that died (its record says so): removed with a notice.
        try FileManager.default.createDirectory(atPath: world.factory + "/.git/factoryctl", withIntermediateDirectories: true)
        try Data(#"{"branch":"main","phase":"fetch","pid":999999,"started_at":1}"#.utf8)
            .write(to: URL(fileURLWithPath: world.factory + "/.git/factoryctl/journal.json"))
        let result = try FactoryctlBinary.run(["update", "--no-sync"], factoryDir: world.factory, environment: world.environment)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("removed stale lock files it left: refs/remotes/origin/main.lock"), "\(result.stdout)")
        #expect(try world.head(world.factory) == target)
    }
}

/// Redis-side hardening: least-privilege ACL users, atomic publish, heartbeats during updates,
/// saved pause state, hostile stream entries. Real redis-server and consumer processes.
@Suite struct RedisHardeningTests {
    @Test func aFactoryACLUserConsumesButCannotAddMissions() throws {
        let world = try GitWorld()
        let redis = try RedisServer(password: "change-me-hq", aclFile: Package.root + "/deploy/redis-users.acl", user: "hq")
        let hqURL = "unix://hq:change-me-hq@\(redis.socket)"
        let factoryURL = "unix://factory:change-me-factory@\(redis.socket)"
        var hq = world.environment
        hq["FACTORY_ROLE"] = "HEADQUARTERS"
        hq["UA_REDIS_URL"] = hqURL
        var factory = hq
        factory["UA_REDIS_URL"] = factoryURL

        // The factory user may not add missions, neither by hand nor through publish.
        let xadd = try Command.run(["redis-cli", "-s", redis.socket, "--no-auth-warning", "--user", "factory",
                                    "--pass", "change-me-factory", "XADD", "ua:missions:delegation", "*", "job_id", "x"])
        #expect(xadd.stdout.contains("NOPERM"), "\(xadd.stdout)")
        // Not through a script either, whatever keys the script declares: declaring the stream, the
        // XADD is refused (the factory user only reads it); declaring another key, the script may
        // not reach the stream at all.
        for (keys, refusal) in [("ua:missions:delegation", "NOPERM"), ("ua:missions:delegation:results", "can't access")] {
            let script = try Command.run(["redis-cli", "-s", redis.socket, "--no-auth-warning", "--user", "factory",
                                          "--pass", "change-me-factory", "EVAL",
                                          "return redis.call('XADD', 'ua:missions:delegation', '*', 'job_id', 'x')", "1", keys])
            #expect(script.stdout.contains(refusal), "\(keys): \(script.stdout)")
        }
        let sneaky = try FactoryctlBinary.run(["publish", "update", "--force"], environment: factory)
        #expect(sneaky.status == 1, "\(sneaky.stderr)")
        #expect(sneaky.stderr.contains("NOPERM"), "\(sneaky.stderr)")
        #expect(try redis.cli(["XLEN", "ua:missions:delegation"]) == "0")
        #expect(try redis.cli(["PING"]) == "PONG")
        let anonymous = try Command.run(["redis-cli", "-s", redis.socket, "PING"])
        #expect(anonymous.stdout.contains("NOAUTH"), "the default user is off")

        // A consumer logged in as the factory user runs what HQ publishes and reports it.
        let consumer = try ConsumerProcess(binary: FactoryctlBinary.path, factoryID: "f-1", factoryDirectory: world.factory,
                                           redisURL: factoryURL, environment: factory,
                                           extraArguments: ["--min-interval", "0", "--heartbeat", "1"],
                                           log: world.directory.join("consume.log"))
        defer { consumer.stop() }
        #expect(eventually { (try? redis.cli(["HGET", "factoryctl:registry", "f-1"]))?.contains("online") == true }, "\(consumer.output)")
        try redis.cli(["XADD", "ua:missions:delegation", "*", "job_id", "junk", "envelope", "{not json"])
        let target = try world.pushUpstream(["app.py": "print('v2')\n"], message: "Ship v2")
        let published = try FactoryctlBinary.run(["publish", "update", "--target", "f-1", "--log-level", "error"], environment: hq)
        #expect(published.status == 0, "\(published.stderr)")
        #expect(consumer.waitForExit(timeout: 60) == 10, "\(consumer.output)")
        #expect(try world.head(world.factory) == target)
        let job = published.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let status = try FactoryctlBinary.run(["status", "--job", job, "--json"], environment: hq)
        #expect(status.stdout.contains("\"SUCCESS\""), "\(status.stdout)")
        #expect(try redis.cli(["XLEN", "ua:missions:dlq"]) == "1", "the factory user wrote the dead letter")
        #expect(!consumer.output.contains("NOPERM"), "\(consumer.output)")

        // A staged rollout as the hq user: its records (rollout, active, recent) are all within
        // what the ACL grants, and the factory user's consumer runs its wave.
        // Supervised: a wave is done only once the consumer is back (restarted) on the new commit.
        let supervisor = Supervisor()
        defer { supervisor.stopAll() }
        let consumerEnvironment = factory
        try supervisor.supervise("f-1") {
            try ConsumerProcess(binary: FactoryctlBinary.path, factoryID: "f-1", factoryDirectory: world.factory,
                                redisURL: factoryURL, environment: consumerEnvironment,
                                extraArguments: ["--min-interval", "0", "--heartbeat", "1"],
                                log: world.directory.join("consume-2.log"))
        }
        #expect(eventually { (try? redis.cli(["HGET", "factoryctl:registry", "f-1"]))?.contains(target) == true })
        let next = try world.pushUpstream(["app.py": "print('v3')\n"], message: "Ship v3")
        let rollout = try FactoryctlBinary.run(["publish", "update", "--canary", "1", "--commit", next, "--json",
                                                "--wave-timeout", "60", "--log-level", "error"],
                                               environment: hq)
        #expect(rollout.status == 0 && rollout.stdout.contains("\"state\":\"succeeded\""), "\(rollout.stdout) \(rollout.stderr)")
        #expect(!rollout.stderr.contains("NOPERM"))
        #expect(try world.head(world.factory) == next)
    }

    @Test func aFailedXADDLeavesNoPhantomJobInFlight() throws {
        let fleet = try FleetWorld()
        try fleet.redis.cli(["SET", "ua:missions:delegation", "not a stream"])
        let failed = try FactoryctlBinary.run(["publish", "update", "--target", "f-1", "--allow-unregistered"],
                                              environment: fleet.environment)
        #expect(failed.status == 1, "\(failed.stderr)")
        #expect(failed.stderr.contains("WRONGTYPE"), "\(failed.stderr)")
        #expect(try fleet.redis.cli(["EXISTS", "factoryctl:inflight"]) == "0")
        #expect(try fleet.redis.cli(["KEYS", "factoryctl:job:*"]).isEmpty)
        try fleet.redis.cli(["DEL", "ua:missions:delegation"])
        // A live registration for f-1, so an in-flight job would block this publish.
        try fleet.redis.cli(["HSET", "factoryctl:registry", "f-1", #"{"factory_id": "f-1", "factory_role": "LOCAL_WORKER", "registration_status": "online", "last_seen_at": \#(Date().timeIntervalSince1970)}"#])
        #expect(try FactoryctlBinary.run(["publish", "update", "--target", "f-1"],
                                         environment: fleet.environment).status == 0, "not refused as in flight")
        #expect(try fleet.redis.cli(["XLEN", "ua:missions:delegation"]) == "1")
    }

    @Test func theRegistryHearsFromAFactoryDuringALongUpdate() throws {
        let fleet = try FleetWorld()
        let script = try fleet.world.script("slow-sync", "sleep 4\nexec uv sync --offline --quiet\n")
        var env = fleet.environment
        env["UA_FACTORY_SYNC_COMMAND"] = script
        let consumer = try fleet.consumer("f-1", environment: env)
        defer { consumer.stop() }
        #expect(try fleet.waitUntilRegistered("f-1"))
        try fleet.world.pushUpstream(["app.py": "print('v2')\n"], message: "Ship v2")
        _ = try fleet.publish(["update"])
        #expect(try fleet.waitUntilRegistered("f-1", status: "updating"))
        let first = try fleet.registration("f-1")?["last_seen_at"] as? Double ?? 0
        #expect(eventually(timeout: 10) {
            let row = try? fleet.registration("f-1")
            return row?["registration_status"] as? String == "updating" && (row?["last_seen_at"] as? Double ?? 0) > first + 1
        }, "last_seen_at advances while the sync runs")
        #expect(consumer.waitForExit(timeout: 60) == 10)
    }

    @Test func aPauseThatCannotBeSavedIsReportedFailed() throws {
        let fleet = try FleetWorld()
        // The state file's place is taken by a directory: the write fails.
        try FileManager.default.createDirectory(atPath: fleet.world.factory + "/.git/factoryctl/consumer.json/x",
                                                withIntermediateDirectories: true)
        let consumer = try fleet.consumer("f-1")
        defer { consumer.stop() }
        #expect(try fleet.waitUntilRegistered("f-1"))
        let job = try fleet.publish(["pause", "--target", "f-1"])
        #expect(eventually { ((try? fleet.results(job)) ?? []).count == 1 })
        let result = try fleet.results(job).first
        #expect(result?["status"] as? String == "FAILED")
        #expect((result?["error"] as? String)?.contains("could not save the pause") == true, "\(String(describing: result))")
        #expect(try fleet.registration("f-1")?["registration_status"] as? String == "online")
    }

    @Test func entriesThatAreNotUTF8OrTooLargeAreDeadLetteredUnparsed() throws {
        let fleet = try FleetWorld()
        let consumer = try fleet.consumer("f-1")
        defer { consumer.stop() }
        #expect(try fleet.waitUntilRegistered("f-1"))
        let before = try fleet.world.head(fleet.world.factory)
        try fleet.world.pushUpstream(["app.py": "print('v2')\n"], message: "Ship v2")
        // A valid envelope whose branch is \xff\xfe, written byte for byte.
        let envelope = Mission.make(kind: .update, target: .all, branch: "PLACEHOLDER").envelope.json.pythonJSON
        let parts = envelope.components(separatedBy: "PLACEHOLDER")
        let bad = Data(parts[0].utf8) + Data([0xFF, 0xFE]) + Data(parts[1].utf8)
        let client = RedisClient(url: try RedisURL(fleet.redis.url))
        try client.command([Data("XADD".utf8), Data("ua:missions:delegation".utf8), Data("*".utf8),
                            Data("job_id".utf8), Data("update-0000000000ff".utf8), Data("envelope".utf8), bad])
        try client.command(["XADD", "ua:missions:delegation", "*", "job_id", "update-big", "envelope",
                            String(repeating: "x", count: 1 << 20)])
        #expect(eventually { (try? fleet.redis.cli(["XLEN", "ua:missions:dlq"])) == "2" }, "\(consumer.output)")
        let dead = try fleet.redis.cli(["XRANGE", "ua:missions:dlq", "-", "+"])
        #expect(dead.contains("is not valid UTF-8"))
        #expect(dead.contains("bytes (the limit is 65536)"))
        #expect(try fleet.world.head(fleet.world.factory) == before, "nothing ran")
        #expect(consumer.status == nil, "the consumer lives")
        #expect(try fleet.pending("f-1") == 0)
    }
}
