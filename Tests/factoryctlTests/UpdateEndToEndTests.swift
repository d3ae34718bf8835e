import FactoryKit
import Foundation
import Testing
import TestSupport

/// The built binary, run as an operator would: stdout, stderr and exit codes.
@Suite struct UpdateEndToEndTests {
    @Test func updatePrintsASummaryEndingWithTheNewCommit() throws {
        let world = try GitWorld()
        try world.pushUpstream(["app.py": "print('v2')\n"], message: "Ship v2")
        let result = try FactoryctlBinary.run(["update", "--restart", "--settle", "0"],
                                              factoryDir: world.factory, environment: world.environment)
        let head = try world.head(world.factory)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("Ship v2"))
        #expect(result.stdout.hasSuffix("Factory updated to \(head.prefix(7))\n"))
        #expect(FakeSystemctl.calls(world.systemctlState).contains("--user restart universal-agent-local-factory"))
        #expect(!result.stderr.contains("secret-token"))
    }

    @Test func jsonOutputIsOneParsableObject() throws {
        let world = try GitWorld()
        try world.pushUpstream(["app.py": "print('v2')\n"], message: "Ship v2")
        let result = try FactoryctlBinary.run(["update", "--json", "--no-sync"], factoryDir: world.factory, environment: world.environment)
        #expect(result.status == 0)
        let object = try result.json()
        let keys = ["from", "to", "branch", "commits", "synced", "restarted", "rolled_back", "status", "error", "duration_ms"]
        for key in keys { #expect(object[key] != nil, "missing \(key)") }
        #expect(object["status"] as? String == "success")
        #expect(object["to"] as? String == (try world.head(world.factory)))
        #expect((object["commits"] as? [[String: Any]])?.first?["summary"] as? String == "Ship v2")
    }

    @Test func exitCodesDistinguishTheFailures() throws {
        // Preflight refusal.
        let dirty = try GitWorld()
        try dirty.write(dirty.factory, "app.py", "edited\n")
        let refused = try FactoryctlBinary.run(["update"], factoryDir: dirty.factory, environment: dirty.environment)
        #expect(refused.status == 4)
        #expect(refused.stderr.contains("app.py"))

        // Unreachable remote.
        let offline = try GitWorld()
        try offline.git(["remote", "set-url", "origin", "/nonexistent/origin.git"], in: offline.factory)
        #expect(try FactoryctlBinary.run(["update"], factoryDir: offline.factory, environment: offline.environment).status == 5)

        // Rolled back after a failed sync.
        let broken = try GitWorld()
        try broken.pushUpstream(["pyproject.toml": GitWorld.pyproject(dependencies: ["no-such-package-factoryctl"])],
                                message: "Bad dependency")
        let rolledBack = try FactoryctlBinary.run(["update", "--json"], factoryDir: broken.factory, environment: broken.environment)
        #expect(rolledBack.status == 2)
        let object = try rolledBack.json()
        #expect(object["rolled_back"] as? Bool == true)
        #expect(object["status"] as? String == "failed")

        // Lock held by another process.
        let locked = try GitWorld()
        let holder = try CheckoutLock.acquire(gitDirectory: locked.factory + "/.git", wait: false)
        let lockResult = try FactoryctlBinary.run(["update"], factoryDir: locked.factory, environment: locked.environment)
        #expect(lockResult.status == 3)
        #expect(lockResult.stderr.contains("pid \(getpid())"))
        withExtendedLifetime(holder) {}

        // Usage error.
        #expect(try FactoryctlBinary.run(["update", "--branch", "--evil"],
                                         factoryDir: locked.factory, environment: locked.environment).status == 64)
        #expect(try FactoryctlBinary.run(["update", "--branch=-evil"],
                                         factoryDir: locked.factory, environment: locked.environment).status == 64)

        // Not a checkout.
        let empty = TemporaryDirectory()
        let notRepo = try FactoryctlBinary.run(["update"], factoryDir: empty.path, environment: locked.environment)
        #expect(notRepo.status == 1)
        #expect(notRepo.stderr.contains("not a git checkout"))
    }

    @Test func interruptAfterTheCheckoutMovedFinishesTheUpdateInsteadOfLeavingItHalfDone() throws {
        let world = try GitWorld()
        let script = world.directory.join("slow-sync.sh")
        try "#!/bin/sh\nsleep 2\nexit 0\n".write(toFile: script, atomically: true, encoding: .utf8)
        chmod(script, 0o755)
        var environment = world.environment
        environment["UA_FACTORY_SYNC_COMMAND"] = script
        let target = try world.pushUpstream(["app.py": "print('v2')\n"], message: "Ship v2")
        let update = try ConsumerProcess(binary: FactoryctlBinary.path,
                                         arguments: ["update", "--factory-dir", world.factory, "--json"],
                                         environment: environment, log: world.directory.join("update.log"))
        #expect(eventually { update.output.contains("running \(script)") })
        // One stop request: the 2 s sync is well inside the grace period, so it finishes.
        // (A second request ends the sync at once: RecoverySafetyTests.)
        update.signal(SIGTERM)
        #expect(update.waitForExit(timeout: 20) == 0)
        #expect(try world.head(world.factory) == target)
        #expect(UpdateHistory(gitDirectory: world.factory + "/.git").last?.succeeded == true)
    }

    @Test func interruptBeforeAnythingChangedStopsWithNothingChanged() throws {
        let world = try GitWorld()
        try world.pushUpstream(["app.py": "print('v2')\n"], message: "Ship v2")
        let before = try world.head(world.factory)
        // Hold the lock so the update waits (--wait-lock) before changing anything, then interrupt it.
        let lock = try CheckoutLock.acquire(gitDirectory: world.factory + "/.git", wait: false)
        let update = try ConsumerProcess(binary: FactoryctlBinary.path,
                                         arguments: ["update", "--factory-dir", world.factory, "--wait-lock", "--no-sync"],
                                         environment: world.environment, log: world.directory.join("update.log"))
        #expect(eventually { update.output.contains("waiting for the update lock") })
        update.signal(SIGTERM)
        #expect(update.waitForExit(timeout: 20) == 1, "stops waiting for the lock at once")
        #expect(update.output.contains("stopped while waiting for the update lock"))
        #expect(try world.head(world.factory) == before)
        withExtendedLifetime(lock) {}
    }

    @Test func dryRunSaysWhatWouldHappen() throws {
        let world = try GitWorld()
        try world.pushUpstream(["app.py": "print('v2')\n"], message: "Ship v2")
        let before = try world.head(world.factory)
        let result = try FactoryctlBinary.run(["update", "--dry-run"], factoryDir: world.factory, environment: world.environment)
        #expect(result.status == 0)
        #expect(result.stdout.contains("Would fast-forward main"))
        #expect(result.stdout.contains("Dry run: nothing was changed"))
        #expect(try world.head(world.factory) == before)
    }

    @Test func statusShowsTheCheckoutAndTheLastUpdate() throws {
        let world = try GitWorld()
        try world.pushUpstream(["app.py": "print('v2')\n"], message: "Ship v2")
        try world.write(world.factory, "README.md", "local edit\n")
        let stale = try FactoryctlBinary.run(["status", "--json"], factoryDir: world.factory, environment: world.environment)
        #expect(stale.status == 0)
        var object = try stale.json()
        #expect(object["behind"] as? Int == 0)
        let fresh = try FactoryctlBinary.run(["status", "--fetch", "--json"], factoryDir: world.factory, environment: world.environment)
        object = try fresh.json()
        #expect(object["behind"] as? Int == 1)
        #expect(object["branch"] as? String == "main")
        #expect((object["modified"] as? [[String: Any]])?.first?["path"] as? String == "README.md")

        try world.git(["checkout", "--", "README.md"], in: world.factory)
        #expect(try FactoryctlBinary.run(["update", "--no-sync"], factoryDir: world.factory, environment: world.environment).status == 0)
        let text = try FactoryctlBinary.run(["status"], factoryDir: world.factory, environment: world.environment)
        #expect(text.stdout.contains("Branch:   main"))
        #expect(text.stdout.contains("Ship v2"))
        #expect(text.stdout.contains("Last update:"))
        #expect(text.stdout.contains("success"))
    }

    @Test func compatibilityScriptKeepsTheOriginalArguments() throws {
        let world = try GitWorld()
        try world.git(["checkout", "--quiet", "-b", "release"], in: world.seed)
        try world.pushUpstream(["r.txt": "1\n"], message: "Release", branch: "release")
        var environment = world.environment
        environment["FACTORYCTL"] = FactoryctlBinary.path
        environment["UA_FACTORY_DIR"] = world.factory
        let script = Package.root + "/scripts/update_factory.sh"

        let positional = try Command.run([script, "release", "--restart"], environment: environment
            .merging(["FACTORYCTL_UPDATE_ARGS": "--settle 0 --no-sync"]) { $1 })
        #expect(positional.status == 0, "\(positional.stderr)")
        #expect(try world.git(["symbolic-ref", "--short", "HEAD"], in: world.factory) == "release")
        #expect(FakeSystemctl.calls(world.systemctlState).contains("--user restart universal-agent-local-factory"))

        let flagged = try Command.run([script, "--branch", "main", "--dry-run"], environment: environment)
        #expect(flagged.status == 0, "\(flagged.stderr)")
        #expect(flagged.stdout.contains("Dry run"))
        #expect(try world.git(["symbolic-ref", "--short", "HEAD"], in: world.factory) == "release")

        #expect(try Command.run([script, "--bogus"], environment: environment).status == 64)
    }
}

