import Foundation
import Testing
import TestSupport

/// When updates may run: maintenance windows (`UA_FACTORY_UPDATE_WINDOW`) on real consumers, and
/// the app's update lock (`UA_FACTORY_UPDATE_LOCK`) held by a real process, with real git, uv and
/// redis-server. The consumers run in Europe/Berlin (`TZ`); the windows are written in its
/// wall-clock time (Foundation's zone database as the oracle), with seconds, so a window can
/// open a few seconds ahead.
@Suite struct MaintenanceWindowTests {
    static let zone = "Europe/Berlin"

    /// `HH:MM:SS` in Berlin at `instant`.
    static func berlinTime(_ instant: Double) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: zone)!
        let parts = calendar.dateComponents([.hour, .minute, .second], from: Date(timeIntervalSince1970: instant))
        return String(format: "%02d:%02d:%02d", parts.hour!, parts.minute!, parts.second!)
    }

    /// A window from `start` for an hour, every day.
    static func window(opening start: Double) -> String { "\(berlinTime(start))-\(berlinTime(start + 3600))" }

    func factoryEnvironment(_ fleet: FleetWorld, _ extra: [String: String]) -> [String: String] {
        var env = fleet.environment
        env["TZ"] = Self.zone
        env.merge(extra) { $1 }
        return env
    }

    /// A process holding `path`'s flock until it is ended (by pid).
    func holdLock(_ path: String, _ fleet: FleetWorld) throws -> ConsumerProcess {
        // SIGTERM (from `stop()`) lets go of the lock and ends it; the test runner's signal mask
        // and dispositions are not inherited.
        let script = """
            import fcntl, signal, sys
            def release(*_):
                fcntl.flock(f, fcntl.LOCK_UN)
                sys.exit(0)
            signal.signal(signal.SIGTERM, release)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGTERM])
            f = open(sys.argv[1], 'a')
            fcntl.flock(f, fcntl.LOCK_EX)
            print('held', flush=True)
            while True:
                signal.pause()
            """
        let holder = try ConsumerProcess(binary: "/usr/bin/python3", arguments: ["-c", script, path], environment: [:],
                                         log: fleet.world.directory.join("holder.log"))
        #expect(eventually { holder.output.contains("held") }, "the holder did not take the lock: \(holder.output)")
        return holder
    }

    @Test func aWindowThatExcludesNowDefersTheMissionWithNothingChanged() throws {
        let fleet = try FleetWorld()
        let now = Date().timeIntervalSince1970
        let consumer = try fleet.consumer("f-1", environment: factoryEnvironment(fleet, ["UA_FACTORY_UPDATE_WINDOW": Self.window(opening: now + 7200)]))
        defer { consumer.stop() }
        #expect(try fleet.waitUntilRegistered("f-1"))
        let before = try fleet.world.head(fleet.factories["f-1"]!)
        try fleet.world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        let result = try FactoryctlBinary.run(["publish", "update", "--mission-timeout", "86400", "--wait", "--timeout", "4", "--json",
                                               "--log-level", "error"], environment: fleet.environment)
        let summary = JSONDoc.object(result, exit: 9)
        let said = (summary["deferred"] as? [String: String])?["f-1"] ?? ""
        let metadata = try fleet.registration("f-1")?["metadata"] as? [String: Any] ?? [:]
        // Deferred: no result (neither SUCCESS nor FAILED), still pending, HEAD where it was.
        #expect(try said.hasPrefix("deferred until ") && said.contains("maintenance window")
                && (summary["results"] as? [Any])?.isEmpty == true
                && metadata["deferred_job_id"] as? String == summary["job_id"] as? String
                && metadata["deferred_reason"] as? String == "window"
                && (fleet.pending("f-1")) == 1 && (fleet.world.head(fleet.factories["f-1"]!)) == before,
                "\(result.stdout) \(result.stderr) \(metadata) \(consumer.output)")
    }

    @Test func aWindowThatOpensSecondsLaterRunsTheMissionWhenItOpens() throws {
        let fleet = try FleetWorld()
        let opening = (Date().timeIntervalSince1970 + 6).rounded(.down)
        let env = factoryEnvironment(fleet, ["UA_FACTORY_UPDATE_WINDOW": Self.window(opening: opening)])
        // Supervised: it exits after the update and comes back on the new commit, as under systemd.
        let supervisor = Supervisor()
        defer { supervisor.stopAll() }
        try supervisor.supervise("f-1") { try fleet.consumer("f-1", environment: env) }
        #expect(try fleet.waitUntilRegistered("f-1"))
        let target = try fleet.world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        let result = try FactoryctlBinary.run(["publish", "update", "--mission-timeout", "600", "--wait", "--timeout", "60",
                                               "--log-level", "error"], environment: fleet.environment)
        let job = result.stdout.split(separator: "\n").first.map(String.init) ?? ""
        let detail = try fleet.results(job).first?["result"] as? [String: Any] ?? [:]
        let started = (detail["finished_at"] as? Double ?? 0) - Double(detail["duration_ms"] as? Int ?? 0) / 1000
        // Said it deferred, then ran once the window opened.
        #expect(try result.status == 0 && result.stderr.contains("f-1: deferred until ") && started >= opening - 0.05
                && (fleet.world.head(fleet.factories["f-1"]!)) == target,
                "started \(started), opening \(opening): \(result.stdout) \(result.stderr)")
    }

    @Test func publishIgnoreWindowRunsTheMissionNow() throws {
        let fleet = try FleetWorld()
        let now = Date().timeIntervalSince1970
        let env = factoryEnvironment(fleet, ["UA_FACTORY_UPDATE_WINDOW": Self.window(opening: now + 7200)])
        let supervisor = Supervisor()
        defer { supervisor.stopAll() }
        try supervisor.supervise("f-1") { try fleet.consumer("f-1", environment: env) }
        #expect(try fleet.waitUntilRegistered("f-1"))
        let target = try fleet.world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        let result = try FactoryctlBinary.run(["publish", "update", "--ignore-window", "--wait", "--timeout", "60", "--json",
                                               "--log-level", "error"], environment: fleet.environment)
        let summary = JSONDoc.object(result, exit: 0)
        #expect(try summary["all_succeeded"] as? Bool == true && (fleet.world.head(fleet.factories["f-1"]!)) == target,
                "\(result.stdout) \(result.stderr)")
    }

    @Test func aMissionThatCannotRunBeforeItExpiresIsReportedAtOnceNotRun() throws {
        let fleet = try FleetWorld()
        let now = Date().timeIntervalSince1970
        let consumer = try fleet.consumer("f-1", environment: factoryEnvironment(fleet, ["UA_FACTORY_UPDATE_WINDOW": Self.window(opening: now + 7200)]))
        defer { consumer.stop() }
        #expect(try fleet.waitUntilRegistered("f-1"))
        let before = try fleet.world.head(fleet.factories["f-1"]!)
        try fleet.world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        // The default mission timeout (300 s) ends long before the window opens in two hours.
        let result = try FactoryctlBinary.run(["publish", "update", "--wait", "--timeout", "30", "--json", "--log-level", "error"],
                                              environment: fleet.environment)
        let summary = JSONDoc.object(result, exit: 1)
        let first = (summary["results"] as? [[String: Any]])?.first
        let detail = first?["result"] as? [String: Any] ?? [:]
        #expect(try detail["failure"] as? String == "outside_window" && detail["outcome"] as? String == "expired"
                && (first?["error"] as? String ?? "").contains("--ignore-window")
                && (fleet.pending("f-1")) == 0 && (fleet.world.head(fleet.factories["f-1"]!)) == before,
                "\(result.stdout) \(result.stderr)")
    }

    /// f-1 and f-2 consuming, f-2's window opening 15 s from now; v2 pushed; HQ's environment.
    private func twoFactoriesOneWindowed() throws -> (FleetWorld, Supervisor, Double, String, [String: String]) {
        let fleet = try FleetWorld(factories: ["f-1", "f-2"])
        let opening = (Date().timeIntervalSince1970 + 15).rounded(.down)
        let supervisor = Supervisor()
        for id in ["f-1", "f-2"] {
            let env = factoryEnvironment(fleet, id == "f-2" ? ["UA_FACTORY_UPDATE_WINDOW": Self.window(opening: opening)] : [:])
            try supervisor.supervise(id) { try fleet.consumer(id, environment: env) }
            #expect(try fleet.waitUntilRegistered(id))
        }
        let target = try fleet.world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        var hq = fleet.environment
        hq["UA_FACTORY_REPO_URL"] = fleet.world.origin
        return (fleet, supervisor, opening, target, hq)
    }

    /// One wave of two: f-2's window opens after the wave timeout would have run out. Deferred is
    /// neither a success nor a failure: the wave waits for the window and then succeeds.
    @Test func aRolloutWaitsForAMembersWindowInsteadOfTimingOut() throws {
        let (fleet, supervisor, _, target, hq) = try twoFactoriesOneWindowed()
        defer { supervisor.stopAll() }
        let result = try FactoryctlBinary.run(["publish", "update", "--canary", "2", "--wave-timeout", "6", "--mission-timeout", "600",
                                               "--log-level", "error"], environment: hq)
        let id = result.stdout.split(separator: "\n").first.map(String.init) ?? ""
        let state = try FactoryctlBinary.run(["status", "--rollout", id, "--json"], environment: hq).json()["state"] as? String
        #expect(try result.status == 0 && state == "succeeded" && result.stderr.contains("f-2: deferred until ")
                && fleet.world.head(fleet.factories["f-1"]!) == target && fleet.world.head(fleet.factories["f-2"]!) == target,
                "\(result.stdout) \(result.stderr)")
    }

    /// A sliding window (`--max-in-flight`): a member that defers keeps its slot past the wave
    /// timeout instead of being timed out, and runs when its window opens.
    @Test func aSlidingWindowKeepsADeferredMembersSlotInsteadOfTimingItOut() throws {
        let (fleet, supervisor, opening, target, hq) = try twoFactoriesOneWindowed()
        defer { supervisor.stopAll() }
        let result = try FactoryctlBinary.run(["publish", "update", "--max-in-flight", "2", "--wave-timeout", "6", "--mission-timeout", "600",
                                               "--json", "--log-level", "error"], environment: hq)
        let object = JSONDoc.object(result, exit: 0)
        let statuses = (object["members"] as? [[String: Any]] ?? []).compactMap { $0["status"] as? String }
        #expect(try object["state"] as? String == "succeeded" && statuses == ["SUCCESS", "SUCCESS"]
                && fleet.world.head(fleet.factories["f-2"]!) == target && Date().timeIntervalSince1970 >= opening,
                "\(result.stdout) \(result.stderr) \((try? String(contentsOfFile: fleet.world.directory.join("consume-f-2.log"), encoding: .utf8)) ?? "")")
    }

    @Test func aMissionWhileTheAppHoldsItsLockIsDeferredAndRunsOnceItLetsGo() throws {
        let fleet = try FleetWorld()
        let lock = fleet.world.directory.join("app-update.lock")
        let holder = try holdLock(lock, fleet)
        defer { holder.stop() }
        let consumer = try fleet.consumer("f-1", environment: factoryEnvironment(fleet, ["UA_FACTORY_UPDATE_LOCK": lock]))
        defer { consumer.stop() }
        #expect(try fleet.waitUntilRegistered("f-1"))
        let before = try fleet.world.head(fleet.factories["f-1"]!)
        let target = try fleet.world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        let job = try fleet.publish(["update"])
        let deferred = eventually {
            let metadata = (try? fleet.registration("f-1"))?["metadata"] as? [String: Any]
            return metadata?["deferred_job_id"] as? String == job && metadata?["deferred_reason"] as? String == "app_lock"
        }
        let unchanged = try fleet.world.head(fleet.factories["f-1"]!) == before && fleet.results(job).isEmpty
        holder.stop()
        #expect(try deferred && unchanged && consumer.waitForExit(timeout: 30) == 10
                && (fleet.world.head(fleet.factories["f-1"]!)) == target
                && (fleet.results(job)).first?["status"] as? String == "SUCCESS", "\(consumer.output)")
    }

    @Test func updateWhileTheAppHoldsItsLockIsRefusedAfterTheTimeoutWithNothingChanged() throws {
        let fleet = try FleetWorld()
        let lock = fleet.world.directory.join("app-update.lock")
        let holder = try holdLock(lock, fleet)
        defer { holder.stop() }
        try fleet.world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        let before = try fleet.world.checkoutSnapshot()
        var env = fleet.world.environment
        env["UA_FACTORY_UPDATE_LOCK"] = lock
        let started = Date()
        let result = try FactoryctlBinary.run(["update", "--app-lock-timeout", "2", "--json"], factoryDir: fleet.world.factory, environment: env)
        let waited = Date().timeIntervalSince(started)
        let report = JSONDoc.object(result, exit: 3)
        #expect(try report["failure"] as? String == "app_lock_held" && (report["error"] as? String ?? "").contains("nothing was changed")
                && waited >= 2 && (fleet.world.checkoutSnapshot()) == before, "\(result.stdout) \(result.stderr)")
    }

    @Test func updateWaitingForTheAppsLockRunsOnceTheAppLetsGo() throws {
        let fleet = try FleetWorld()
        let lock = fleet.world.directory.join("app-update.lock")
        let holder = try holdLock(lock, fleet)
        defer { holder.stop() }
        let target = try fleet.world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        let before = try fleet.world.head(fleet.world.factory)
        var env = fleet.world.environment
        env["UA_FACTORY_UPDATE_LOCK"] = lock
        let update = try ConsumerProcess(binary: FactoryctlBinary.path,
                                         arguments: ["update", "--factory-dir", fleet.world.factory, "--app-lock-timeout", "60", "--log-level", "info"],
                                         environment: env, log: fleet.world.directory.join("update.log"))
        defer { update.stop() }
        let waiting = eventually { update.output.contains("the app holds its update lock") }
        let unchanged = try fleet.world.head(fleet.world.factory) == before
        holder.stop()
        #expect(try waiting && unchanged && update.waitForExit(timeout: 60) == 0 && (fleet.world.head(fleet.world.factory)) == target,
                "\(update.output)")
    }

    @Test func ignoreAppLockUpdatesAnywayAndSaysSoInTheResultAndHistory() throws {
        let fleet = try FleetWorld()
        let lock = fleet.world.directory.join("app-update.lock")
        let holder = try holdLock(lock, fleet)
        defer { holder.stop() }
        let target = try fleet.world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        var env = fleet.world.environment
        env["UA_FACTORY_UPDATE_LOCK"] = lock
        let result = try FactoryctlBinary.run(["update", "--ignore-app-lock", "--json"], factoryDir: fleet.world.factory, environment: env)
        let report = JSONDoc.object(result, exit: 0)
        let history = fleet.world.read(fleet.world.factory, ".git/factoryctl/history.jsonl") ?? ""
        let last = history.split(separator: "\n").last.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(try report["app_lock_ignored"] as? Bool == true && last?["app_lock_ignored"] as? Bool == true
                && (fleet.world.head(fleet.world.factory)) == target, "\(result.stdout) \(result.stderr)")
    }

    @Test(arguments: ["02:00", "Mon-Fry 02:00-04:00", "25:00-26:00"])
    func aBadWindowStopsTheConsumerAtStartNamingTheVariable(window: String) throws {
        let fleet = try FleetWorld()
        let result = try FactoryctlBinary.run(["consume", "--factory-dir", fleet.world.factory, "--redis-url", fleet.redis.url,
                                               "--factory-id", "f-1"],
                                              environment: factoryEnvironment(fleet, ["UA_FACTORY_UPDATE_WINDOW": window]))
        #expect(result.status == 64 && result.stderr.contains("UA_FACTORY_UPDATE_WINDOW='\(window)' is not a window: "), "\(result.stderr)")
    }
}
