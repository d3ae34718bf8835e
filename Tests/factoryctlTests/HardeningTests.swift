import FactoryKit
import Foundation
import Testing
import TestSupport

/// Hung remotes, kills at bad moments, and what the next run makes of them. End to end, with the
/// built binary, real git and real uv.
@Suite struct HardeningTests {
    func factoryctl(_ world: GitWorld, _ arguments: [String], environment: [String: String]? = nil) throws -> Command.Result {
        try Command.run([Package.factoryctl] + arguments + ["--factory-dir", world.factory],
                        environment: environment ?? world.environment)
    }

    /// A sync command that runs `uv sync`, then stamps the commit the environment is for.
    func stampingSync(_ world: GitWorld, sleepFirst seconds: Int = 0) throws -> String {
        let path = world.directory.join("bin/stamp-sync-\(seconds)")
        try Data("""
        #!/bin/sh
        set -e
        sleep \(seconds)
        uv sync --offline --quiet
        git rev-parse HEAD > .venv/synced-commit
        """.utf8).write(to: URL(fileURLWithPath: path))
        chmod(path, 0o755)
        return path
    }

    @Test(arguments: ["http", "ssh"])
    func aRemoteThatNeverAnswersEndsAtTheFetchTimeoutWithNothingChanged(scheme: String) throws {
        let world = try GitWorld()
        let silent = try SilentServer()
        try world.git(["remote", "set-url", "origin", "\(scheme)://git@127.0.0.1:\(silent.port)/factory.git"], in: world.factory)
        let before = try world.checkoutSnapshot()
        let protected = world.protectedSnapshot()
        let result = try factoryctl(world, ["update", "--fetch-timeout", "1"])
        #expect(result.status == 5, "\(result.stderr)")
        #expect(result.stderr.contains("made no progress for 1 s"), "\(result.stderr)")
        #expect(result.stderr.contains("Nothing was changed"))
        #expect(try world.checkoutSnapshot() == before)
        #expect(world.protectedSnapshot() == protected)
        // The lock was released: the next update gets as far as the fetch again (5, not 3).
        var env = world.environment
        env["FACTORYCTL_FETCH_TIMEOUT"] = "1"
        #expect(try factoryctl(world, ["update"], environment: env).status == 5)
        #expect(!FileManager.default.fileExists(atPath: world.factory + "/.git/factoryctl/journal.json"))
    }