/// What `update` says is what happened (issue 10's honest outcomes).
@Suite struct UpdateOutcomeTextTests {
    @Test func upToDateSaysSoAndNothingElseAndExitCodeTellsTheCases() throws {
        let world = try GitWorld()
        let head = try world.head(world.factory)
        let plain = try FactoryctlBinary.run(["update"], factoryDir: world.factory, environment: world.environment)
        #expect(plain.status == 0, "\(plain.stderr)")
        #expect(plain.stdout == "Already up to date at \(head.prefix(7))\n")
        let unchanged = try FactoryctlBinary.run(["update", "--exit-code"], factoryDir: world.factory, environment: world.environment)
        #expect(unchanged.status == 11)
        #expect(unchanged.stdout == "Already up to date at \(head.prefix(7))\n")
        try world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        let changed = try FactoryctlBinary.run(["update", "--exit-code", "--no-sync"],
                                               factoryDir: world.factory, environment: world.environment)
        #expect(changed.status == 0, "\(changed.stderr)")
        #expect(changed.stdout.hasSuffix("Factory updated to \(try world.head(world.factory).prefix(7))\n"))
    }

    @Test func theSummaryCountsEveryCommitPulled() throws {
        let world = try GitWorld()
        // 120 commits: more than the 100 the report lists.
        for index in 1...120 {
            try world.git(["commit", "--quiet", "--allow-empty", "-m", "c\(index)"], in: world.seed)
        }
        try world.git(["push", "--quiet", "origin", "HEAD:refs/heads/main"], in: world.seed)
        let result = try FactoryctlBinary.run(["update", "--no-sync"], factoryDir: world.factory, environment: world.environment)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("(120 commits pulled)"))
        #expect(result.stdout.contains("  … and 110 more\n"), "\(result.stdout)")
    }

    @Test func aRollbackSaysWhatItTriedAndWhereTheCheckoutIs() throws {
        let world = try GitWorld()
        let from = try world.head(world.factory)
        let target = try world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        var environment = world.environment
        // Fails for the new code only, so the rollback's re-sync of the old code succeeds.
        environment["UA_FACTORY_SYNC_COMMAND"] = try world.script("sync-fails-on-v2", "! grep -q v2 app.py\n")
        let text = try FactoryctlBinary.run(["update"], factoryDir: world.factory, environment: environment)
        #expect(text.status == 2)
        #expect(text.stdout.hasPrefix("Rolled back: tried \(from.prefix(7)) → \(target.prefix(7)), the dependency sync failed: "), "\(text.stdout)")
        #expect(text.stdout.contains("still at \(from.prefix(7))"))
        for misleading in ["Fast-forwarded", "Factory updated", "Synced", "Restarted"] {
            #expect(!text.stdout.contains(misleading), "\(misleading) in \(text.stdout)")
        }
        let json = try FactoryctlBinary.run(["update", "--json"], factoryDir: world.factory, environment: environment)
        let object = try json.json()
        #expect(object["to"] as? String == from)
        #expect(object["attempted"] as? String == target)
        #expect(object["changed"] as? Bool == false)
        #expect(object["rolled_back"] as? Bool == true)
        #expect(try world.head(world.factory) == from)
    }

    @Test func fromASubdirectoryTheCheckoutRootIsUsedLikeGit() throws {
        let world = try GitWorld()
        let subdirectory = world.factory + "/deep/er"
        try FileManager.default.createDirectory(atPath: subdirectory, withIntermediateDirectories: true)
        try world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        let update = try FactoryctlBinary.run(["update", "--no-sync"], environment: world.environment, in: subdirectory)
        #expect(update.status == 0, "\(update.stderr)")
        #expect(try world.head(world.factory) == world.head(world.origin))
        let status = try FactoryctlBinary.run(["status"], environment: world.environment, in: subdirectory)
        #expect(status.status == 0, "\(status.stderr)")
        #expect(status.stdout.contains("Factory:  \(world.factory)\n"), "\(status.stdout)")
        // The consumer does not search: a service started below some checkout must not adopt it.
        var environment = world.environment
        environment["UA_REDIS_URL"] = "unix://" + world.directory.join("no-redis.sock")
        environment["UA_FACTORY_ID"] = "sub-1"
        let consume = try Command.run(["timeout", "10", FactoryctlBinary.path, "consume"], in: subdirectory, environment: environment)
        #expect(consume.status == 64, "\(consume.stderr)")
        #expect(consume.stderr.contains("is not a git checkout"), "\(consume.stderr)")
    }
}

