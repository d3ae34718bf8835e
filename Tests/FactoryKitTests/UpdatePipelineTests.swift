import FactoryKit
import Foundation
import Logging
import Testing
import TestSupport

/// The update pipeline against real git repositories, real uv and the fake systemctl.
@Suite struct UpdatePipelineTests {
    func request(_ world: GitWorld, _ configure: (inout UpdateRequest) -> Void = { _ in }) -> UpdateRequest {
        var request = UpdateRequest(factoryDirectory: world.factory)
        request.environment = world.environment
        request.settleSeconds = 0
        configure(&request)
        return request
    }

    func update(_ world: GitWorld, _ configure: (inout UpdateRequest) -> Void = { _ in }) -> UpdateReport {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        return UpdatePipeline(request: request(world, configure), logger: logger).run()
    }

    @Test func upToDateChangesNothingAndRunsNoSync() throws {
        let world = try GitWorld()
        let before = try world.checkoutSnapshot()
        let report = update(world)
        #expect(report.succeeded)
        #expect(report.integration == .upToDate)
        #expect(!report.changed)
        #expect(!report.synced)
        try expectSame(world.checkoutSnapshot(), before)
        #expect(!FileManager.default.fileExists(atPath: world.factory + "/.venv"))
    }

    @Test func fastForwardsManyCommitsAndSyncs() throws {
        let world = try GitWorld()
        let protected = world.protectedSnapshot()
        let from = try world.head(world.factory)
        for index in 1...25 {
            try world.pushUpstream(["app.py": "print('v\(index)')\n"], message: "Upstream change \(index)")
        }
        let report = update(world)
        #expect(report.succeeded, "\(report.error ?? "")")
        #expect(report.integration == .fastForward)
        #expect(report.commitCount == 25)
        #expect(report.commits.count == 25)
        #expect(report.commits.first?.summary == "Upstream change 1")
        #expect(report.from == from)
        #expect(try world.head(world.factory) == world.originHead())
        #expect(try world.git(["status", "--porcelain", "--untracked-files=no"], in: world.factory).split(separator: "\n") == [])
        #expect(report.synced)
        #expect(FileManager.default.fileExists(atPath: world.factory + "/.venv/pyvenv.cfg"))
        #expect(world.protectedSnapshot() == protected)
        #expect(UpdateHistory(gitDirectory: world.factory + "/.git").last?.to == report.to)
    }

    @Test func divergedBranchIsRebasedLikeTheGitCLI() throws {
        let world = try GitWorld()
        let protected = world.protectedSnapshot()
        try world.commit(in: world.factory, ["local.txt": "local one\n"], message: "Local fix one\n\nWith a body line.")
        try world.commit(in: world.factory, ["app.py": "print('factory v1')\nprint('local')\n"], message: "Local tweak to app")
        try world.pushUpstream(["upstream.txt": "from hq\n"], message: "Upstream feature")
        try world.pushUpstream(["README.md": "sample factory, updated\n"], message: "Upstream docs")

        // The oracle: the same checkout, updated by `git pull --rebase`.
        let oracle = world.directory.join("oracle")
        try Command.check(["cp", "-a", world.factory, oracle])
        try world.git(["pull", "--quiet", "--rebase", "origin", "main"], in: oracle)

        let report = update(world) { $0.sync = false }
        #expect(report.succeeded, "\(report.error ?? "")")
        #expect(report.integration == .rebase)
        #expect(report.rebasedCommits == 2)
        #expect(report.commitCount == 2)

        let ours = world.factory
        #expect(try world.git(["rev-parse", "HEAD^{tree}"], in: ours) == world.git(["rev-parse", "HEAD^{tree}"], in: oracle))
        let format = ["log", "--format=%an <%ae>%n%B%n--", "HEAD"]
        #expect(try world.git(format, in: ours) == world.git(format, in: oracle))
        #expect(try world.git(["rev-parse", "HEAD~2"], in: ours) == world.originHead())
        #expect(try world.git(["status", "--porcelain", "--untracked-files=no"], in: ours).split(separator: "\n") == [])
        #expect(world.protectedSnapshot() == protected)
    }

