import Foundation
import Testing
import TestSupport

/// The releases layout (issue 21): `releases init`, updates built and synced beside the live
/// release, the swap, rollback as a swap, pruning, and kill -9 at the steps that matter. Real git,
/// real uv on the world's small project, the fake systemctl recording what `current` named at
/// each restart.
@Suite struct ReleasesLayoutTests {
    static let service = "universal-agent-local-factory"

    /// A world whose factory has been turned into the releases layout.
    struct Layout {
        let world: GitWorld
        var root: String { world.factory }
        var current: String { root + "/current" }
        var environment: [String: String] {
            var env = world.environment
            env["FAKE_SYSTEMCTL_CURRENT"] = current
            return env
        }

        init(sync: Bool = true) throws {
            world = try GitWorld()
            let result = try FactoryctlBinary.run(["releases", "init"] + (sync ? [] : ["--no-sync"]), factoryDir: world.factory,
                                                  environment: world.environment)
            guard result.status == 0 else { throw Failure("releases init failed: \(result.stdout) \(result.stderr)") }
        }

        var live: String { (try? FileManager.default.destinationOfSymbolicLink(atPath: current)) ?? "" }
        var releases: [String] { ((try? FileManager.default.contentsOfDirectory(atPath: root + "/releases")) ?? []).sorted() }
        func release(_ commit: String) -> String { "releases/" + commit.prefix(12) }
        var restartedOn: [String] {
            ((try? String(contentsOfFile: world.systemctlState + "/\(ReleasesLayoutTests.service).current", encoding: .utf8)) ?? "")
                .split(separator: "\n").map(String.init)
        }
        var restarts: Int { FakeSystemctl.calls(world.systemctlState).filter { $0.hasPrefix("--user restart") }.count }
        func journal() -> String {
            (try? String(contentsOfFile: root + "/.git/factoryctl/journal.json", encoding: .utf8)) ?? ""
        }

        /// A sync command that counts its runs and records where it ran.
        func countingSync() throws -> String {
            try world.script("counting-sync", "pwd >> \(world.directory.join("sync-dirs"))\nexec uv sync --quiet\n")
        }
        var syncDirectories: [String] {
            ((try? String(contentsOfFile: world.directory.join("sync-dirs"), encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
        }

        /// `update --restart --soak 60` killed (-9) once it is soaking; true when it got there.
        func killedWhileSoaking() throws -> Bool {
            let update = try ConsumerProcess(binary: FactoryctlBinary.path,
                                             arguments: ["update", "--factory-dir", root, "--restart", "--settle", "0", "--no-sync", "--soak", "60"],
                                             environment: environment, log: world.directory.join("update.log"))
            defer { _ = update.stop() }
            let soaking = eventually(timeout: 30) { journal().contains("\"soaking\"") }
            update.signal(SIGKILL)
            _ = eventually(timeout: 30) { processEnded(update.pid) }
            return soaking
        }

        func update(_ extra: [String] = [], environment: [String: String]? = nil) throws -> (Command.Result, [String: Any]) {
            let result = try FactoryctlBinary.run(["update", "--restart", "--settle", "0", "--json"] + extra, factoryDir: root,
                                                  environment: environment ?? self.environment)
            return (result, (try? result.json()) ?? [:])
        }
    }

    struct Failure: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    @Test func initKeepsEnvUntrackedAndIgnoredFilesByteForByteAndGitStillWorksInCurrent() throws {
        let world = try GitWorld()
        let before = world.protectedSnapshot()
        let head = try world.head(world.factory)
        let result = try FactoryctlBinary.run(["releases", "init", "--json"], factoryDir: world.factory, environment: world.environment)
        var after: [String: Data] = [:]
        for path in GitWorld.protectedFiles { after[path] = FileManager.default.contents(atPath: world.factory + "/current/" + path) }
        let log = try world.git(["log", "-1", "--format=%H"], in: world.factory + "/current")
        let status = try world.git(["status", "--porcelain"], in: world.factory + "/current")
        #expect(result.status == 0 && after == before && log == head && status.isEmpty
                && FileManager.default.fileExists(atPath: world.factory + "/current/.venv/pyvenv.cfg"),
                "\(result.stdout) \(result.stderr) status: \(status)")
    }

    @Test func initTwiceChangesNothingTheSecondTime() throws {
        let layout = try Layout()
        let live = layout.live
        let again = try FactoryctlBinary.run(["releases", "init", "--json"], factoryDir: layout.root, environment: layout.world.environment)
        let object = (try? again.json()) ?? [:]
        #expect(again.status == 0 && object["already_done"] as? Bool == true && layout.live == live, "\(again.stdout) \(again.stderr)")
    }

    @Test func anUpdateBuildsAndSyncsTheReleaseBesideTheLiveOneAndRestartsOnIt() throws {
        let layout = try Layout()
        var env = layout.environment
        env["UA_FACTORY_SYNC_COMMAND"] = try layout.countingSync()
        let target = try layout.world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        let (result, object) = try layout.update(environment: env)
        let releasePath = layout.root + "/" + layout.release(target)
        #expect(result.status == 0 && layout.live == layout.release(target) && layout.restartedOn == [layout.release(target)]
                && layout.syncDirectories == [releasePath] && object["release"] as? String == String(target.prefix(12))
                && layout.world.read(layout.current, "app.py") == "print('v2')\n" && layout.world.read(layout.current, ".env") != nil,
                "\(result.stdout) \(result.stderr) restarted on \(layout.restartedOn), synced in \(layout.syncDirectories)")
    }

