import FactoryKit
import Foundation
import GitKit
import Logging
import Testing
import TestSupport

/// Pinned commits and anti-rewind through the update pipeline, with the git CLI as the oracle.
@Suite struct PinnedCommitTests {
    func update(_ world: GitWorld, _ configure: (inout UpdateRequest) -> Void = { _ in }) -> UpdateReport {
        var request = UpdateRequest(factoryDirectory: world.factory)
        request.environment = world.environment
        request.sync = false
        request.settleSeconds = 0
        configure(&request)
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        return UpdatePipeline(request: request, logger: logger).run()
    }

    func pin(_ sha: String) -> ObjectID { ObjectID(hex: sha)! }

    @Test func aPinnedUpdateMovesExactlyThereWhileOriginMovesOn() throws {
        let world = try GitWorld()
        let two = try world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        try world.pushUpstream(["app.py": "print('v3')\n"], message: "v3")
        let report = update(world) { $0.commit = pin(two) }
        #expect(report.succeeded, "\(report.error ?? "")")
        #expect(try world.head(world.factory) == two)
        #expect(report.pinned == two && report.upstream == two && report.to == two)
        #expect(report.commitCount == 1)
    }

    @Test func aCommitNotOnTheBranchIsRefusedAndNothingChanges() throws {
        let world = try GitWorld()
        let before = try world.checkoutSnapshot()
        let side = try world.pushUpstream(["side.py": "x = 1\n"], message: "side work", branch: "side")
        let report = update(world) { $0.commit = pin(side) }
        #expect(report.failure == .commitNotOnBranch, "\(report.error ?? "")")
        #expect(report.error?.contains("is not on origin/main") == true, "\(report.error ?? "")")
        let unknown = update(world) { $0.commit = pin(String(repeating: "ab", count: 20)) }
        #expect(unknown.failure == .commitNotOnBranch)
        #expect(unknown.error?.contains("is not in origin") == true, "\(unknown.error ?? "")")
        try expectSame(world.checkoutSnapshot(), before)
    }

    @Test func olderCodeIsRefusedUnlessRewindIsAllowedAndThePinnedCommitDedupes() throws {
        let world = try GitWorld()
        let two = try world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        let three = try world.pushUpstream(["app.py": "print('v3')\n"], message: "v3")
        #expect(update(world).succeeded)
        #expect(try world.head(world.factory) == three)
        let protected = world.protectedSnapshot()
        let before = try world.checkoutSnapshot()

        let refused = update(world) { $0.commit = pin(two) }
        #expect(refused.failure == .rewindRefused)
        #expect(refused.error?.contains("older than \(three.prefix(7))") == true, "\(refused.error ?? "")")
        try expectSame(world.checkoutSnapshot(), before)

        let rewound = update(world) { $0.commit = pin(two); $0.allowRewind = true }
        #expect(rewound.succeeded, "\(rewound.error ?? "")")
        #expect(rewound.integration == .rewind && rewound.changed)
        #expect(try world.head(world.factory) == two)
        #expect(try world.git(["status", "--porcelain", "--untracked-files=no"], in: world.factory).isEmpty)
        #expect(world.protectedSnapshot() == protected)

        // The same pin again: nothing to do, not even a fetch.
        let again = update(world) { $0.commit = pin(two) }
        #expect(again.succeeded && !again.changed && again.integration == .upToDate)
        #expect(again.stepsMs?["fetch"] == nil, "\(again.stepsMs ?? [:])")
        // Moving forward again needs no permission.
        let forward = update(world) { $0.commit = pin(three) }
        #expect(forward.succeeded && forward.changed && forward.integration == .fastForward)
    }

    @Test func aForcePushThatDropsRunningCommitsIsRefusedUnlessAllowed() throws {
        let world = try GitWorld()
        let first = try world.head(world.seed)
        try world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        #expect(update(world).succeeded)
        let before = try world.checkoutSnapshot()
        // Someone rewrites main: v2 is gone, v2' replaces it.
        try world.git(["reset", "--quiet", "--hard", first], in: world.seed)
        let rewritten = try world.commit(in: world.seed, ["app.py": "print('v2 prime')\n"], message: "v2'")
        try world.git(["push", "--quiet", "--force", "origin", "HEAD:refs/heads/main"], in: world.seed)

        let refused = update(world)
        #expect(refused.failure == .rewindRefused)
        #expect(refused.error?.contains("force-push dropped 1 commit") == true, "\(refused.error ?? "")")
        try expectSame(world.checkoutSnapshot(), before)

        let allowed = update(world) { $0.allowRewind = true }
        #expect(allowed.succeeded, "\(allowed.error ?? "")")
        #expect(try world.head(world.factory) == rewritten)
    }

    @Test func localCommitsOnTopOfCodeBeingRewoundAreNeverDropped() throws {
        let world = try GitWorld()
        let two = try world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        try world.pushUpstream(["app.py": "print('v3')\n"], message: "v3")
        #expect(update(world).succeeded)
        let local = try world.commit(in: world.factory, ["local.txt": "operator fix\n"], message: "local fix")
        let report = update(world) { $0.commit = pin(two); $0.allowRewind = true }
        #expect(report.failure == .rewindRefused)
        #expect(report.error?.contains("local commits") == true, "\(report.error ?? "")")
        #expect(try world.head(world.factory) == local)
    }
}
