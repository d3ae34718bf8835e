import Foundation
import GitKit
import Testing
import TestSupport

@Suite struct GitKitTests {
    init() throws { try GitLibrary.initialize() }

    @Test func objectIDAcceptsOnlyFullLowercaseHex() {
        #expect(ObjectID(hex: String(repeating: "a", count: 40)) != nil)
        #expect(ObjectID(hex: String(repeating: "A", count: 40)) == nil)
        #expect(ObjectID(hex: "abc") == nil)
        #expect(ObjectID(hex: String(repeating: "g", count: 40)) == nil)
    }

    @Test func branchNamesFollowGitRules() {
        #expect(Repository.isValidBranchName("main"))
        #expect(Repository.isValidBranchName("release/2026-11"))
        #expect(!Repository.isValidBranchName("a..b"))
        #expect(!Repository.isValidBranchName("x.lock"))
        #expect(!Repository.isValidBranchName("has space"))
        #expect(!Repository.isValidBranchName("HEAD"))
    }

    @Test func openingSomethingThatIsNotARepositoryThrowsLibgit2sMessage() throws {
        let directory = TemporaryDirectory()
        let error = #expect(throws: GitError.self) { try Repository.open(at: directory.path) }
        #expect(error?.kind == .notFound)
        #expect(error?.message.isEmpty == false)
    }

    @Test func headAndCommitsMatchTheGitCLI() throws {
        let world = try GitWorld()
        for index in 1...3 { try world.pushUpstream(["f.txt": "\(index)\n"], message: "Commit \(index)") }
        let repository = try Repository.open(at: world.seed)
        let head = try repository.head()
        #expect(head.branchName == "main")
        #expect(head.commit?.hex == (try world.head(world.seed)))
        let root = try world.git(["rev-list", "--max-parents=0", "HEAD"], in: world.seed)
        let commits = try repository.commits(from: ObjectID(hex: root), to: head.commit!)
        #expect(commits.map(\.summary) == ["Commit 1", "Commit 2", "Commit 3"])
        #expect(commits.last?.authorEmail == "tester@example.com")
    }

    @Test func trackedChangesIgnoreUntrackedAndIgnoredFiles() throws {
        let world = try GitWorld()
        let repository = try Repository.open(at: world.factory)
        #expect(try repository.trackedChanges().isEmpty)
        try world.write(world.factory, "app.py", "changed\n")
        try FileManager.default.removeItem(atPath: world.factory + "/README.md")
        let changes = try repository.trackedChanges().sorted { $0.path < $1.path }
        #expect(changes == [TrackedChange(path: "README.md", change: "deleted"), TrackedChange(path: "app.py", change: "modified")])
    }
}

@Suite struct WorkTreeVersionTests {
    @Test func onlyFilesHoldingNeitherVersionAreListed() throws {
        let world = try GitWorld()
        let from = try #require(ObjectID(hex: try world.head(world.factory)))
        let to = try #require(ObjectID(hex: try world.pushUpstream(["app.py": "print('v2 is longer than v1')\n", "added.py": "x = 1\n"],
                                                                    message: "v2")))
        try world.git(["fetch", "--quiet", "origin"], in: world.factory)
        let repository = try Repository.open(at: world.factory)
        let paths = ["app.py", "added.py", "README.md"]
        // Everything still at `from` (added.py absent, as in `from`).
        #expect(try repository.workTreeMatchesNeither(paths, from, to, cutShortLimit: 1) == [])
        // Partly at `to`, one file cut short while it was written: still only the two versions.
        try world.write(world.factory, "added.py", "x = 1\n")
        try world.write(world.factory, "app.py", "print('v2 is lon")
        #expect(try repository.workTreeMatchesNeither(paths, from, to, cutShortLimit: 1) == [])
        // An edit, and a file removed that both versions have.
        try world.write(world.factory, "app.py", "print('operator')\n")
        try FileManager.default.removeItem(atPath: world.factory + "/README.md")
        #expect(try repository.workTreeMatchesNeither(paths, from, to, cutShortLimit: 1) == ["app.py", "README.md"])
    }

    @Test func moreFilesCutShortThanTheLimitAreAllListed() throws {
        let world = try GitWorld()
        let from = try #require(ObjectID(hex: try world.head(world.factory)))
        let to = try #require(ObjectID(hex: try world.pushUpstream(["app.py": "print('v2')\nprint('more')\n", "lib.py": "x = 1\ny = 2\n"],
                                                                    message: "v2")))
        try world.git(["fetch", "--quiet", "origin"], in: world.factory)
        let repository = try Repository.open(at: world.factory)
        // Each file a beginning of its `to` version: one interrupted write explains one of them, not two.
        try world.write(world.factory, "app.py", "print('v2')\n")
        try world.write(world.factory, "lib.py", "x = 1\n")
        #expect(try repository.workTreeMatchesNeither(["app.py", "lib.py"], from, to, cutShortLimit: 1) == ["app.py", "lib.py"])
    }

    @Test func withNoAllowanceAFileCutShortIsListed() throws {
        let world = try GitWorld()
        let from = try #require(ObjectID(hex: try world.head(world.factory)))
        let to = try #require(ObjectID(hex: try world.pushUpstream(["app.py": "print('v2')\nprint('more')\n"], message: "v2")))
        try world.git(["fetch", "--quiet", "origin"], in: world.factory)
        let repository = try Repository.open(at: world.factory)
        try world.write(world.factory, "app.py", "print('v2')\n")
        #expect(try repository.workTreeMatchesNeither(["app.py"], from, to, cutShortLimit: 0) == ["app.py"])
    }
}