    @Test func duringASlowSyncTheLiveReleaseIsUntouched() throws {
        let layout = try Layout()
        let live = layout.live
        let liveApp = layout.world.read(layout.current, "app.py")
        let gate = layout.world.directory.join("go")
        var env = layout.environment
        env["UA_FACTORY_SYNC_COMMAND"] = try layout.world.script("gated-sync", """
            touch \(layout.world.directory.join("syncing"))
            while [ ! -e \(gate) ]; do sleep 0.05; done
            exec uv sync --quiet

            """)
        try layout.world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        let update = try ConsumerProcess(binary: FactoryctlBinary.path,
                                         arguments: ["update", "--factory-dir", layout.root, "--restart", "--settle", "0"],
                                         environment: env, log: layout.world.directory.join("update.log"))
        defer { _ = update.stop() }
        let syncing = eventually(timeout: 30) { FileManager.default.fileExists(atPath: layout.world.directory.join("syncing")) }
        let untouched = layout.live == live && layout.world.read(layout.current, "app.py") == liveApp && layout.restarts == 0
        _ = FileManager.default.createFile(atPath: gate, contents: nil)
        let status = update.waitForExit(timeout: 60)
        #expect(syncing && untouched && status == 0 && layout.live != live, "\(update.output)")
    }

    @Test func aFailedSyncLeavesTheLiveReleaseAndRestartsNothing() throws {
        let layout = try Layout()
        let live = layout.live
        var env = layout.environment
        env["UA_FACTORY_SYNC_COMMAND"] = try layout.world.script("failing-sync", "echo 'resolution failed' >&2\nexit 1\n")
        let target = try layout.world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        let (result, object) = try layout.update(environment: env)
        #expect(result.status != 0 && object["failure"] as? String == "sync_failed" && layout.live == live && layout.restarts == 0
                && !layout.releases.contains(String(target.prefix(12))), "\(result.stdout) \(result.stderr)")
    }