    @Test func localCommitAlreadyUpstreamIsDroppedLikeTheGitCLI() throws {
        let world = try GitWorld()
        try world.commit(in: world.factory, ["hotfix.txt": "fix\n"], message: "Hotfix applied locally")
        try world.pushUpstream(["hotfix.txt": "fix\n"], message: "Hotfix upstream")
        try world.pushUpstream(["app.py": "print('v2')\n"], message: "Upstream v2")
        let oracle = world.directory.join("oracle")
        try Command.check(["cp", "-a", world.factory, oracle])
        try world.git(["pull", "--quiet", "--rebase", "origin", "main"], in: oracle)

        let report = update(world) { $0.sync = false }
        #expect(report.succeeded, "\(report.error ?? "")")
        #expect(try world.head(world.factory) == world.head(oracle), "\(report)")
        #expect(try world.head(world.factory) == world.originHead(), "the already-applied local commit was kept")
    }

    @Test func rebaseConflictLeavesTheCheckoutExactlyAsItWasAndSyncsNothing() throws {
        let world = try GitWorld()
        try world.commit(in: world.factory, ["app.py": "print('local edit')\n"], message: "Local edit")
        try world.pushUpstream(["app.py": "print('upstream edit')\n"], message: "Upstream edit")
        let before = try world.checkoutSnapshot()
        let protected = world.protectedSnapshot()

        let report = update(world)
        #expect(!report.succeeded)
        #expect(report.failure == .conflict)
        #expect(report.paths == ["app.py"])
        #expect(!report.synced)
        #expect(!report.rolledBack)
        #expect(report.error?.contains("Local edit") == true)
        try expectSame(world.checkoutSnapshot(), before)
        #expect(world.protectedSnapshot() == protected)
        #expect(!FileManager.default.fileExists(atPath: world.factory + "/.venv"), "uv sync ran after a failed pull")
        #expect(!FileManager.default.fileExists(atPath: world.factory + "/.git/rebase-merge"))
    }

    @Test func modifiedTrackedFileIsRefusedAndListed() throws {
        let world = try GitWorld()
        try world.pushUpstream(["app.py": "print('v2')\n"], message: "Upstream v2")
        try world.write(world.factory, "README.md", "edited on the box\n")
        let before = try world.checkoutSnapshot()

        let report = update(world)
        #expect(report.failure == .preflight)
        #expect(report.paths == ["README.md"])
        #expect(report.error?.contains("README.md") == true)
        try expectSame(world.checkoutSnapshot(), before)
    }

    @Test func stagedChangeIsRefused() throws {
        let world = try GitWorld()
        try world.write(world.factory, "staged.txt", "new\n")
        try world.git(["add", "staged.txt"], in: world.factory)
        let before = try world.checkoutSnapshot()
        let report = update(world)
        #expect(report.failure == .preflight)
        #expect(report.paths == ["staged.txt"])
        try expectSame(world.checkoutSnapshot(), before)
    }

    @Test func checkoutMidRebaseIsRefusedAndLeftAlone() throws {
        let world = try GitWorld()
        try world.commit(in: world.factory, ["app.py": "print('local')\n"], message: "Local")
        try world.pushUpstream(["app.py": "print('upstream')\n"], message: "Upstream")
        try world.git(["fetch", "--quiet", "origin"], in: world.factory)
        let rebase = try Command.run(["git", "rebase", "origin/main"], in: world.factory, environment: world.environment)
        #expect(rebase.status != 0)
        let before = try world.checkoutSnapshot()

        let report = update(world)
        #expect(report.failure == .preflight)
        #expect(report.error?.contains("rebase") == true)
        try expectSame(world.checkoutSnapshot(), before)
        #expect(FileManager.default.fileExists(atPath: world.factory + "/.git/rebase-merge"))
    }

    @Test func switchesToAnExistingBranchAndFastForwardsIt() throws {
        let world = try GitWorld()
        try world.git(["checkout", "--quiet", "-b", "release"], in: world.seed)
        try world.pushUpstream(["release.txt": "r1\n"], message: "Release 1", branch: "release")
        try world.git(["fetch", "--quiet", "origin"], in: world.factory)
        try world.git(["branch", "--quiet", "--track", "release", "origin/release"], in: world.factory)
        try world.pushUpstream(["release.txt": "r2\n"], message: "Release 2", branch: "release")

        let report = update(world) { $0.branch = "release"; $0.sync = false }
        #expect(report.succeeded, "\(report.error ?? "")")
        #expect(report.integration == .fastForward)
        #expect(report.previousBranch == "main")
        #expect(try world.git(["symbolic-ref", "--short", "HEAD"], in: world.factory) == "release")
        #expect(try world.head(world.factory) == world.originHead("release"))
        #expect(world.read(world.factory, "release.txt") == "r2\n")
        #expect(try world.git(["status", "--porcelain", "--untracked-files=no"], in: world.factory).split(separator: "\n") == [])
    }

