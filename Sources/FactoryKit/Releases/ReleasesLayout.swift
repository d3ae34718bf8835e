import FoundationEssentials
import FactoryBasics
import Glibc

/// The side-by-side layout (Capistrano's shape):
///
///     DIR/.git             the one repository (core.bare = true), every release's objects
///     DIR/releases/<name>  a complete release: a linked work tree of one commit (detached HEAD)
///                          with its own `.venv`, built and synced where it runs
///     DIR/shared/          untracked and ignored files (.env, data), linked into every release
///     DIR/current          → releases/<name>: the live release, swapped by one rename
///
/// A release is named by its commit (12 hex digits). What factoryctl knows about one lives in the
/// work tree's admin directory (`.git/worktrees/<name>/factoryctl-release.json`), so the release's
/// own `git status` stays clean; a release without it, or not marked complete, is half-built.
public struct ReleasesLayout: Sendable, Equatable {
    public let root: String

    public init(root: String) {
        self.root = root
    }

    public var current: String { root + "/current" }
    public var releasesDirectory: String { root + "/releases" }
    public var shared: String { root + "/shared" }
    public var gitDirectory: String { root + "/.git" }
    public func path(of name: String) -> String { releasesDirectory + "/" + name }
    func adminDirectory(of name: String) -> String { gitDirectory + "/worktrees/" + name }
    var settingsPath: String { gitDirectory + "/factoryctl/layout.json" }

    /// The layout `directory` is in: `DIR/current` is a symbolic link into `DIR/releases/` (or
    /// `directory` is that `current` link itself). nil: the in-place layout.
    public static func detect(_ directory: String) -> ReleasesLayout? {
        var path = directory
        while path.count > 1, path.hasSuffix("/") { path.removeLast() }
        // DIR, DIR/current, or a release's own directory (DIR/releases/<name>, where git puts an
        // operator who runs factoryctl from inside `current`).
        let parent = path.deletingLastPathComponent
        let candidates = [path, path.hasSuffix("/current") ? parent : nil,
                          parent.lastPathComponent == "releases" ? parent.deletingLastPathComponent : nil]
        for root in candidates.compactMap({ $0 }) {
            let layout = ReleasesLayout(root: root)
            if let target = readLink(layout.current), target.hasPrefix("releases/") || target.hasPrefix(layout.releasesDirectory + "/") {
                return layout
            }
        }
        return nil
    }

    /// Where the repository of `directory` is: the layout's `.git` in the releases layout (never a
    /// release's own admin directory), else `directory` itself.
    public static func repositoryPath(for directory: String) -> String {
        detect(directory)?.gitDirectory ?? directory
    }

    /// The release `current` names (nil when the link is missing or points elsewhere).
    public var liveName: String? {
        guard let target = Self.readLink(current) else { return nil }
        let name = target.lastPathComponent
        return Self.isReleaseName(name) ? name : nil
    }

    /// Release names: the commit's first 12 hex digits, and nothing else is ever touched.
    public static func name(for commit: String) -> String { String(commit.prefix(12)) }
    static func isReleaseName(_ name: String) -> Bool {
        name.utf8.count == 12 && name.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
    }

    // MARK: Releases

    /// What is recorded about one release.
    public struct Release: Codable, Sendable, Equatable {
        public var name: String
        public var commit: String
        public var branch: String
        /// Checked out, shared files linked and synced: it may go live.
        public var complete: Bool
        public var builtAt: Double
        /// When it last went live (epoch seconds).
        public var liveAt: Double?

        enum CodingKeys: String, CodingKey {
            case name, commit, branch, complete
            case builtAt = "built_at", liveAt = "live_at"
        }
    }

    public func release(_ name: String) -> Release? {
        guard Self.isReleaseName(name), let bytes = try? readSmallFile(adminDirectory(of: name) + "/factoryctl-release.json", limit: 64 * 1024),
              let release = try? JSONDecoder().decode(Release.self, from: Data(bytes)), release.name == name else { return nil }
        return release
    }

    func record(_ release: Release) throws {
        let data = try JSONEncoder().encode(release)
        try FileWriting.replace(adminDirectory(of: release.name) + "/factoryctl-release.json", with: Array(data))
    }

    /// Every directory under releases/ with a release name: complete ones with their record, the
    /// rest (half-built, or not ours) as nil. Newest first by when they last went live or were built.
    public func releases() -> (complete: [Release], halfBuilt: [String]) {
        var complete: [Release] = [], halfBuilt: [String] = []
        for name in Self.listDirectory(releasesDirectory) where Self.isReleaseName(name) {
            if let release = release(name), release.complete { complete.append(release) } else { halfBuilt.append(name) }
        }
        complete.sort { ($0.liveAt ?? $0.builtAt, $0.name) > ($1.liveAt ?? $1.builtAt, $1.name) }
        return (complete, halfBuilt.sorted())
    }