/// Pre-checks before anything moves (issue 10).
@Suite struct UpdatePrecheckTests {
    @Test(arguments: ["/nonexistent/origin.git", "../no-such-origin", "file:///nonexistent/origin.git"])
    func aLocalOriginThatIsNotThereIsNamed(url: String) throws {
        let world = try GitWorld()
        let before = try world.head(world.factory)
        try world.git(["remote", "set-url", "origin", url], in: world.factory)
        let result = try FactoryctlBinary.run(["update", "--no-sync"], factoryDir: world.factory, environment: world.environment)
        #expect(result.status == 5, "\(result.stderr)")
        #expect(result.stderr.contains("origin is the local path \(url), which does not exist"), "\(result.stderr)")
        #expect(!result.stderr.contains("unsupported URL protocol"))
        #expect(try world.head(world.factory) == before)
    }

    @Test(arguments: ["definitely-not-a-sync-program", "/nonexistent/bin/uv"])
    func aMissingSyncProgramIsFoundBeforeAnythingMoves(program: String) throws {
        let world = try GitWorld()
        let before = try world.head(world.factory)
        try world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        var environment = world.environment
        environment["UA_FACTORY_SYNC_COMMAND"] = program
        let result = try FactoryctlBinary.run(["update"], factoryDir: world.factory, environment: environment)
        #expect(result.status == 1, "\(result.stderr)")
        #expect(result.stderr.contains("was not found (looked in "), "\(result.stderr)")
        #expect(result.stderr.contains("UA_FACTORY_SYNC_COMMAND"))
        #expect(result.stderr.contains("Nothing was changed"))
        #expect(try world.head(world.factory) == before)
        // Not even fetched: origin/main still where it was.
        #expect(try world.git(["rev-parse", "origin/main"], in: world.factory) == before)
        // Without the sync, the same update goes through.
        let noSync = try FactoryctlBinary.run(["update", "--no-sync"], factoryDir: world.factory, environment: environment)
        #expect(noSync.status == 0, "\(noSync.stderr)")
    }
}