    @Test func aServiceThatFailsAfterTheSwapIsSwappedBackWithoutASync() throws {
        let layout = try Layout()
        let live = layout.live
        var env = layout.environment
        env["UA_FACTORY_SYNC_COMMAND"] = try layout.countingSync()
        let target = try layout.world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        _ = FileManager.default.createFile(atPath: layout.world.systemctlState + "/\(Self.service).fail-next-restart", contents: nil)
        let (result, object) = try layout.update(environment: env)
        #expect(result.status != 0 && object["rolled_back"] as? Bool == true && layout.live == live
                && layout.restartedOn == [layout.release(target), live] && layout.syncDirectories.count == 1,
                "\(result.stdout) \(result.stderr) restarted on \(layout.restartedOn), synced \(layout.syncDirectories)")
    }

    @Test func rollbackIsASwapToTheKeptReleaseWithNoCheckoutAndNoSync() throws {
        let layout = try Layout()
        let first = layout.live
        var env = layout.environment
        env["UA_FACTORY_SYNC_COMMAND"] = try layout.countingSync()
        try layout.world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        _ = try layout.update(environment: env)
        let rollback = try FactoryctlBinary.run(["rollback", "--settle", "0", "--json"], factoryDir: layout.root, environment: env)
        let object = (try? rollback.json()) ?? [:]
        let steps = object["steps_ms"] as? [String: Any] ?? [:]
        #expect(rollback.status == 0 && layout.live == first && object["release_reused"] as? Bool == true
                && layout.syncDirectories.count == 1 && steps["sync"] == nil && steps["checkout"] == nil,
                "\(rollback.stdout) \(rollback.stderr)")
    }

    /// A rollback to a kept release is a swap: it works with the git host gone, and fetches nothing.
    @Test func rollbackToAKeptReleaseWorksWithTheRemoteUnreachable() throws {
        let layout = try Layout()
        let first = layout.live
        try layout.world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        _ = try layout.update(environment: layout.environment)
        try FileManager.default.moveItem(atPath: layout.world.origin, toPath: layout.world.origin + ".gone")
        let rollback = try FactoryctlBinary.run(["rollback", "--settle", "0", "--json"], factoryDir: layout.root, environment: layout.environment)
        let object = (try? rollback.json()) ?? [:]
        let steps = object["steps_ms"] as? [String: Any] ?? [:]
        #expect(rollback.status == 0 && layout.live == first && object["release_reused"] as? Bool == true && steps["fetch"] == nil,
                "\(rollback.stdout) \(rollback.stderr)")
    }

    @Test func pruningKeepsTheConfiguredNumberBesidesTheLiveOne() throws {
        let layout = try Layout(sync: false)
        var env = layout.environment
        env["UA_FACTORY_KEEP_RELEASES"] = "2"
        var last = ""
        for version in 2...5 {
            last = try layout.world.pushUpstream(["app.py": "print('v\(version)')\n"], message: "v\(version)")
            let (result, _) = try layout.update(["--no-sync"], environment: env)
            guard result.status == 0 else { throw Failure("update to v\(version): \(result.stdout) \(result.stderr)") }
        }
        #expect(layout.releases.count == 3 && layout.live == layout.release(last), "\(layout.releases)")
    }

    @Test func killedDuringTheSyncTheNextRunRemovesTheHalfBuiltReleaseAndUpdates() throws {
        let layout = try Layout()
        let live = layout.live
        var env = layout.environment
        env["UA_FACTORY_SYNC_COMMAND"] = try layout.world.script("stalled-sync", "touch \(layout.world.directory.join("syncing"))\nsleep 600\n")
        let target = try layout.world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        let update = try ConsumerProcess(binary: FactoryctlBinary.path,
                                         arguments: ["update", "--factory-dir", layout.root, "--restart", "--settle", "0"],
                                         environment: env, log: layout.world.directory.join("update.log"))
        defer { _ = update.stop() }
        let syncing = eventually(timeout: 30) { FileManager.default.fileExists(atPath: layout.world.directory.join("syncing")) }
        update.signal(SIGKILL)
        _ = eventually(timeout: 30) { processEnded(update.pid) }
        let afterKill = layout.live
        let (next, object) = try layout.update()
        #expect(syncing && afterKill == live && next.status == 0 && layout.live == layout.release(target)
                && (object["recovery"] as? String ?? "").contains("killed while building"), "\(next.stdout) \(next.stderr)")
    }

    @Test func killedDuringTheSoakAFailingServiceIsSwappedBackByTheNextRun() throws {
        let layout = try Layout(sync: false)
        let live = layout.live
        let target = try layout.world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        let soaking = try layout.killedWhileSoaking()
        let afterKill = layout.live
        // The new release crashes while nobody watches: the next run's soak sees it.
        try "2\n".write(toFile: layout.world.systemctlState + "/\(Self.service).crashes", atomically: true, encoding: .utf8)
        let next = try FactoryctlBinary.run(["update", "--no-sync", "--json", "--settle", "0"], factoryDir: layout.root, environment: layout.environment)
        let object = (try? next.json()) ?? [:]
        #expect(soaking && afterKill == layout.release(target) && layout.live == live
                && (object["recovery"] as? String ?? "").contains("swapped"), "\(next.stdout) \(next.stderr)")
    }

    @Test func aCurrentPointedElsewhereAfterACrashIsLeftAsTheOperatorSetIt() throws {
        let layout = try Layout(sync: false)
        let first = layout.live
        try layout.world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        let soaking = try layout.killedWhileSoaking()
        // After the crash the operator points current back at the first release by hand.
        try FileManager.default.removeItem(atPath: layout.current)
        try FileManager.default.createSymbolicLink(atPath: layout.current, withDestinationPath: first)
        let next = try FactoryctlBinary.run(["update", "--no-sync", "--dry-run", "--json"], factoryDir: layout.root, environment: layout.environment)
        let object = (try? next.json()) ?? [:]
        #expect(soaking && layout.live == first && (object["recovery"] as? String ?? "").contains("by someone else")
                && layout.journal().isEmpty, "\(next.stdout) \(next.stderr)")
    }

    @Test func anEditInTheLiveReleaseIsRefusedAndKept() throws {
        let layout = try Layout(sync: false)
        try layout.world.write(layout.current, "app.py", "print('hotfix')\n")
        try layout.world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        let (result, object) = try layout.update(["--no-sync"])
        #expect(result.status != 0 && object["failure"] as? String == "preflight" && layout.world.read(layout.current, "app.py") == "print('hotfix')\n",
                "\(result.stdout) \(result.stderr)")
    }

    @Test(arguments: ["../outside", "/etc/passwd", "data/../../x", ".git/config"])
    func aSharedPathOutsideTheFactoryIsRefused(_ path: String) throws {
        let layout = try Layout(sync: false)
        var env = layout.environment
        env["UA_FACTORY_SHARED"] = path
        try layout.world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        let live = layout.live
        let (result, _) = try layout.update(["--no-sync"], environment: env)
        #expect(result.status != 0 && layout.live == live && result.stderr.contains("UA_FACTORY_SHARED"), "\(result.stdout) \(result.stderr)")
    }
}

