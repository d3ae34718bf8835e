import Foundation
import Testing
import TestSupport

/// Provisional updates (issue 20): the soak window after the restart, and quarantine of commits
/// that failed here. Real git, the fake systemctl (which can play a crashed unit), and a health
/// URL that turns bad on cue.
@Suite struct ProvisionalUpdateTests {
    static let service = "universal-agent-local-factory"

    func environment(_ world: GitWorld, _ health: HealthServer?) -> [String: String] {
        var env = world.environment
        if let health {
            env["UA_FACTORY_HEALTH_URL"] = health.url
            env["UA_FACTORY_HEALTH_TIMEOUT"] = "2"
        }
        return env
    }

    func journal(_ world: GitWorld) -> String {
        (try? String(contentsOfFile: world.factory + "/.git/factoryctl/journal.json", encoding: .utf8)) ?? ""
    }

    /// `update --restart --soak SECONDS` in the background; returns once it is soaking.
    func startSoaking(_ world: GitWorld, _ env: [String: String], seconds: Int) throws -> ConsumerProcess {
        let update = try ConsumerProcess(binary: FactoryctlBinary.path,
                                         arguments: ["update", "--factory-dir", world.factory, "--restart", "--settle", "0", "--no-sync",
                                                     "--soak", String(seconds), "--json"],
                                         environment: env, log: world.directory.join("update.log"))
        #expect(eventually(timeout: 30) { journal(world).contains("\"soaking\"") }, "never soaked: \(update.output)")
        return update
    }

    func report(_ update: ConsumerProcess) -> [String: Any] {
        let line = update.output.split(separator: "\n").first { $0.hasPrefix("{") }.map(String.init) ?? "{}"
        return (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] ?? [:]
    }

