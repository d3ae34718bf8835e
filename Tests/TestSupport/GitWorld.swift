import Foundation

/// One test's world: a bare `origin`, a `seed` clone that plays HQ's developers, and the `factory`
/// clone under test with a `.env` (ignored), an untracked note, and an ignored cache directory.
/// A fake `systemctl` sits on the world's PATH. Everything lives in one temp dir.
public final class GitWorld: @unchecked Sendable {
    public let directory: TemporaryDirectory
    public let origin: String
    public let seed: String
    public let factory: String
    public let bin: String
    public let systemctlState: String

    /// Files that no step may ever change, relative to the factory.
    public static let protectedFiles = [".env", "notes-untracked.txt", "cache/ignored.bin"]

    public init() throws {
        directory = TemporaryDirectory("factoryctl-world")
        origin = directory.join("origin.git")
        seed = directory.join("seed")
        factory = directory.join("factory")
        bin = directory.join("bin")
        systemctlState = directory.join("systemctl")
        for dir in [bin, systemctlState] {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        }
        try FakeSystemctl.install(in: bin)

        try git(["init", "--quiet", "--bare", "--initial-branch=main", origin], in: directory.path)
        try git(["clone", "--quiet", origin, seed], in: directory.path)
        try configureIdentity(seed)
        try write(seed, "pyproject.toml", Self.pyproject(dependencies: []))
        try write(seed, ".gitignore", ".env\n.venv/\ncache/\n__pycache__/\n")
        try write(seed, "app.py", "print('factory v1')\n")
        try write(seed, "README.md", "sample factory\n")
        try Command.check(["uv", "lock", "--offline", "--quiet"], in: seed, environment: environment)
        try git(["add", "-A"], in: seed)
        try git(["commit", "--quiet", "-m", "Initial factory"], in: seed)
        try git(["push", "--quiet", "origin", "main"], in: seed)

        try git(["clone", "--quiet", origin, factory], in: directory.path)
        try configureIdentity(factory)
        try write(factory, ".env", "UA_OPS_TOKEN=secret-token\nDATABASE_URL=postgres://x\n")
        try write(factory, "notes-untracked.txt", "operator notes\n")
        try FileManager.default.createDirectory(atPath: factory + "/cache", withIntermediateDirectories: true)
        try Data((0...255).map { UInt8($0) }).write(to: URL(fileURLWithPath: factory + "/cache/ignored.bin"))
    }

    /// Writes an executable `#!/bin/sh` script into the world's bin directory; returns its path.
    /// For sync commands that stamp, stall or fork.
    public func script(_ name: String, _ body: String) throws -> String {
        let path = bin + "/" + name
        try Data(("#!/bin/sh\n" + body).utf8).write(to: URL(fileURLWithPath: path))
        chmod(path, 0o755)
        return path
    }

    /// Another factory cloned from the same origin, with its own `.env`.
    public func addFactory(_ name: String) throws -> String {
        let path = directory.join(name)
        try git(["clone", "--quiet", origin, path], in: directory.path)
        try configureIdentity(path)
        try write(path, ".env", "UA_OPS_TOKEN=secret-token\n")
        return path
    }

    public static func pyproject(dependencies: [String]) -> String {
        let deps = dependencies.map { "\"\($0)\"" }.joined(separator: ", ")
        return """
        [project]
        name = "sample-factory"
        version = "0.1.0"
        requires-python = ">=3.8"
        dependencies = [\(deps)]

        """
    }

    /// The environment for git, uv and the pipeline: fake systemctl first on PATH, uv offline.
    public var environment: [String: String] {
        var env = ProcessInfo.processInfo.environment
        env["PATH"] = bin + ":" + (env["PATH"] ?? "/usr/bin:/bin")
        env["FAKE_SYSTEMCTL_DIR"] = systemctlState
        env["UV_OFFLINE"] = "1"
        env["UV_PYTHON_DOWNLOADS"] = "never"
        env["UV_NO_PROGRESS"] = "1"
        env["GIT_CONFIG_NOSYSTEM"] = "1"
        env["GIT_TERMINAL_PROMPT"] = "0"
        for key in ["UA_FACTORY_DIR", "UA_FACTORY_SERVICE", "UA_FACTORY_SYNC_COMMAND", "UA_REDIS_URL", "FACTORY_ROLE", "UA_FACTORY_ID"] {
            env.removeValue(forKey: key)
        }
        return env
    }

    // MARK: git as an oracle

