import FoundationEssentials
import FactoryBasics
import Glibc
import GitKit
import Logging

/// `factoryctl releases init`: turns an in-place checkout into the releases layout.
///
/// In order, each step safe to run again: (1) build the first release, a work tree of the commit
/// the checkout runs, and sync it where it will run (a failure removes it: nothing else changed);
/// (2) record the untracked and ignored paths that move (`layout.json`, `ready: false`); (3) move
/// them to shared/ one rename each (never over an existing file), and link them into the release;
/// (4) make the repository bare and point `current` at the release; (5) remove the tracked files
/// from the old work tree, only those whose content is the commit's; (6) `ready: true`.
/// A run killed part-way is finished by the next `releases init`.
public struct ReleasesInit {
    public var factoryDirectory: String
    public var sync = true
    public var syncCommand: [String] = ["uv", "sync"]
    public var syncTimeout: Double = 600
    public var environment: [String: String]
    public var logger: Logger
    /// Told the process group of the first release's sync as it starts (bootstrap records it, so
    /// the next run can end one a killed run left).
    public var onSyncSpawn: (Int32) -> Void = { _ in }

    public init(factoryDirectory: String, environment: [String: String], logger: Logger) {
        self.factoryDirectory = factoryDirectory
        self.environment = environment
        self.logger = logger
    }

    public struct Outcome: Codable, Sendable {
        public var factoryDirectory: String
        public var release: String
        public var commit: String
        public var branch: String
        /// Paths moved to shared/ and linked into every release.
        public var shared: [String]
        /// Left where they were and no longer used (the old environment, caches), or tracked
        /// files that differed from the commit (kept, never deleted).
        public var leftInPlace: [String]
        public var alreadyDone: Bool
        public var synced: Bool

        enum CodingKeys: String, CodingKey {
            case release, commit, branch, shared, synced
            case factoryDirectory = "factory_dir", leftInPlace = "left_in_place", alreadyDone = "already_done"
        }
    }

    /// Names never moved to shared/: the environment and caches (rebuilt per release), and the
    /// layout's own entries.
    static let notShared: Set<String> = [".venv", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".tox", ".nox"]
    static let reserved: Set<String> = ["releases", "shared", "current"]

    public func run() throws -> Outcome {
        var root = factoryDirectory
        while root.count > 1, root.hasSuffix("/") { root.removeLast() }
        let layout = ReleasesLayout(root: root)
        if ReleasesLayout.detect(root) != nil, let settings = layout.settings(), settings.ready, let name = layout.liveName {
            let release = layout.release(name)
            return Outcome(factoryDirectory: root, release: name, commit: release?.commit ?? "", branch: release?.branch ?? "",
                           shared: settings.linked, leftInPlace: [], alreadyDone: true, synced: false)
        }
        let repository = try open(layout)
        let lock = try CheckoutLock.acquire(gitDirectory: layout.gitDirectory, wait: false)
        defer { withExtendedLifetime(lock) {} }
        guard !ApplyJournal.exists(gitDirectory: layout.gitDirectory) else {
            throw FactoryError.failed("an interrupted update left its record in \(ApplyJournal.path(gitDirectory: layout.gitDirectory)); run `factoryctl update` once to repair it, then init again. Nothing was changed")
        }
        let head = try repository.head()
        guard case .branch(let branch, let commit) = head else {
            throw FactoryError.failed("HEAD is not on a branch (\(head)); check out the branch the factory follows first. Nothing was changed")
        }
        let name = ReleasesLayout.name(for: commit.hex)
        var synced = false
        var settings = layout.settings()
        if settings == nil {
            try preflight(repository, commit)
            synced = try buildFirstRelease(layout, repository, name: name, commit: commit, branch: branch)
            settings = ReleasesLayout.Settings(linked: try sharedCandidates(repository, layout), ready: false,
                                               createdAt: Date().timeIntervalSince1970)
            try layout.write(settings!)
        }
        guard var settings else { throw FactoryError.failed("unreachable") }
        try moveToShared(settings.linked, layout)
        try layout.linkShared(layout.linkedPaths(extra: try FactoryEnvironment(environment).sharedPaths()), into: layout.path(of: name))
        try repository.setConfig("core.bare", true)
        if layout.liveName != name { try layout.swap(to: name) }
        let left = try removeOldWorkTree(layout, repository, commit: commit)
        settings.ready = true
        try layout.write(settings)
        return Outcome(factoryDirectory: root, release: name, commit: commit.hex, branch: branch, shared: settings.linked,
                       leftInPlace: left, alreadyDone: false, synced: synced)
    }

    private func open(_ layout: ReleasesLayout) throws -> Repository {
        do {
            return try Repository.open(at: layout.gitDirectory)
        } catch {
            throw FactoryError.invalidArgument("\(layout.root) is not a git checkout (\(error)); set --factory-dir or UA_FACTORY_DIR")
        }
    }