    @Test func aHealthySoakKeepsTheUpdateAndSaysItSoaked() throws {
        let world = try GitWorld()
        let health = try HealthServer()
        health.healthy(true)
        let target = try world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        let result = try FactoryctlBinary.run(["update", "--restart", "--settle", "0", "--no-sync", "--soak", "2", "--json"],
                                              factoryDir: world.factory, environment: environment(world, health))
        let object = try result.json()
        let head = try world.head(world.factory)
        #expect(result.status == 0 && object["soaked"] as? Bool == true && object["soak_seconds"] as? Double == 2 && head == target,
                "\(result.stdout) \(result.stderr)")
    }

    @Test func aHealthURLThatFailsMidSoakRevertsTheUpdateAndRestartsTheOldCode() throws {
        let world = try GitWorld()
        let health = try HealthServer()
        health.healthy(true)
        let before = try world.head(world.factory)
        let target = try world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        let update = try startSoaking(world, environment(world, health), seconds: 60)
        defer { update.stop() }
        health.healthy(false)
        let status = update.waitForExit(timeout: 60)
        let object = report(update)
        let restarts = FakeSystemctl.calls(world.systemctlState).filter { $0.hasPrefix("--user restart") }.count
        let head = try world.head(world.factory)
        #expect(status == 2 && object["failure"] as? String == "soak_failed" && object["attempted"] as? String == target
                && head == before && restarts == 2 && (object["error"] as? String ?? "").contains("failed 3 times in a row"),
                "exit \(String(describing: status)) \(update.output)")
    }

    @Test func aUnitThatCrashesMidSoakRevertsTheUpdate() throws {
        let world = try GitWorld()
        let before = try world.head(world.factory)
        try world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        let update = try startSoaking(world, environment(world, nil), seconds: 60)
        defer { update.stop() }
        // systemd restarted the crashed service on its own: a new main PID, NRestarts 1.
        try "1\n".write(toFile: world.systemctlState + "/\(Self.service).crashes", atomically: true, encoding: .utf8)
        let status = update.waitForExit(timeout: 60)
        let object = report(update)
        let head = try world.head(world.factory)
        #expect(status == 2 && object["failure"] as? String == "soak_failed" && head == before
                && (object["error"] as? String ?? "").contains("NRestarts 0 → 1"), "exit \(String(describing: status)) \(update.output)")
    }

    @Test func killedDuringTheSoakTheNextRunSoaksAgainAndRevertsWhenHealthIsBad() throws {
        let world = try GitWorld()
        let health = try HealthServer()
        health.healthy(true)
        let before = try world.head(world.factory)
        try world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        let env = environment(world, health)
        let update = try startSoaking(world, env, seconds: 60)
        update.signal(SIGKILL)
        _ = update.waitForExit(timeout: 30)
        health.healthy(false)
        // The next run resolves the provisional update first: soaked again, failed, undone; then
        // it plans as usual and finds the failed commit quarantined.
        let next = try FactoryctlBinary.run(["update", "--restart", "--settle", "0", "--no-sync", "--soak", "5", "--json"],
                                            factoryDir: world.factory, environment: env)
        let object = try next.json()
        let head = try world.head(world.factory)
        #expect((object["recovery"] as? String ?? "").contains("undid") && head == before && journal(world).isEmpty,
                "exit \(next.status) \(next.stdout) \(next.stderr)")
    }

    @Test func killedDuringAHealthySoakTheNextRunSoaksAgainAndKeepsIt() throws {
        let world = try GitWorld()
        let health = try HealthServer()
        health.healthy(true)
        let target = try world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        let env = environment(world, health)
        let update = try startSoaking(world, env, seconds: 4)
        update.signal(SIGKILL)
        _ = update.waitForExit(timeout: 30)
        // Without --restart or --soak: the record's own window (4 s) is soaked again.
        let next = try FactoryctlBinary.run(["update", "--no-sync", "--json"], factoryDir: world.factory, environment: env)
        let object = try next.json()
        let head = try world.head(world.factory)
        #expect(next.status == 0 && (object["recovery"] as? String ?? "").contains("soaked") && head == target && journal(world).isEmpty,
                "exit \(next.status) \(next.stdout) \(next.stderr)")
    }

    @Test func aQuarantinedCommitIsRefusedWithoutTouchingAnythingAndRetryMovesOnce() throws {
        let world = try GitWorld()
        let health = try HealthServer()
        health.healthy(false)
        let before = try world.head(world.factory)
        let target = try world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        let env = environment(world, health)
        let failed = try FactoryctlBinary.run(["update", "--restart", "--settle", "0", "--no-sync", "--json"], factoryDir: world.factory, environment: env)
        #expect(failed.status == 2, "\(failed.stdout)")
        health.healthy(true)
        let callsBefore = FakeSystemctl.calls(world.systemctlState).count
        let protected = world.protectedSnapshot()
        let refused = try FactoryctlBinary.run(["update", "--restart", "--settle", "0", "--no-sync", "--json"], factoryDir: world.factory, environment: env)
        let untouched = try world.head(world.factory) == before && world.protectedSnapshot() == protected
            && FakeSystemctl.calls(world.systemctlState).count == callsBefore + 1 // only the manager check
        let retried = try FactoryctlBinary.run(["update", "--restart", "--settle", "0", "--no-sync", "--retry-quarantined", "--json"],
                                               factoryDir: world.factory, environment: env)
        let head = try world.head(world.factory)
        let status = try FactoryctlBinary.run(["status", "--json"], factoryDir: world.factory, environment: env).json()
        let refusal = (try? refused.json())?["failure"] as? String
        #expect(refused.status == 8 && refusal == "quarantined"
                && refused.stdout.contains("health_check_failed") && untouched
                && retried.status == 0 && head == target && (status["quarantined"] as? [Any])?.isEmpty == true,
                "refused: \(refused.status) \(refused.stdout) retried: \(retried.status) \(retried.stderr) status \(status)")
    }

    @Test func aSyncThatCannotReachTheIndexDoesNotQuarantine() throws {
        let world = try GitWorld()
        let failing = try world.script("offline-sync", "echo 'Failed to fetch: index unreachable' >&2\nexit 2\n")
        try world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        var env = world.environment
        env["UA_FACTORY_SYNC_COMMAND"] = failing
        let failed = try FactoryctlBinary.run(["update", "--json"], factoryDir: world.factory, environment: env)
        let status = try FactoryctlBinary.run(["status", "--json"], factoryDir: world.factory, environment: env).json()
        #expect(failed.status != 0 && (status["quarantined"] as? [Any])?.isEmpty == true, "\(failed.stdout) \(status)")
    }

    /// Through a mission: HQ's --wait shows the soak, and the result comes only after it.
    @Test func aMissionsResultComesAfterTheSoakAndWaitShowsIt() throws {
        let fleet = try FleetWorld()
        var env = fleet.environment
        env["UA_FACTORY_SOAK_SECONDS"] = "3"
        let consumerEnvironment = env
        let supervisor = Supervisor()
        defer { supervisor.stopAll() }
        try supervisor.supervise("f-1") { try fleet.consumer("f-1", ["--no-sync", "--settle", "0"], environment: consumerEnvironment) }
        #expect(try fleet.waitUntilRegistered("f-1"))
        let target = try fleet.world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        let waited = try FactoryctlBinary.run(["publish", "update", "--target", "f-1", "--wait", "--timeout", "60"], environment: fleet.environment)
        let results = try fleet.results(waited.stdout.split(separator: "\n").first.map(String.init) ?? "")
        let result = results.first?["result"] as? [String: Any] ?? [:]
        let head = try fleet.world.head(fleet.world.factory)
        #expect(waited.status == 0 && waited.stderr.contains("f-1: soaking") && result["soaked"] as? Bool == true && head == target,
                "\(waited.stdout) \(waited.stderr) \(results)")
    }

    /// A soak that fails on the factory is a FAILED result (and a rollout would halt on it).
    @Test func aMissionWhoseSoakFailsIsFailedAndTheCommitIsQuarantinedThere() throws {
        let fleet = try FleetWorld()
        var env = fleet.environment
        env["UA_FACTORY_SOAK_SECONDS"] = "30"
        let consumerEnvironment = env
        let supervisor = Supervisor()
        defer { supervisor.stopAll() }
        try supervisor.supervise("f-1") { try fleet.consumer("f-1", ["--no-sync", "--settle", "0"], environment: consumerEnvironment) }
        #expect(try fleet.waitUntilRegistered("f-1"))
        let before = try fleet.world.head(fleet.world.factory)
        try fleet.world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        let job = try fleet.publish(["update", "--target", "f-1"])
        #expect(eventually(timeout: 30) { journal(fleet.world).contains("\"soaking\"") })
        try "2\n".write(toFile: fleet.world.systemctlState + "/\(Self.service).crashes", atomically: true, encoding: .utf8)
        #expect(eventually(timeout: 60) { (try? fleet.results(job))?.isEmpty == false })
        let result = try fleet.results(job).first ?? [:]
        let detail = result["result"] as? [String: Any] ?? [:]
        let status = try FactoryctlBinary.run(["status", "--json"], factoryDir: fleet.world.factory, environment: fleet.world.environment).json()
        let head = try fleet.world.head(fleet.world.factory)
        #expect(result["status"] as? String == "FAILED" && detail["failure"] as? String == "soak_failed" && head == before
                && (status["quarantined"] as? [Any])?.count == 1, "\(result) \(status)")
    }

    /// A commit that failed on the canary before is refused there (quarantined): the wave fails
    /// and the rollout halts, so the bad commit never reaches the next wave.
    @Test func aRolloutHaltsWhenTheCanaryHasTheCommitQuarantined() throws {
        let fleet = try FleetWorld(factories: ["f-1", "f-2"])
        let health = try HealthServer()
        health.healthy(false)
        let before = try fleet.world.head(fleet.world.factory)
        try fleet.world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        // v2 failed its health gate on f-1 once (an operator's update): quarantined there.
        let failed = try FactoryctlBinary.run(["update", "--restart", "--settle", "0", "--no-sync"],
                                              factoryDir: fleet.world.factory, environment: environment(fleet.world, health))
        #expect(failed.status == 2, "\(failed.stderr)")
        let supervisor = Supervisor()
        defer { supervisor.stopAll() }
        for id in ["f-1", "f-2"] { try supervisor.supervise(id) { try fleet.consumer(id, ["--no-sync", "--settle", "0"]) } }
        for id in ["f-1", "f-2"] { #expect(try fleet.waitUntilRegistered(id)) }
        var hq = fleet.environment
        hq["UA_FACTORY_REPO_URL"] = fleet.world.origin
        let result = try FactoryctlBinary.run(["publish", "update", "--canary", "1", "--batch", "1", "--json", "--log-level", "error"], environment: hq)
        let object = try result.json()
        let failures = (object["failures"] as? [[String: Any]]) ?? []
        let heads = try ["f-1", "f-2"].map { try fleet.world.head(fleet.factories[$0]!) }
        #expect(result.status == 1 && object["state"] as? String == "halted" && failures.compactMap { $0["factory_id"] as? String } == ["f-1"]
                && heads == [before, before], "\(result.stdout) \(result.stderr)")
    }

    // MARK: From the attack review

    /// An operator who edits and commits while the update soaks: the soak fails, and nothing of
    /// theirs is forced away (the update is not rolled back; exit 6, needs attention).
    @Test func workDoneDuringTheSoakIsNeverUndoneByItsFailure() throws {
        let world = try GitWorld()
        try world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        let update = try startSoaking(world, environment(world, nil), seconds: 60)
        defer { update.stop() }
        try world.write(world.factory, "app.py", "print('operator hotfix')\n")
        try world.git(["commit", "-qam", "operator hotfix"], in: world.factory)
        try world.write(world.factory, "README.md", "operator notes in a tracked file\n")
        try "1\n".write(toFile: world.systemctlState + "/\(Self.service).crashes", atomically: true, encoding: .utf8)
        let status = update.waitForExit(timeout: 60)
        let subject = try world.git(["log", "-1", "--format=%s"], in: world.factory).trimmingCharacters(in: .whitespacesAndNewlines)
        let readme = world.read(world.factory, "README.md")
        #expect(status == 6 && subject == "operator hotfix" && readme == "operator notes in a tracked file\n"
                && update.output.contains("NOT rolled back"), "exit \(String(describing: status)) \(update.output)")
    }

    /// With a local commit the target is a rebase made anew each run; the quarantine holds the
    /// upstream commit, so the second try is refused all the same.
    @Test func aFactoryWithLocalCommitsRefusesTheUpstreamCommitThatFailedThere() throws {
        let world = try GitWorld()
        try world.write(world.factory, "local.txt", "local tweak\n")
        try world.git(["add", "local.txt"], in: world.factory)
        try world.git(["commit", "-qm", "Local commit"], in: world.factory)
        let health = try HealthServer()
        health.healthy(false)
        let bad = try world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        let env = environment(world, health)
        let first = try FactoryctlBinary.run(["update", "--restart", "--settle", "0", "--no-sync"], factoryDir: world.factory, environment: env)
        health.healthy(true)
        let second = try FactoryctlBinary.run(["update", "--restart", "--settle", "0", "--no-sync", "--json"], factoryDir: world.factory, environment: env)
        #expect(first.status == 2 && second.status == 8 && second.stdout.contains(String(bad.prefix(7))), "\(first.stderr) \(second.stdout)")
    }

    /// A unit that crashed while factoryctl was dead (killed mid-soak) fails the soak run again on
    /// the same boot: it is compared with the runs recorded when the soak began.
    @Test func aCrashWhileFactoryctlWasDeadFailsTheSoakRunAgain() throws {
        let world = try GitWorld()
        let before = try world.head(world.factory)
        try world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        let env = environment(world, nil)
        let update = try startSoaking(world, env, seconds: 30)
        update.signal(SIGKILL)
        _ = update.waitForExit(timeout: 30)
        try "3\n".write(toFile: world.systemctlState + "/\(Self.service).crashes", atomically: true, encoding: .utf8)
        let next = try FactoryctlBinary.run(["update", "--no-sync", "--json"], factoryDir: world.factory, environment: env)
        let object = try next.json()
        let head = try world.head(world.factory)
        #expect((object["recovery"] as? String ?? "").contains("undid") && head == before, "exit \(next.status) \(next.stdout) \(next.stderr)")
    }

    /// A rollback whose soak fails is kept, not undone (that would bring back what it escaped),
    /// and the older commit it went back to is not quarantined.
    @Test func aRollbackWhoseSoakFailsIsKeptAndQuarantinesNothing() throws {
        let world = try GitWorld()
        let old = try world.head(world.factory)
        try world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        let env = environment(world, nil)
        #expect(try FactoryctlBinary.run(["update", "--no-sync"], factoryDir: world.factory, environment: env).status == 0)
        let rollback = try ConsumerProcess(binary: FactoryctlBinary.path,
                                           arguments: ["rollback", "--factory-dir", world.factory, "--settle", "0", "--no-sync", "--soak", "60", "--json"],
                                           environment: env, log: world.directory.join("rollback.log"))
        defer { rollback.stop() }
        #expect(eventually(timeout: 30) { journal(world).contains("\"soaking\"") }, "\(rollback.output)")
        try "1\n".write(toFile: world.systemctlState + "/\(Self.service).crashes", atomically: true, encoding: .utf8)
        let status = rollback.waitForExit(timeout: 60)
        let head = try world.head(world.factory)
        let quarantined = try FactoryctlBinary.run(["status", "--json"], factoryDir: world.factory, environment: env).json()["quarantined"] as? [Any]
        #expect(status == 6 && head == old && quarantined?.isEmpty == true, "exit \(String(describing: status)) \(rollback.output)")
    }

    @Test func anUnreadableQuarantineFileIsMovedAsideNotOverwritten() throws {
        let world = try GitWorld()
        try FileManager.default.createDirectory(atPath: world.factory + "/.git/factoryctl", withIntermediateDirectories: true)
        try "{ not json".write(toFile: world.factory + "/.git/factoryctl/quarantine.json", atomically: true, encoding: .utf8)
        try world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        let result = try FactoryctlBinary.run(["update", "--no-sync"], factoryDir: world.factory, environment: world.environment)
        let aside = world.read(world.factory, ".git/factoryctl/quarantine.json.corrupt")
        #expect(result.status == 0 && aside == "{ not json" && result.stderr.contains("could not be read"), "\(result.stderr)")
    }

    /// A consumer stopped during the soak (systemd's stop, twice: at once) reports nothing then;
    /// started again, it soaks the update again, keeps it, and answers the mission with that.
    @Test func aConsumerStoppedMidSoakAnswersTheMissionAfterItsNextStart() throws {
        let fleet = try FleetWorld()
        var env = fleet.environment
        env["UA_FACTORY_SOAK_SECONDS"] = "4"
        let consumerEnvironment = env
        let supervisor = Supervisor()
        defer { supervisor.stopAll() }
        try supervisor.supervise("f-1") { try fleet.consumer("f-1", ["--no-sync", "--settle", "0"], environment: consumerEnvironment) }
        #expect(try fleet.waitUntilRegistered("f-1"))
        let target = try fleet.world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        let job = try fleet.publish(["update", "--target", "f-1"])
        #expect(eventually(timeout: 30) { journal(fleet.world).contains("\"soaking\"") })
        let first = supervisor.process("f-1")
        first?.signal(SIGTERM)
        first?.signal(SIGTERM)
        #expect(eventually(timeout: 60) { (try? fleet.results(job))?.isEmpty == false })
        let result = try fleet.results(job).first ?? [:]
        let detail = result["result"] as? [String: Any] ?? [:]
        let head = try fleet.world.head(fleet.world.factory)
        #expect(result["status"] as? String == "SUCCESS" && detail["soaked"] as? Bool == true && head == target
                && supervisor.exitCodes("f-1").count >= 1, "\(result) exits \(supervisor.exitCodes("f-1"))")
    }
}