/// Missions, HQ and `status --fleet` the same in both layouts: one factory in the releases
/// layout, one in place, one broadcast, then a rollback mission to the releases one.
@Suite struct ReleasesLayoutFleetTests {
    @Test func aMixedFleetUpdatesTogetherAndARollbackMissionIsASwap() throws {
        let fleet = try FleetWorld(factories: ["rel-1", "inplace-1"])
        let releases = fleet.factories["rel-1"]!
        let initialized = try FactoryctlBinary.run(["releases", "init"], factoryDir: releases, environment: fleet.world.environment)
        let first = (try? FileManager.default.destinationOfSymbolicLink(atPath: releases + "/current")) ?? ""
        let supervisor = Supervisor()
        defer { supervisor.stopAll() }
        for id in ["rel-1", "inplace-1"] {
            try supervisor.supervise(id) { try fleet.consumer(id) }
            _ = try fleet.waitUntilRegistered(id)
        }
        let target = try fleet.world.pushUpstream(["app.py": "print('v2')\n"], message: "Ship v2")
        let update = try FactoryctlBinary.run(["publish", "update", "--wait", "--timeout", "60", "--json", "--log-level", "error"],
                                              environment: fleet.environment)
        let updated = (try? update.json())?["all_succeeded"] as? Bool == true
        let swappedIn = (try? FileManager.default.destinationOfSymbolicLink(atPath: releases + "/current")) == "releases/" + target.prefix(12)
        let registered = eventually(timeout: 30) { (try? fleet.registration("rel-1"))?["commit"] as? String == target }
        let rollback = try FactoryctlBinary.run(["publish", "rollback", "--target", "rel-1", "--wait", "--timeout", "60", "--json", "--log-level", "error"],
                                                environment: fleet.environment)
        let rolledBack = (try? rollback.json())?["all_succeeded"] as? Bool == true
        let live = (try? FileManager.default.destinationOfSymbolicLink(atPath: releases + "/current")) ?? ""
        let inPlace = try fleet.world.head(fleet.factories["inplace-1"]!)
        #expect(initialized.status == 0 && updated && swappedIn && registered && inPlace == target
                && rolledBack && live == first, "init: \(initialized.stderr) update: \(update.stdout) rollback: \(rollback.stdout) \(rollback.stderr) live \(live)")
    }
}