    @Test(arguments: [SIGTERM, SIGINT])
    func aSignalEndsAHungFetchAndReleasesTheLock(signal: Int32) throws {
        let world = try GitWorld()
        let silent = try SilentServer()
        try world.git(["remote", "set-url", "origin", "http://127.0.0.1:\(silent.port)/factory.git"], in: world.factory)
        let before = try world.checkoutSnapshot()
        let update = try ConsumerProcess(binary: Package.factoryctl, arguments: ["update", "--factory-dir", world.factory],
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
        #expect(try factoryctl(world, ["update", "--no-sync"]).status == 0, "the lock is free")
    }

    @Test func aKillDuringTheSyncIsUndoneAndTheNextUpdateSyncsForItsCommit() throws {
        let world = try GitWorld()
        let slow = try stampingSync(world, sleepFirst: 30)
        let target = try world.pushUpstream(["app.py": "print('v2')\n", "added.py": "x = 1\n"], message: "Ship v2")
        let before = try world.head(world.factory)
        var env = world.environment
        env["UA_FACTORY_SYNC_COMMAND"] = slow
        let update = try ConsumerProcess(binary: Package.factoryctl, arguments: ["update", "--factory-dir", world.factory],
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
        let next = try factoryctl(world, ["update", "--json"], environment: env)
        #expect(next.status == 0, "\(next.stderr)")
        let object = try JSONSerialization.jsonObject(with: Data(next.stdout.utf8)) as? [String: Any]
        #expect((object?["recovery"] as? String)?.contains("interrupted during syncing") == true, "\(next.stdout)")
        #expect(object?["from"] as? String == before)
        #expect(object?["to"] as? String == target)
        #expect(object?["changed"] as? Bool == true)
        #expect(world.read(world.factory, ".venv/synced-commit")?.trimmingCharacters(in: .whitespacesAndNewlines) == target)
        #expect(eventually(timeout: 5) { (try? Command.run(["pgrep", "-f", slow]).status) == 1 }, "the orphaned sync was ended")
        #expect(!FileManager.default.fileExists(atPath: journal))
        #expect(try world.git(["status", "--porcelain", "--untracked-files=no"], in: world.factory).isEmpty)
    }

    @Test func killsAtRandomMomentsNeverLeaveACheckoutTheNextUpdateRefuses() throws {
        let world = try GitWorld()
        let sync = try stampingSync(world)
        var env = world.environment
        env["UA_FACTORY_SYNC_COMMAND"] = sync
        _ = try world.commit(in: world.factory, ["local.txt": "mine\n"], message: "Local commit")
        let protected = world.protectedSnapshot()
        var recovered = 0
        for round in 0..<8 {
            var files: [String: String] = [:]
            for k in 0..<20 { files["data-\(k % 7).txt"] = "round \(round) change \(k)\n" }
            files["new-\(round).txt"] = "added in round \(round)\n"
            _ = try world.pushUpstream(files, message: "Round \(round)")
            let update = try ConsumerProcess(binary: Package.factoryctl, arguments: ["update", "--factory-dir", world.factory],
                                             environment: env, log: world.directory.join("kill-\(round).log"))
            Thread.sleep(forTimeInterval: Double.random(in: 0...0.25))
            update.signal(SIGKILL)
            _ = update.waitForExit(timeout: 10)
            let next = try factoryctl(world, ["update"], environment: env)
            if next.stdout.contains("Recovered first") { recovered += 1 }
            #expect(next.status == 0, "round \(round): \(next.stderr)")
            let head = try world.head(world.factory)
            #expect(try world.git(["rev-parse", "HEAD~1"], in: world.factory).trimmingCharacters(in: .whitespacesAndNewlines)
                    == (try world.originHead()), "round \(round): the local commit sits on top of origin/main")
            #expect(world.read(world.factory, ".venv/synced-commit")?.trimmingCharacters(in: .whitespacesAndNewlines) == head,
                    "round \(round): environment synced for HEAD")
            #expect(try world.git(["status", "--porcelain", "--untracked-files=no"], in: world.factory).isEmpty, "round \(round)")
            #expect(world.protectedSnapshot() == protected, "round \(round)")
        }
        print("killsAtRandomMoments: \(recovered) of 8 kills left a record that the next update repaired")
    }

    @Test func lockFilesAKilledFetchLeftAreRemovedOnlyWhenOursAndNamedOtherwise() throws {
        let world = try GitWorld()
        let target = try world.pushUpstream(["app.py": "print('v2')\n"], message: "Ship v2")
        let lock = world.factory + "/.git/refs/remotes/origin/main.lock"
        // Someone else's lock (no record of ours): left alone, and the message says what it is.
        try Data("junk".utf8).write(to: URL(fileURLWithPath: lock))
        let blocked = try factoryctl(world, ["update", "--no-sync"])
        #expect(blocked.status == 5)
        #expect(blocked.stderr.contains("main.lock"), "\(blocked.stderr)")
        #expect(FileManager.default.fileExists(atPath: lock))
        // Left by a factoryctl fetch that died (its record says so): removed with a notice.
        try FileManager.default.createDirectory(atPath: world.factory + "/.git/factoryctl", withIntermediateDirectories: true)
        try Data(#"{"branch":"main","phase":"fetch","pid":999999,"started_at":1}"#.utf8)
            .write(to: URL(fileURLWithPath: world.factory + "/.git/factoryctl/journal.json"))
        let result = try factoryctl(world, ["update", "--no-sync"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("removed stale lock files it left: refs/remotes/origin/main.lock"), "\(result.stdout)")
        #expect(try world.head(world.factory) == target)
    }
}