    /// The release to go back to: the complete one (not live) that was live most recently.
    public var previous: Release? {
        let live = liveName
        return releases().complete.filter { $0.name != live && $0.liveAt != nil }.max { $0.liveAt! < $1.liveAt! }
    }

    /// Points `current` at `name` in one step: a new link renamed over the old one.
    public func swap(to name: String) throws {
        let temporary = root + "/.current.\(getpid())"
        unlink(temporary)
        guard symlink("releases/" + name, temporary) == 0 else {
            throw FactoryError.failed("could not create \(temporary): \(String(cString: strerror(errno)))")
        }
        guard rename(temporary, current) == 0 else {
            let code = errno
            unlink(temporary)
            throw FactoryError.failed("could not swap \(current) to releases/\(name): \(String(cString: strerror(code)))")
        }
        if var release = release(name) {
            release.liveAt = Date().timeIntervalSince1970
            try? record(release)
        }
    }

    /// Removes a release's directory (without following any link in it: shared files stay) and
    /// its admin directory. Never the live one.
    public func remove(_ name: String) throws {
        guard Self.isReleaseName(name), name != liveName else { return }
        try Self.removeTree(adminDirectory(of: name))
        try Self.removeTree(path(of: name))
    }

    /// Removes half-built releases and all but the `keep` newest complete ones besides the live
    /// one and the rollback target. Returns what it removed.
    @discardableResult
    public func prune(keep: Int) -> [String] {
        let live = liveName
        let rollbackTarget = previous?.name
        let (complete, halfBuilt) = releases()
        var removed: [String] = []
        for name in halfBuilt where name != live && (try? remove(name)) != nil { removed.append(name) }
        let others = complete.filter { $0.name != live && $0.name != rollbackTarget }
        let room = max(0, keep - (rollbackTarget == nil ? 0 : 1))
        for release in others.dropFirst(room) where (try? remove(release.name)) != nil { removed.append(release.name) }
        return removed
    }

    // MARK: Shared files

    /// The paths linked into every release: the settings' list (what `releases init` moved) plus
    /// `UA_FACTORY_SHARED` (comma-separated; a name ending in "/" is a directory, made if missing).
    public func linkedPaths(extra: [String]) -> [String] {
        var paths = settings()?.linked ?? []
        for name in extra where !paths.contains(name) { paths.append(name) }
        return paths
    }

    /// Links `paths` (relative to shared/) into the release at `releasePath`. A path the release
    /// itself tracks is refused: the release's file and the shared one would disagree.
    func linkShared(_ paths: [String], into releasePath: String) throws {
        excludeFromStatus(paths)
        for entry in paths {
            let isDirectory = entry.hasSuffix("/")
            let relative = String(entry.trimmingSuffix("/"))
            try Self.validateSharedPath(relative)
            let target = shared + "/" + relative
            if isDirectory { try Self.makeDirectories(target) }
            guard Self.exists(target) else { continue }
            let link = releasePath + "/" + relative
            if let existing = Self.readLink(link), existing == target { continue }
            if Self.exists(link) {
                throw FactoryError.failed("the release tracks \(relative), which is also a shared path (\(target)); remove it from the repository or from UA_FACTORY_SHARED")
            }
            // A directory of the release that is itself a link (a tracked symlink) would put the
            // shared link wherever it points: refused.
            var parent = relative.deletingLastPathComponent
            while !parent.isEmpty {
                if Self.readLink(releasePath + "/" + parent) != nil {
                    throw FactoryError.failed("the release tracks \(parent) as a symbolic link, so the shared path \(relative) cannot be linked inside it; change the repository or UA_FACTORY_SHARED")
                }
                parent = parent.deletingLastPathComponent
            }
            try Self.makeDirectories(link.deletingLastPathComponent)
            guard symlink(target, link) == 0 else {
                throw FactoryError.failed("could not link \(link) to \(target): \(String(cString: strerror(errno)))")
            }
        }
    }

    /// The links are the release's own, not the app's files: listed in the repository's
    /// `info/exclude` (shared by every work tree), so `git status` in a release stays clean.
    func excludeFromStatus(_ paths: [String]) {
        let path = gitDirectory + "/info/exclude"
        let existing = (try? readSmallFile(path, limit: 1 << 20)).map { String(decoding: $0, as: UTF8.self) } ?? ""
        let lines = Set(existing.split(separator: "\n").map(String.init))
        let missing = paths.map { "/" + $0.trimmingSuffix("/") }.filter { !lines.contains($0) }
        guard !missing.isEmpty else { return }
        try? Self.makeDirectories(path.deletingLastPathComponent)
        let text = existing + (existing.isEmpty || existing.hasSuffix("\n") ? "" : "\n")
            + "# factoryctl: shared files linked into every release\n" + missing.joined(separator: "\n") + "\n"
        try? FileWriting.replace(path, with: Array(text.utf8))
    }

