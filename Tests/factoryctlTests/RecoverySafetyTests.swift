import Foundation
import Testing
import TestSupport

/// Crash recovery only undoes what the interrupted run did; an environment a rollback could not
/// restore never blocks the next version; every move passes the same gate. End to end, with the
/// built binary, real git and real uv (or a sync program that fails on purpose).
@Suite struct RecoverySafetyTests {
    var journalName: String { "/.git/factoryctl/journal.json" }

    /// What an operator does after the crash, in the factory checkout.
    enum LaterWork: String, CaseIterable, Sendable {
        /// A hotfix commit on the branch, then an uncommitted edit of a tracked file.
        case hotfixAndEdit
        /// A switch to a branch of their own, with a commit on it.
        case branchSwitch
    }

    /// Starts `update` with a sync that runs until it is ended, waits until the sync has
    /// started (the record names its process group), then stops factoryctl with `signal`.
    /// Returns the sync script's path and the commit the update had moved to.
    func interruptDuringSync(_ world: GitWorld, signal: Int32, environment: [String: String]) throws -> (sync: String, target: String) {
        let slow = try world.script("slow-sync", "sleep 300\n")
        let target = try world.pushUpstream(["app.py": "print('v2')\n", "added.py": "x = 1\n"], message: "Ship v2")
        var env = environment
        env["UA_FACTORY_SYNC_COMMAND"] = slow
        let update = try ConsumerProcess(binary: FactoryctlBinary.path, arguments: ["update", "--factory-dir", world.factory],
                                         environment: env, log: world.directory.join("update.log"))
        let journal = world.factory + journalName
        #expect(eventually(timeout: 30) {
            (FileManager.default.contents(atPath: journal).flatMap { String(data: $0, encoding: .utf8) } ?? "").contains("child_group")
        })
        update.signal(signal)
        if signal != SIGKILL {
            // A second request means "now": the sync's group is ended and the record is left.
            #expect(eventually(timeout: 10) { (try? String(contentsOfFile: world.directory.join("update.log"), encoding: .utf8))?.contains("asked to stop") == true })
            update.signal(signal)
        }
        #expect(eventually(timeout: 30) { processEnded(update.pid) }, "factoryctl exited")
        return (slow, target)
    }

    @Test(arguments: [(SIGKILL, LaterWork.hotfixAndEdit), (SIGHUP, .hotfixAndEdit), (SIGKILL, .branchSwitch), (SIGTERM, .branchSwitch)])
    func workDoneAfterAnInterruptedSyncIsNeverUndone(signal: Int32, work: LaterWork) throws {
        let world = try GitWorld()
        let (slow, target) = try interruptDuringSync(world, signal: signal, environment: world.environment)
        #expect(try world.head(world.factory) == target)
        #expect(FileManager.default.fileExists(atPath: world.factory + journalName), "the record is left for the next run")
        if signal != SIGKILL {
            #expect(try Command.run(["pgrep", "-f", slow]).status == 1, "no orphaned sync outlives factoryctl")
        }
        let hotfix: String
        switch work {
        case .hotfixAndEdit:
            hotfix = try world.commit(in: world.factory, ["hotfix.py": "fixed = True\n"], message: "Hotfix on the factory")
            try world.write(world.factory, "app.py", "print('edited by the operator')\n")
        case .branchSwitch:
            try world.git(["switch", "--quiet", "-c", "operator"], in: world.factory)
            hotfix = try world.commit(in: world.factory, ["hotfix.py": "fixed = True\n"], message: "Hotfix on the factory")
        }

        var env = world.environment
        env["UA_FACTORY_SYNC_COMMAND"] = try world.script("quick-sync", "exit 0\n")
        let next = try FactoryctlBinary.run(["update", "--json"], factoryDir: world.factory, environment: env)
        let object = try next.json()
        #expect((object["recovery"] as? String)?.contains("nothing was undone") == true, "\(next.stdout) \(next.stderr)")
        let branch = work == .branchSwitch ? "operator" : "main"
        #expect(try world.git(["rev-parse", "refs/heads/\(branch)"], in: world.factory).trimmingCharacters(in: .whitespacesAndNewlines) == hotfix,
                "the hotfix commit is still on \(branch)")
        if work == .hotfixAndEdit {
            #expect(try world.head(world.factory) == hotfix, "and checked out")
            #expect(next.status == 4, "the preflight refuses the tracked edit: \(next.stdout)")
            #expect(world.read(world.factory, "app.py") == "print('edited by the operator')\n", "the edit is kept")
        }
        #expect(!FileManager.default.fileExists(atPath: world.factory + journalName))
        #expect(eventually(timeout: 5) { (try? Command.run(["pgrep", "-f", slow]).status) == 1 }, "the orphaned sync was ended")
    }

    @Test func aFileCreatedAfterTheCrashWhereTheUpdateRemovedOneIsKept() throws {
        let world = try GitWorld()
        try world.pushUpstream(["legacy.cfg": "old setting\n"], message: "Add legacy.cfg")
        #expect(try FactoryctlBinary.run(["update", "--no-sync"], factoryDir: world.factory, environment: world.environment).status == 0)
        try world.git(["rm", "--quiet", "legacy.cfg"], in: world.seed)
        try world.git(["commit", "--quiet", "-m", "Drop legacy.cfg"], in: world.seed)
        // interruptDuringSync pushes one more commit on top and kills the update during its sync.
        _ = try interruptDuringSync(world, signal: SIGKILL, environment: world.environment)
        #expect(!FileManager.default.fileExists(atPath: world.factory + "/legacy.cfg"))
        try world.write(world.factory, "legacy.cfg", "the operator's own file\n")
        var env = world.environment
        env["UA_FACTORY_SYNC_COMMAND"] = try world.script("quick-sync", "exit 0\n")
        let next = try FactoryctlBinary.run(["update", "--json"], factoryDir: world.factory, environment: env)
        #expect(world.read(world.factory, "legacy.cfg") == "the operator's own file\n", "\(next.stdout) \(next.stderr)")
    }

    @Test func aSecondStopEndsTheSyncGroupAndTheNextRunUndoesTheUntouchedUpdate() throws {
        let world = try GitWorld()
        let before = try world.head(world.factory)
        let (slow, target) = try interruptDuringSync(world, signal: SIGHUP, environment: world.environment)
        #expect(try Command.run(["pgrep", "-f", slow]).status == 1, "the sync's group ended with factoryctl")
        var env = world.environment
        env["UA_FACTORY_SYNC_COMMAND"] = try world.script("quick-sync", "exit 0\n")
        // Nothing was touched since: the record's own work is undone, then the update runs again.
        let next = try FactoryctlBinary.run(["update", "--json"], factoryDir: world.factory, environment: env)
        let object = try next.json()
        #expect(next.status == 0, "\(next.stdout) \(next.stderr)")
        #expect((object["recovery"] as? String)?.contains("undid an update interrupted during syncing") == true, "\(next.stdout)")
        #expect(object["from"] as? String == before)
        #expect(try world.head(world.factory) == target)
    }

    /// The state an update leaves when it is killed after writing the files for the new commit
    /// and before moving the branch: work tree and index at `to`, HEAD and main still at `from`,
    /// and its record at `phase` (`checked_out`; `checkout` is what a factoryctl from before that
    /// phase records until the branch moved). Returns (from, to).
    func stageKilledBeforeTheBranchMoved(_ world: GitWorld, phase: String, _ files: [String: String],
                                         extra: String = "") throws -> (from: String, to: String) {
        let from = try world.head(world.factory)
        let to = try world.pushUpstream(files, message: "Ship v2")
        try world.git(["fetch", "--quiet", "origin"], in: world.factory)
        try world.git(["checkout", to, "--", "."], in: world.factory)
        try FileManager.default.createDirectory(atPath: world.factory + "/.git/factoryctl", withIntermediateDirectories: true)
        let record = #"{"phase":"\#(phase)","pid":999999,"started_at":1,"from":"\#(from)","previous_branch":"main","to":"\#(to)","#
            + #""branch":"main","branch_tip_before":"\#(from)","sync":false,"restart":false,"services":[],"rolling_back":false\#(extra)}"#
        try Data(record.utf8).write(to: URL(fileURLWithPath: world.factory + journalName))
        return (from, to)
    }

    @Test func anEditThatCutsAFileShortAfterTheCheckoutFinishedIsKept() throws {
        let world = try GitWorld()
        _ = try stageKilledBeforeTheBranchMoved(world, phase: "checked_out", ["app.py": "print('v2')\nprint('and more')\n"])
        // The operator deletes the last line: the file is now a beginning of its new version.
        try world.write(world.factory, "app.py", "print('v2')\n")
        let next = try FactoryctlBinary.run(["update", "--no-sync", "--json"], factoryDir: world.factory, environment: world.environment)
        #expect((try next.json()["recovery"] as? String)?.contains("nothing was undone") == true, "\(next.stdout) \(next.stderr)")
        #expect(world.read(world.factory, "app.py") == "print('v2')\n", "the edit is kept: \(next.stdout)")
    }

    @Test func twoFilesCutShortBeforeTheCheckoutFinishedAreNotTheKillsAndAreKept() throws {
        let world = try GitWorld()
        // A record as a factoryctl without the checked_out phase leaves it: `checkout` until the branch moved.
        _ = try stageKilledBeforeTheBranchMoved(world, phase: "checkout", ["app.py": "print('v2')\nprint('and more')\n",
                                                                           "lib.py": "x = 1\ny = 2\n"])
        try world.write(world.factory, "app.py", "print('v2')\n")
        try world.write(world.factory, "lib.py", "x = 1\n")
        let next = try FactoryctlBinary.run(["update", "--no-sync", "--json"], factoryDir: world.factory, environment: world.environment)
        #expect((try next.json()["recovery"] as? String)?.contains("nothing was undone") == true, "\(next.stdout) \(next.stderr)")
        #expect(world.read(world.factory, "app.py") == "print('v2')\n" && world.read(world.factory, "lib.py") == "x = 1\n",
                "both edits are kept: \(next.stdout)")
    }

    @Test func anOldRecordWithTheOneFileAKilledCheckoutCutShortIsUndoneAndTheUpdateRuns() throws {
        let world = try GitWorld()
        let (from, to) = try stageKilledBeforeTheBranchMoved(world, phase: "checkout", ["app.py": "print('v2')\nprint('and more')\n"])
        try world.write(world.factory, "app.py", "print('v2')\n") // the write the kill interrupted
        let next = try FactoryctlBinary.run(["update", "--no-sync", "--json"], factoryDir: world.factory, environment: world.environment)
        let object = try next.json()
        #expect(next.status == 0, "\(next.stdout) \(next.stderr)")
        #expect((object["recovery"] as? String)?.contains("undid an update interrupted during checkout") == true, "\(next.stdout)")
        #expect(object["from"] as? String == from)
        #expect(try world.head(world.factory) == to)
        #expect(world.read(world.factory, "app.py") == "print('v2')\nprint('and more')\n")
    }

    @Test func anEnvironmentDebtThatCannotBeRecordedFailsTheRunAndKeepsTheRecord() throws {
        let world = try GitWorld()
        let v1 = try world.head(world.factory)
        // A rollback put v1 back but could not re-sync it; its record says so.
        _ = try stageKilledBeforeTheBranchMoved(world, phase: "syncing", ["app.py": "print('v2')\n"],
                                                extra: #","code_restored":true"#)
        try world.git(["checkout", v1, "--", "."], in: world.factory)
        let journal = world.factory + journalName
        var text = try String(contentsOfFile: journal, encoding: .utf8)
        text = text.replacingOccurrences(of: #""sync":false"#, with: #""sync":true"#)
            .replacingOccurrences(of: #""rolling_back":false"#, with: #""rolling_back":true"#)
        try text.write(toFile: journal, atomically: true, encoding: .utf8)
        // Something is in the way of the needs-sync record (a directory where the file goes).
        try FileManager.default.createDirectory(atPath: world.factory + "/.git/factoryctl/needs-sync.json/x", withIntermediateDirectories: true)
        var env = world.environment
        env["UA_FACTORY_SYNC_COMMAND"] = try world.script("quick-sync", "exit 0\n")
        // Already at the pinned v1: without the record nothing would ever sync v1's environment.
        let next = try FactoryctlBinary.run(["update", "--json", "--commit", v1], factoryDir: world.factory, environment: env)
        #expect(next.status == 1, "\(next.stdout) \(next.stderr)")
        #expect((try next.json()["error"] as? String)?.contains("cannot be recorded") == true, "\(next.stdout)")
        #expect(FileManager.default.fileExists(atPath: journal), "the record is kept for the next run")
    }

    @Test func aLocalBranchCarryingUnsignedCommitsFromAnotherBranchIsRefused() throws {
        let world = try GitWorld()
        let keys = try SignedCommitTests.Keys()
        // origin/release: a signed release; origin/feature: an unsigned commit on top of it.
        try world.git(["checkout", "--quiet", "-b", "release"], in: world.seed)
        try world.write(world.seed, "app.py", "print('signed release')\n")
        try world.git(["add", "app.py"], in: world.seed)
        try world.git(["-c", "gpg.format=ssh", "-c", "user.signingkey=\(keys.trusted)", "commit", "--quiet", "-S", "-m", "Release"], in: world.seed)
        try world.git(["push", "--quiet", "origin", "release"], in: world.seed)
        let unsigned = try world.pushUpstream(["app.py": "print('unsigned feature')\n"], message: "Feature", branch: "feature")
        // The factory's local release branch was made from origin/feature: ahead of origin/release.
        try world.git(["fetch", "--quiet", "origin"], in: world.factory)
        try world.git(["branch", "--quiet", "release", "origin/feature"], in: world.factory)
        let start = try world.head(world.factory)
        var env = world.environment
        env["UA_ALLOWED_SIGNERS"] = keys.allowed
        let refused = try FactoryctlBinary.run(["update", "--no-sync", "--json", "--branch", "release"],
                                               factoryDir: world.factory, environment: env)
        let object = try refused.json()
        #expect(object["failure"] as? String == "signature_refused", "\(refused.stdout)")
        #expect((object["error"] as? String)?.contains("commit \(unsigned.prefix(7)) is not signed") == true, "\(refused.stdout)")
        #expect(try world.head(world.factory) == start)
    }

    @Test func theOperatorsOwnLocalCommitsOnTheCheckedOutBranchAreRebasedUnderThePolicy() throws {
        let world = try GitWorld()
        let keys = try SignedCommitTests.Keys()
        _ = try world.commit(in: world.factory, ["hotfix.py": "fixed = True\n"], message: "Hotfix on the factory")
        try world.write(world.seed, "app.py", "print('signed v2')\n")
        try world.git(["add", "app.py"], in: world.seed)
        try world.git(["-c", "gpg.format=ssh", "-c", "user.signingkey=\(keys.trusted)", "commit", "--quiet", "-S", "-m", "v2"], in: world.seed)
        try world.git(["push", "--quiet", "origin", "main"], in: world.seed)
        var env = world.environment
        env["UA_ALLOWED_SIGNERS"] = keys.allowed
        let result = try FactoryctlBinary.run(["update", "--no-sync", "--json"], factoryDir: world.factory, environment: env)
        let integration = try result.json()["integration"] as? String
        #expect(result.status == 0 && integration == "rebase", "\(result.stdout) \(result.stderr)")
    }

    /// A sync program that fails unless the checked-out commit carries `syncs-ok`.
    func pickySync(_ world: GitWorld) throws -> String {
        try world.script("picky-sync", "test -f syncs-ok || { echo 'index unreachable: cannot resolve dependencies' >&2; exit 1; }\n")
    }

    @Test func aRollbackThatCannotResyncDoesNotBlockTheNextVersion() throws {
        let world = try GitWorld()
        var env = world.environment
        env["UA_FACTORY_SYNC_COMMAND"] = try pickySync(world)
        let v1 = try world.head(world.factory)
        _ = try world.pushUpstream(["app.py": "print('v2')\n"], message: "v2, which does not sync")
        let failed = try FactoryctlBinary.run(["update", "--json"], factoryDir: world.factory, environment: env)
        #expect(failed.status == 6, "rolled back, but the environment is owed: \(failed.stdout)")
        #expect(try failed.json()["environment_owed"] is String, "\(failed.stdout)")
        #expect(try world.head(world.factory) == v1)
        let status = try FactoryctlBinary.run(["status", "--json"], factoryDir: world.factory, environment: env)
        #expect(try status.json()["needs_attention"] is String, "status says so: \(status.stdout)")

        let v3 = try world.pushUpstream(["app.py": "print('v3')\n", "syncs-ok": "\n"], message: "v3, which syncs")
        let fixed = try FactoryctlBinary.run(["update", "--json"], factoryDir: world.factory, environment: env)
        #expect(fixed.status == 0, "\(fixed.stdout) \(fixed.stderr)")
        #expect(try world.head(world.factory) == v3)
        #expect(try fixed.json()["synced"] as? Bool == true)
        let after = try FactoryctlBinary.run(["status", "--json"], factoryDir: world.factory, environment: env)
        #expect(try after.json()["needs_attention"] == nil, "healthy again (no needs_attention key): \(after.stdout)")
    }

    @Test func anOwedEnvironmentOnUnchangedCodeIsSyncedByTheNextUpdate() throws {
        let world = try GitWorld()
        var env = world.environment
        env["UA_FACTORY_SYNC_COMMAND"] = try pickySync(world)
        _ = try world.pushUpstream(["app.py": "print('v2')\n"], message: "v2, which does not sync")
        #expect(try FactoryctlBinary.run(["update", "--json"], factoryDir: world.factory, environment: env).status == 6)
        // The index is back: the same code now syncs, and the debt is paid without any new commit
        // (origin still has v2, which the anti-rewind record does not count: it was never kept).
        env["UA_FACTORY_SYNC_COMMAND"] = try world.script("good-sync", "exit 0\n")
        let retried = try FactoryctlBinary.run(["update", "--json", "--commit", try world.head(world.factory)],
                                               factoryDir: world.factory, environment: env)
        #expect(retried.status == 0, "\(retried.stdout) \(retried.stderr)")
        #expect(try retried.json()["synced"] as? Bool == true, "\(retried.stdout)")
        #expect(!FileManager.default.fileExists(atPath: world.factory + "/.git/factoryctl/needs-sync.json"))
    }

    @Test func switchingToAnUnsignedLocalBranchIsRefusedByTheSignaturePolicy() throws {
        let world = try GitWorld()
        let keys = try SignedCommitTests.Keys()
        _ = try world.pushUpstream(["app.py": "print('release, unsigned')\n"], message: "Unsigned release", branch: "release")
        try world.git(["fetch", "--quiet", "origin"], in: world.factory)
        try world.git(["branch", "--quiet", "release", "origin/release"], in: world.factory)
        let start = try world.head(world.factory)
        var env = world.environment
        env["UA_ALLOWED_SIGNERS"] = keys.allowed
        let refused = try FactoryctlBinary.run(["update", "--no-sync", "--json", "--branch", "release"],
                                               factoryDir: world.factory, environment: env)
        #expect(refused.status == 1, "\(refused.stdout)")
        #expect(try refused.json()["failure"] as? String == "signature_refused", "\(refused.stdout)")
        #expect(try world.head(world.factory) == start)
        #expect(try world.git(["branch", "--show-current"], in: world.factory).trimmingCharacters(in: .whitespacesAndNewlines) == "main")
    }
}

/// libgit2 missing at run time is an error the command reports in its normal way, not a C exit.
@Suite struct MissingLibraryTests {
    @Test(.enabled(if: getuid() == 0, "needs root for a private mount namespace"))
    func aMissingLibgit2IsAJSONFailureNotAnExit() throws {
        let world = try GitWorld()
        let library = "/usr/lib/x86_64-linux-gnu/libgit2.so.1.5"
        // In a mount namespace of its own, the library is an empty file: dlopen fails.
        let result = try Command.run(["unshare", "--mount", "sh", "-c", "mount --bind /dev/null \"$0\" && exec \"$@\"", library,
                                      FactoryctlBinary.path, "update", "--json", "--no-sync", "--factory-dir", world.factory],
                                     environment: world.environment)
        #expect(result.status == 1, "\(result.stdout) \(result.stderr)")
        let object = try result.json()
        #expect(object["ok"] as? Bool == false)
        #expect((object["error"] as? String)?.contains("cannot load libgit2.so.1.5") == true, "\(result.stdout)")
    }
}