    @Test func createsAMissingBranchTrackingOrigin() throws {
        let world = try GitWorld()
        try world.git(["checkout", "--quiet", "-b", "feature"], in: world.seed)
        try world.pushUpstream(["feature.txt": "f\n"], message: "Feature", branch: "feature")
        let protected = world.protectedSnapshot()

        let report = update(world) { $0.branch = "feature"; $0.sync = false }
        #expect(report.succeeded, "\(report.error ?? "")")
        #expect(report.integration == .created)
        #expect(try world.git(["symbolic-ref", "--short", "HEAD"], in: world.factory) == "feature")
        #expect(try world.git(["rev-parse", "--abbrev-ref", "feature@{upstream}"], in: world.factory) == "origin/feature")
        #expect(try world.head(world.factory) == world.originHead("feature"))
        #expect(world.protectedSnapshot() == protected)
    }

    @Test func branchMissingOnOriginChangesNothing() throws {
        let world = try GitWorld()
        let before = try world.checkoutSnapshot()
        let report = update(world) { $0.branch = "no-such-branch" }
        #expect(report.failure == .branchMissing)
        try expectSame(world.checkoutSnapshot(), before)
    }

    @Test func untrackedFileInTheWayStopsTheUpdateAndIsKept() throws {
        let world = try GitWorld()
        try world.pushUpstream(["generated.txt": "tracked upstream\n"], message: "Track generated.txt")
        try world.write(world.factory, "generated.txt", "local untracked data\n")
        let before = try world.checkoutSnapshot()

        let report = update(world)
        #expect(report.failure == .checkoutBlocked)
        #expect(report.error?.contains("generated.txt") == true)
        #expect(world.read(world.factory, "generated.txt") == "local untracked data\n")
        try expectSame(world.checkoutSnapshot(), before)
        #expect(!FileManager.default.fileExists(atPath: world.factory + "/.venv"))
    }

    @Test func ignoredFileInTheWayIsNotOverwritten() throws {
        let world = try GitWorld()
        // Upstream stops ignoring .env and tracks one (a mistake); the factory's own .env must win.
        try world.pushUpstream([".gitignore": ".venv/\ncache/\n__pycache__/\n", ".env": "TRACKED=1\n"],
                               message: "Track a .env (a mistake upstream)")
        let protected = world.protectedSnapshot()
        let report = update(world)
        #expect(report.failure == .checkoutBlocked)
        #expect(world.protectedSnapshot() == protected)
    }

    @Test func unreachableRemoteFailsCleanly() throws {
        let world = try GitWorld()
        try world.git(["remote", "set-url", "origin", world.directory.join("gone.git")], in: world.factory)
        let before = try world.checkoutSnapshot()
        let report = update(world)
        #expect(report.failure == .remoteUnreachable)
        try expectSame(world.checkoutSnapshot(), before)
    }