    static func validateSharedPath(_ path: String) throws {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        guard !path.isEmpty, !path.hasPrefix("/"), !parts.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." || $0 == ".git" }),
              !path.utf8.contains(where: { $0 < 0x20 || $0 == 0x7f }) else {
            throw FactoryError.invalidArgument("\(path.debugDescription) is not a shared path: a relative path inside the factory, without '.', '..', '.git' or control characters")
        }
    }

    // MARK: Settings

    /// `.git/factoryctl/layout.json`: what init moved to shared/, and whether init finished.
    public struct Settings: Codable, Sendable, Equatable {
        public var linked: [String]
        /// False while `releases init` is still moving files; the next init finishes it.
        public var ready: Bool
        public var createdAt: Double

        enum CodingKeys: String, CodingKey {
            case linked, ready
            case createdAt = "created_at"
        }
    }

    public func settings() -> Settings? {
        guard let bytes = try? readSmallFile(settingsPath, limit: 1 << 20) else { return nil }
        return try? JSONDecoder().decode(Settings.self, from: Data(bytes))
    }

    func write(_ settings: Settings) throws {
        try Self.makeDirectories(settingsPath.deletingLastPathComponent)
        try FileWriting.replace(settingsPath, with: Array(try JSONEncoder().encode(settings)))
    }

    // MARK: File system

    static func readLink(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink(path, &buffer, buffer.count - 1)
        guard count > 0 else { return nil }
        return String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func exists(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0
    }

    static func isDirectory(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
    }

    static func makeDirectories(_ path: String) throws {
        guard !path.isEmpty, !isDirectory(path) else { return }
        try makeDirectories(path.deletingLastPathComponent)
        if mkdir(path, 0o755) != 0, errno != EEXIST {
            throw FactoryError.failed("could not create \(path): \(String(cString: strerror(errno)))")
        }
    }

    static func listDirectory(_ path: String) -> [String] {
        guard let directory = opendir(path) else { return [] }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != ".", name != ".." { names.append(name) }
        }
        return names
    }

    /// `rm -rf` that never follows a symbolic link (a shared file linked into a release stays)
    /// and stays on one file system: every entry is opened relative to its directory's
    /// descriptor, with O_NOFOLLOW.
    static func removeTree(_ path: String) throws {
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        if (info.st_mode & S_IFMT) == S_IFDIR {
            let fd = Glibc.open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard fd >= 0 else { throw removeFailed(path) }
            try removeContents(of: fd, path: path, device: info.st_dev)
            guard rmdir(path) == 0 || errno == ENOENT else { throw removeFailed(path) }
        } else if unlink(path) != 0, errno != ENOENT {
            throw removeFailed(path)
        }
    }

    /// Empties the directory open at `fd` (and closes it).
    private static func removeContents(of fd: Int32, path: String, device: dev_t) throws {
        guard let directory = fdopendir(fd) else {
            close(fd)
            throw removeFailed(path)
        }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            if name != ".", name != ".." { names.append(name) }
        }
        for name in names {
            var info = stat()
            guard fstatat(fd, name, &info, AT_SYMLINK_NOFOLLOW) == 0 else { continue }
            if (info.st_mode & S_IFMT) == S_IFDIR {
                guard info.st_dev == device else {
                    throw FactoryError.failed("could not remove \(path)/\(name): another file system is mounted there")
                }
                let child = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                guard child >= 0 else { throw removeFailed(path + "/" + name) }
                try removeContents(of: child, path: path + "/" + name, device: device)
                guard unlinkat(fd, name, AT_REMOVEDIR) == 0 || errno == ENOENT else { throw removeFailed(path + "/" + name) }
            } else if unlinkat(fd, name, 0) != 0, errno != ENOENT {
                throw removeFailed(path + "/" + name)
            }
        }
    }

    private static func removeFailed(_ path: String) -> FactoryError {
        .failed("could not remove \(path): \(String(cString: strerror(errno)))")
    }
}

extension String {
    func trimmingSuffix(_ suffix: Character) -> Substring {
        var text = Substring(self)
        while text.count > 1, text.last == suffix { text.removeLast() }
        return text
    }
}

/// A small regular file's bytes (not through a link; at most `limit` bytes).
func readSmallFile(_ path: String, limit: Int) throws -> [UInt8] {
    var info = stat()
    guard lstat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG, Int(info.st_size) <= limit,
          let data = FileManager.default.contents(atPath: path) else {
        throw FactoryError.failed("\(path) is missing, not a regular file, or larger than \(limit) bytes")
    }
    return Array(data)
}
