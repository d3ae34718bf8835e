import FoundationEssentials
import FactoryBasics
import Glibc
import GitKit

/// The commit whose dependencies the environment was last synced for, in
/// `.git/factoryctl/synced-commit`; cleared while a sync runs, so a failed or killed sync leaves
/// none and the next update syncs.
enum SyncMarker {
    static func path(_ gitDirectory: String) -> String { gitDirectory + "/factoryctl/synced-commit" }

    static func read(gitDirectory: String) -> ObjectID? {
        guard let data = FileManager.default.contents(atPath: path(gitDirectory)) else { return nil }
        return ObjectID(hex: String(decoding: data, as: UTF8.self).trimmed)
    }

    static func write(_ commit: ObjectID, gitDirectory: String) {
        try? FileManager.default.createDirectory(atPath: gitDirectory + "/factoryctl", withIntermediateDirectories: true)
        try? FileWriting.replace(path(gitDirectory), with: Array((commit.hex + "\n").utf8))
    }

    static func clear(gitDirectory: String) {
        unlink(path(gitDirectory))
    }

    /// Exactly `uv sync` (the default; UA_FACTORY_SYNC_COMMAND may name another program).
    static func isUvSync(_ argv: [String]) -> Bool {
        argv.count == 2 && argv[0].lastPathComponent == "uv" && argv[1] == "sync"
    }

    /// A file whose change can change what `uv sync` installs.
    static func isDependencyInput(_ path: String) -> Bool {
        let name = path.lastPathComponent
        return ["pyproject.toml", "uv.lock", ".python-version", "uv.toml", "setup.py", "setup.cfg"].contains(name)
            || (name.hasPrefix("requirements") && name.hasSuffix(".txt"))
    }
}