    @Test func syncIsSkippedOnlyWhenNoDependencyFileChangedSinceTheLastSync() throws {
        let world = try GitWorld()
        let marker = world.factory + "/.git/factoryctl/synced-commit"
        try world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        let first = update(world)                       // nothing recorded yet: syncs
        #expect(first.succeeded && first.synced && first.syncSkipped != true)
        #expect(world.read(world.factory, ".git/factoryctl/synced-commit")?.trimmingCharacters(in: .whitespacesAndNewlines) == first.to)

        try world.pushUpstream(["app.py": "print('v3')\n", "lib/more.py": "y = 2\n"], message: "code only")
        let codeOnly = update(world)
        #expect(codeOnly.succeeded && codeOnly.changed)
        #expect(!codeOnly.synced && codeOnly.syncSkipped == true)
        #expect(FileManager.default.fileExists(atPath: world.factory + "/.venv/pyvenv.cfg"))

        // A dependency file anywhere in the tree (here a workspace member's) syncs again.
        try world.pushUpstream(["member/pyproject.toml": "[project]\nname = \"m\"\n"], message: "member")
        #expect(update(world).synced)
        try world.pushUpstream(["pyproject.toml": GitWorld.pyproject(dependencies: []) + "# touched\n"], message: "deps")
        #expect(update(world).synced)

        try world.pushUpstream(["app.py": "print('v4')\n"], message: "v4")
        #expect(update(world) { $0.forceSync = true }.synced)

        // No environment: syncs whatever the record says.
        try FileManager.default.removeItem(atPath: world.factory + "/.venv")
        try world.pushUpstream(["app.py": "print('v5')\n"], message: "v5")
        #expect(update(world).synced)
        #expect(FileManager.default.fileExists(atPath: world.factory + "/.venv/pyvenv.cfg"))

        // A custom sync command always runs (its inputs are unknown).
        try world.pushUpstream(["app.py": "print('v6')\n"], message: "v6")
        #expect(update(world) { $0.syncCommand = ["true"] }.synced)
        // ... and records nothing: the next default sync cannot trust an environment it did not see.
        #expect(!FileManager.default.fileExists(atPath: marker))
        try world.pushUpstream(["app.py": "print('v7')\n"], message: "v7")
        #expect(update(world).synced)
    }

    @Test func failedSyncRollsBackCodeAndEnvironment() throws {
        let world = try GitWorld()
        let from = try world.head(world.factory)
        // First a good update, so an environment exists.
        try world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        #expect(update(world).succeeded)
        let good = try world.head(world.factory)
        let before = try world.checkoutSnapshot()
        let protected = world.protectedSnapshot()
        // A dependency uv cannot resolve offline.
        try world.pushUpstream(["pyproject.toml": GitWorld.pyproject(dependencies: ["definitely-not-on-pypi-factoryctl"]),
                                "new-module.py": "x = 1\n"], message: "Add a dependency that cannot install")

        let report = update(world)
        #expect(!report.succeeded)
        #expect(report.failure == .syncFailed)
        #expect(report.rolledBack)
        #expect(report.from == good && report.to == good)
        #expect(try world.head(world.factory) == good)
        try expectSame(world.checkoutSnapshot(), before, exactIndex: false)
        #expect(!FileManager.default.fileExists(atPath: world.factory + "/new-module.py"))
        #expect(world.protectedSnapshot() == protected)
        #expect(FileManager.default.fileExists(atPath: world.factory + "/.venv/pyvenv.cfg"))
        // The environment was re-synced for the commit it went back to, and that is what is recorded.
        #expect(world.read(world.factory, ".git/factoryctl/synced-commit")?.trimmingCharacters(in: .whitespacesAndNewlines) == good)
        #expect(from != good)
    }