/// Under systemd, when stderr is the journal, lines carry syslog priorities (issue 10).
@Suite struct JournalOutputTests {
    /// Runs factoryctl with stderr appended to a file, JOURNAL_STREAM naming that file or not.
    func run(_ world: GitWorld, _ arguments: [String], journal: Bool) throws -> (status: Int32, stderr: String) {
        let directory = TemporaryDirectory()
        let log = directory.join("stderr.log")
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let attributes = try FileManager.default.attributesOfItem(atPath: log)
        let inode = (attributes[.systemFileNumber] as? NSNumber)?.uint64Value ?? 0
        let device = (attributes[.systemNumber] as? NSNumber)?.uint64Value ?? 0
        var environment = world.environment
        environment["JOURNAL_STREAM"] = journal ? "\(device):\(inode)" : "\(device):\(inode + 1)"
        let result = try Command.run(["sh", "-c", "exec \"$0\" \"$@\" 2>>\"$LOG\"", FactoryctlBinary.path] + arguments,
                                     environment: environment.merging(["LOG": log]) { $1 })
        return (result.status, (try? String(contentsOfFile: log, encoding: .utf8)) ?? "")
    }

    @Test func priorityPrefixesAndNoTimestampsWhenStderrIsTheJournal() throws {
        let world = try GitWorld()
        let ok = try run(world, ["update", "--no-sync", "--log-level", "debug", "--factory-dir", world.factory], journal: true)
        #expect(ok.status == 0, "\(ok.stderr)")
        let lines = ok.stderr.split(separator: "\n")
        #expect(!lines.isEmpty)
        for line in lines {
            #expect(line.hasPrefix("<6>") || line.hasPrefix("<7>") || line.hasPrefix("<5>"), "\(line)")
            #expect(!line.contains("+0000") && !line.contains("T\(Calendar.current.component(.year, from: Date()))"), "\(line)")
        }
        let failed = try run(world, ["update", "--factory-dir", world.directory.join("not-a-checkout")], journal: true)
        #expect(failed.status == 1, "\(failed.stderr)")
        #expect(failed.stderr.contains("<3>factoryctl: "), "\(failed.stderr)")
    }