    @discardableResult
    public func git(_ arguments: [String], in directory: String) throws -> String {
        try Command.check(["git"] + arguments, in: directory, environment: environment)
    }

    public func configureIdentity(_ clone: String) throws {
        try git(["config", "user.name", "Factory Tester"], in: clone)
        try git(["config", "user.email", "tester@example.com"], in: clone)
    }

    public func write(_ clone: String, _ path: String, _ content: String) throws {
        let full = clone + "/" + path
        try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data(content.utf8).write(to: URL(fileURLWithPath: full))
    }

    public func read(_ clone: String, _ path: String) -> String? {
        FileManager.default.contents(atPath: clone + "/" + path).map { String(decoding: $0, as: UTF8.self) }
    }

    /// Commits `files` in `clone`; returns the new HEAD.
    @discardableResult
    public func commit(in clone: String, _ files: [String: String], message: String, branch: String? = nil) throws -> String {
        if let branch { try git(["checkout", "--quiet", branch], in: clone) }
        for (path, content) in files { try write(clone, path, content) }
        try git(["add", "--"] + files.keys.sorted(), in: clone)
        try git(["commit", "--quiet", "-m", message], in: clone)
        return try head(clone)
    }

    /// Commits in the seed and pushes, as HQ's developers do.
    @discardableResult
    public func pushUpstream(_ files: [String: String], message: String, branch: String = "main") throws -> String {
        let sha = try commit(in: seed, files, message: message)
        try git(["push", "--quiet", "origin", "HEAD:refs/heads/\(branch)"], in: seed)
        return sha
    }

    public func head(_ clone: String) throws -> String {
        try git(["rev-parse", "HEAD"], in: clone)
    }

    public func originHead(_ branch: String = "main") throws -> String {
        try git(["rev-parse", "refs/heads/\(branch)"], in: origin)
    }

    // MARK: Snapshots

    /// Bytes of the files no step may touch.
    public func protectedSnapshot() -> [String: Data] {
        var snapshot: [String: Data] = [:]
        for path in Self.protectedFiles {
            snapshot[path] = FileManager.default.contents(atPath: factory + "/" + path)
        }
        return snapshot
    }

    /// Everything that "exactly as it was" means: HEAD, the branch, git status, the index bytes,
    /// and every file in the work tree outside `.git` and `.venv`.
    public func checkoutSnapshot() throws -> CheckoutSnapshot {
        var files: [String: Data] = [:]
        let root = URL(fileURLWithPath: factory)
        let enumerator = FileManager.default.enumerator(at: root, includingPropertiesForKeys: [.isRegularFileKey])!
        for case let url as URL in enumerator {
            let relative = String(url.path.dropFirst(root.path.count + 1))
            if relative == ".git" || relative == ".venv" { enumerator.skipDescendants(); continue }
            if (try? url.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true {
                files[relative] = try Data(contentsOf: url)
            }
        }
        return CheckoutSnapshot(
            head: try git(["rev-parse", "HEAD"], in: factory),
            symbolicHead: (try? git(["symbolic-ref", "-q", "HEAD"], in: factory)) ?? "(detached)",
            status: try git(["status", "--porcelain=v1", "--ignored", "--untracked-files=all"], in: factory),
            stagedEntries: try git(["ls-files", "--stage"], in: factory),
            index: FileManager.default.contents(atPath: factory + "/.git/index") ?? Data(),
            files: files)
    }
}

public struct CheckoutSnapshot: Equatable, Sendable {
    public let head: String
    public let symbolicHead: String
    public let status: String
    /// `git ls-files --stage`: the index's content, without stat data.
    public let stagedEntries: String
    /// The raw index file: equal only if nothing rewrote it.
    public let index: Data
    public let files: [String: Data]
}

/// `systemctl --user` stand-in: records argv in `calls.log` and keeps service state in files.
/// `touch <state>/<svc>.fail-next-restart` makes the next restart leave the service failed.
public enum FakeSystemctl {
    /// The stand-in itself, shared with `scripts/faults.sh`.
    public static let source = Package.root + "/Tests/fixtures/fake-systemctl"

    public static func install(in bin: String) throws {
        let path = bin + "/systemctl"
        try FileManager.default.copyItem(atPath: source, toPath: path)
        chmod(path, 0o755)
    }

    /// The recorded calls, one argv line each.
    public static func calls(_ stateDirectory: String) -> [String] {
        guard let data = FileManager.default.contents(atPath: stateDirectory + "/calls.log") else { return [] }
        return String(decoding: data, as: UTF8.self).split(separator: "\n").map(String.init)
    }
}