    @Test func aSyncPastItsTimeoutIsEndedWithItsChildrenAndRolledBack() throws {
        let world = try GitWorld()
        let marker = "factoryctl-orphan-\(UUID().uuidString.prefix(8))"
        // A sync that starts a grandchild (as a build backend would), then hangs.
        let started = world.directory.join("grandchild-started")
        let script = try world.script("forking-sync", "sh -c 'touch \(started); sleep 300 # \(marker)' &\nsleep 300\n")
        try world.pushUpstream(["app.py": "print('v2')\n"], message: "Ship v2")
        let before = try world.head(world.factory)
        let report = update(world) {
            $0.syncCommand = [script]
            $0.syncTimeout = 1
        }
        #expect(report.failure == .syncFailed)
        #expect(report.rolledBack)
        #expect(report.error?.contains("timed out") == true, "\(report.error ?? "")")
        #expect(try world.head(world.factory) == before)
        #expect(FileManager.default.fileExists(atPath: started), "the grandchild ran")
        #expect(eventually(timeout: 10) { (try? Command.run(["pgrep", "-f", marker]).status) == 1 },
                "the grandchild was ended with its group")
    }

    @Test func aRollbackThatCannotRestoreTheEnvironmentIsOwedAndTheNextUpdateSyncsWhatItEndsOn() throws {
        let world = try GitWorld()
        let broken = try world.script("broken-sync", "echo 'resolver exploded' >&2\nexit 1\n")
        let target = try world.pushUpstream(["app.py": "print('v2')\n"], message: "Ship v2")
        let before = try world.head(world.factory)
        let failed = update(world) {
            $0.syncCommand = [broken]
            $0.restart = true
        }
        #expect(failed.rolledBack)
        #expect(failed.environmentOwed?.contains("resolver exploded") == true, "\(failed.error ?? "")")
        #expect(try world.head(world.factory) == before)
        #expect(!FileManager.default.fileExists(atPath: world.factory + "/.git/factoryctl/journal.json"), "nothing for the next run to redo first")
        #expect(FileManager.default.fileExists(atPath: world.factory + "/.git/factoryctl/needs-sync.json"), "the sync is owed")
        let stamp = try world.script("stamp-sync", "uv sync --offline --quiet && git rev-parse HEAD > .venv/synced-commit\n")
        let next = update(world) {
            $0.syncCommand = [stamp]
            $0.restart = true
        }
        #expect(next.succeeded, "\(next.error ?? "")")
        // No repair first: the update plans v2 again and syncs it, which heals the environment.
        #expect(next.recovery == nil, "\(next.recovery ?? "none")")
        #expect(next.synced)
        #expect(next.restarted)
        #expect(!FileManager.default.fileExists(atPath: world.factory + "/.git/factoryctl/needs-sync.json"))
        #expect(try world.head(world.factory) == target)
        #expect(world.read(world.factory, ".venv/synced-commit")?.trimmingCharacters(in: .whitespacesAndNewlines) == target)
        #expect(!FileManager.default.fileExists(atPath: world.factory + "/.git/factoryctl/journal.json"))
    }

    @Test func restartRestartsAndChecksEachService() throws {
        let world = try GitWorld()
        try world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        let report = update(world) { $0.restart = true; $0.services = ["app-a", "app-b"]; $0.sync = false }
        #expect(report.succeeded, "\(report.error ?? "")")
        #expect(report.restarted)
        #expect(FakeSystemctl.calls(world.systemctlState) == [
            "--user show --property=Version", // the pre-check: the user manager answers
            "--user restart app-a", "--user restart app-b", "--user show --property=Type,ActiveState,SubState,NRestarts,MainPID,ExecMainStartTimestampMonotonic app-a", "--user show --property=Type,ActiveState,SubState,NRestarts,MainPID,ExecMainStartTimestampMonotonic app-b",
        ])
    }

    @Test func inactiveServiceAfterRestartRollsBack() throws {
        let world = try GitWorld()
        let from = try world.head(world.factory)
        let before = try world.checkoutSnapshot()
        let protected = world.protectedSnapshot()
        try world.pushUpstream(["app.py": "raise SystemExit('broken')\n"], message: "Broken release")
        _ = FileManager.default.createFile(atPath: world.systemctlState + "/app.fail-next-restart", contents: nil)

        let report = update(world) { $0.restart = true; $0.services = ["app"]; $0.sync = false }
        #expect(!report.succeeded)
        #expect(report.failure == .serviceInactive)
        #expect(report.rolledBack)
        #expect(try world.head(world.factory) == from)
        try expectSame(world.checkoutSnapshot(), before, exactIndex: false)
        #expect(world.protectedSnapshot() == protected)
        #expect(FakeSystemctl.calls(world.systemctlState) == [
            "--user show --property=Version", "--user restart app", "--user show --property=Type,ActiveState,SubState,NRestarts,MainPID,ExecMainStartTimestampMonotonic app", "--user restart app", "--user show --property=Type,ActiveState,SubState,NRestarts,MainPID,ExecMainStartTimestampMonotonic app",
        ])
    }

    @Test func secondConcurrentUpdateFailsFastNamingTheHolder() throws {
        let world = try GitWorld()
        try world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        let lock = try CheckoutLock.acquire(gitDirectory: world.factory + "/.git", wait: false)
        let before = try world.checkoutSnapshot()
        let report = update(world)
        #expect(report.failure == .lockHeld)
        #expect(report.error?.contains("pid \(getpid())") == true)
        try expectSame(world.checkoutSnapshot(), before)
        withExtendedLifetime(lock) {}
    }

    @Test func waitLockWaitsForTheHolder() throws {
        let world = try GitWorld()
        try world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        let before = try world.head(world.factory)
        // The test holds the lock before the update starts, so the update meets a holder.
        var holder: CheckoutLock? = try CheckoutLock.acquire(gitDirectory: world.factory + "/.git", wait: false)
        let messages = Messages()
        let finished = DispatchSemaphore(value: 0)
        let outcome = ReportBox()
        Thread {
            var logger = Logger(label: "test") { _ in CollectingHandler(messages: messages) }
            logger.logLevel = .notice
            outcome.report = UpdatePipeline(request: request(world) { $0.waitForLock = true; $0.sync = false }, logger: logger).run()
            finished.signal()
        }.start()
        try withExtendedLifetime(holder) { () throws in
            // It waits for the holder (and says whom it waits for) instead of failing or going ahead.
            #expect(eventually { messages.all.contains("waiting for the update lock held by pid \(getpid())") }, "\(messages.all)")
            #expect(finished.wait(timeout: .now()) == .timedOut, "still waiting while the lock is held")
            #expect(try world.head(world.factory) == before)
        }
        holder = nil // lets go
        #expect(finished.wait(timeout: .now() + 60) == .success, "went ahead once the holder let go")
        let report = try #require(outcome.report)
        #expect(report.succeeded, "\(report.error ?? "")")
        #expect(try world.head(world.factory) == world.originHead())
    }

    @Test func dryRunReportsIncomingCommitsAndChangesNothing() throws {
        let world = try GitWorld()
        try world.commit(in: world.factory, ["local.txt": "l\n"], message: "Local")
        try world.pushUpstream(["app.py": "print('v2')\n"], message: "Upstream v2")
        try world.pushUpstream(["app.py": "print('v3')\n"], message: "Upstream v3")
        let before = try world.checkoutSnapshot()
        let report = update(world) { $0.dryRun = true }
        #expect(report.succeeded)
        #expect(report.dryRun)
        #expect(report.integration == .rebase)
        #expect(report.wouldConflict == false)
        #expect(report.commits.map(\.summary) == ["Upstream v2", "Upstream v3"])
        try expectSame(world.checkoutSnapshot(), before)
        #expect(UpdateHistory(gitDirectory: world.factory + "/.git").entries().isEmpty)
    }

    @Test func dryRunPredictsAConflict() throws {
        let world = try GitWorld()
        try world.commit(in: world.factory, ["app.py": "print('local')\n"], message: "Local")
        try world.pushUpstream(["app.py": "print('upstream')\n"], message: "Upstream")
        let before = try world.checkoutSnapshot()
        let report = update(world) { $0.dryRun = true }
        #expect(report.wouldConflict == true)
        #expect(report.paths == ["app.py"])
        try expectSame(world.checkoutSnapshot(), before)
    }

    @Test func invalidBranchNamesAreRejectedBeforeAnythingRuns() throws {
        let world = try GitWorld()
        for name in ["-x", "a..b", "", "with space", "bad~name", "ends.lock"] {
            let report = update(world) { $0.branch = name }
            #expect(report.failure == .invalidBranch, "\(name)")
        }
    }

    @Test func historyRecordsFailuresToo() throws {
        let world = try GitWorld()
        try world.write(world.factory, "README.md", "dirty\n")
        _ = update(world)
        let last = UpdateHistory(gitDirectory: world.factory + "/.git").last
        #expect(last?.failure == .preflight)
        #expect(!FileManager.default.fileExists(atPath: world.factory + "/history.jsonl"))
    }
}

/// An update's report, handed over from the thread that ran it.
final class ReportBox: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: UpdateReport?
    var report: UpdateReport? {
        get { lock.withLock { stored } }
        set { lock.withLock { stored = newValue } }
    }
}

/// Compares snapshots field by field so a failure says what differs.
func expectSame(_ after: CheckoutSnapshot, _ before: CheckoutSnapshot, exactIndex: Bool = true, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(after.head == before.head, sourceLocation: sourceLocation)
    #expect(after.symbolicHead == before.symbolicHead, sourceLocation: sourceLocation)
    #expect(after.status == before.status, sourceLocation: sourceLocation)
    #expect(after.stagedEntries == before.stagedEntries, sourceLocation: sourceLocation)
    if exactIndex { #expect(after.index == before.index, "index bytes differ", sourceLocation: sourceLocation) }
    #expect(after.files.keys.sorted() == before.files.keys.sorted(), sourceLocation: sourceLocation)
    for (path, data) in before.files where after.files[path] != data {
        Issue.record("\(path) changed", sourceLocation: sourceLocation)
    }
}