    /// A clean checkout on a commit, without its own `releases`, `shared` or `current`.
    private func preflight(_ repository: Repository, _ commit: ObjectID) throws {
        guard repository.workingDirectory != nil else {
            throw FactoryError.failed("\(factoryDirectory) is a bare repository, not a checkout")
        }
        guard repository.state == .clean else {
            throw FactoryError.failed("the checkout is in the middle of \(repository.state.inProgressName); finish or abort it first. Nothing was changed")
        }
        let changes = try repository.trackedChanges()
        guard changes.isEmpty else {
            throw FactoryError.failed("tracked files have local changes (\(changes.map { "\($0.change): \($0.path)" }.joined(separator: ", "))); commit, stash or revert them first. Nothing was changed")
        }
        let clashes = try repository.files(of: commit).map { String($0.path.split(separator: "/").first ?? "") }
            .filter { Self.reserved.contains($0) }
        guard clashes.isEmpty else {
            throw FactoryError.failed("the repository tracks \(Set(clashes).sorted().joined(separator: ", ")), which the releases layout uses at the top of the factory directory; nothing was changed")
        }
    }

    /// The release of the running commit, synced where it will run. A half-built one from a
    /// killed run is built again; a failed sync removes it.
    private func buildFirstRelease(_ layout: ReleasesLayout, _ repository: Repository, name: String, commit: ObjectID, branch: String) throws -> Bool {
        try? layout.remove(name)
        try ReleasesLayout.makeDirectories(layout.releasesDirectory)
        let path = layout.path(of: name)
        _ = try repository.addDetachedWorktree(name: name, path: path, commit: commit)
        try layout.record(.init(name: name, commit: commit.hex, branch: branch, complete: false, builtAt: Date().timeIntervalSince1970))
        var didSync = false
        if sync, !syncCommand.isEmpty {
            // The shared files are not linked yet: a sync that reads .env at build time would not
            // see it. uv does not; other sync commands can run with --no-sync and by hand after.
            logger.info("running \(syncCommand.joined(separator: " ")) in \(path)")
            let result = try ProcessRunner(environment: environment).run(syncCommand, in: path, timeout: syncTimeout, onSpawn: onSyncSpawn)
            guard result.succeeded else {
                try? layout.remove(name)
                throw FactoryError.failed("syncing the first release failed: \(result.failureSummary); removed it. Nothing else was changed")
            }
            didSync = true
        }
        try layout.record(.init(name: name, commit: commit.hex, branch: branch, complete: true, builtAt: Date().timeIntervalSince1970))
        return didSync
    }

    /// The untracked and ignored paths that move to shared/: all but the environment, caches and
    /// the layout's own entries.
    private func sharedCandidates(_ repository: Repository, _ layout: ReleasesLayout) throws -> [String] {
        let environmentName = environment["UV_PROJECT_ENVIRONMENT"].flatMap { $0.hasPrefix("/") ? nil : $0 } ?? ".venv"
        return try repository.untrackedAndIgnored().filter { entry in
            let parts = entry.split(separator: "/").map(String.init)
            guard let first = parts.first else { return false }
            if Self.reserved.contains(first) || first.hasPrefix(".current.") { return false }
            if parts.contains(where: { Self.notShared.contains($0) || $0 == environmentName }) { return false }
            return !entry.hasSuffix(".pyc")
        }
    }

    /// Each path renamed into shared/ (parents made); one already there and gone from the
    /// checkout was moved by an earlier run; one in both places is refused (never overwritten).
    private func moveToShared(_ paths: [String], _ layout: ReleasesLayout) throws {
        for entry in paths {
            let relative = String(entry.trimmingSuffix("/"))
            let source = layout.root + "/" + relative, target = layout.shared + "/" + relative
            let inCheckout = ReleasesLayout.exists(source) && ReleasesLayout.readLink(source) != target
            if !inCheckout { continue }
            guard !ReleasesLayout.exists(target) else {
                throw FactoryError.failed("\(relative) is both in \(layout.root) and in \(layout.shared); move one of them away by hand, then init again")
            }
            try ReleasesLayout.makeDirectories(target.deletingLastPathComponent)
            guard rename(source, target) == 0 else {
                throw FactoryError.failed("could not move \(source) to \(target): \(String(cString: strerror(errno)))")
            }
            logger.info("moved \(relative) to \(layout.shared)")
        }
    }

    /// The tracked files of the old work tree go (each is in the commit and in the release); a
    /// file whose content differs stays. Returns what is left: those, the old environment, caches.
    private func removeOldWorkTree(_ layout: ReleasesLayout, _ repository: Repository, commit: ObjectID) throws -> [String] {
        var left: [String] = []
        var directories: Set<String> = []
        for file in try repository.files(of: commit) {
            let path = layout.root + "/" + file.path
            guard ReleasesLayout.exists(path) else { continue }
            guard Repository.blobID(ofFileAt: path) == file.id else {
                left.append(file.path + " (differs from \(commit.short): kept)")
                continue
            }
            unlink(path)
            var parent = file.path.deletingLastPathComponent
            while !parent.isEmpty { directories.insert(parent); parent = parent.deletingLastPathComponent }
        }
        // Deepest first; a directory that still holds something (a cache, a kept file) stays.
        for directory in directories.sorted(by: { $0.count > $1.count }) { rmdir(layout.root + "/" + directory) }
        unlink(layout.gitDirectory + "/index")
        for name in ReleasesLayout.listDirectory(layout.root).sorted()
        where !Self.reserved.contains(name) && name != ".git" && !name.hasPrefix(".current.") {
            left.append(name)
        }
        return left
    }
}