    @Test func otherwiseTheUsualFormat() throws {
        let world = try GitWorld()
        let result = try run(world, ["update", "--no-sync", "--factory-dir", world.factory], journal: false)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(!result.stderr.contains("<6>"))
        #expect(result.stderr.contains(" info factoryctl.update:"), "\(result.stderr)")
    }
}

/// A rollback that cannot bring the services back is not a clean rollback (issue 10).
@Suite struct RollbackAttentionTests {
    @Test func servicesStillDownAfterTheRollbackExitSixAndSaySo() throws {
        let world = try GitWorld()
        let from = try world.head(world.factory)
        try world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        _ = FileManager.default.createFile(atPath: world.systemctlState + "/app.fail-always", contents: nil)
        let result = try FactoryctlBinary.run(["update", "--restart", "--service", "app", "--settle", "0", "--no-sync"],
                                              factoryDir: world.factory, environment: world.environment)
        #expect(result.status == 6, "\(result.stderr)")
        #expect(result.stdout.contains("Rolled back: tried \(from.prefix(7))"), "\(result.stdout)")
        #expect(result.stdout.contains("Needs attention: still not active after the rollback: app"), "\(result.stdout)")
        #expect(try world.head(world.factory) == from)
        // A service that fails once and comes back with the old code is a clean rollback: exit 2.
        // (v2 failed here, so it is quarantined: tried again on purpose.)
        try FileManager.default.removeItem(atPath: world.systemctlState + "/app.fail-always")
        _ = FileManager.default.createFile(atPath: world.systemctlState + "/app.fail-next-restart", contents: nil)
        let clean = try FactoryctlBinary.run(["update", "--restart", "--service", "app", "--settle", "0", "--no-sync", "--retry-quarantined", "--json"],
                                             factoryDir: world.factory, environment: world.environment)
        #expect(clean.status == 2, "\(clean.stderr)")
        let object = try clean.json()
        #expect((object["inactive_after_rollback"] as? [String]) == [])
        #expect(object["rolled_back"] as? Bool == true)
    }

    @Test func updateWithSplayWaitsAtMostTheWindowAndSaysHowLong() throws {
        let world = try GitWorld()
        let target = try world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        let result = try FactoryctlBinary.run(["update", "--splay", "1", "--no-sync", "--json"], factoryDir: world.factory, environment: world.environment)
        let splay = ((try? result.json())?["steps_ms"] as? [String: Any])?["splay"] as? Int
        let head = try world.head(world.factory)
        #expect(result.status == 0 && splay.map { (0..<1000).contains($0) } == true && head == target,
                "\(result.stdout) \(result.stderr)")
    }
}
