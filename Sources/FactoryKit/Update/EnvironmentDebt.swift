import FoundationEssentials
import FactoryBasics
import Glibc

/// An environment that is known not to match the code on disk: a rollback or a crash recovery
/// could not re-sync it. `.git/factoryctl/needs-sync.json`. It is a reason to sync, never a
/// reason to refuse moving forward: the next update syncs whatever it ends on (the new target,
/// or the code already there), and a successful sync clears it. Until then `status` and the
/// fleet page say the factory needs attention.
public struct EnvironmentDebt: Codable, Sendable, Equatable {
    /// The commit checked out when the sync was found owed.
    public var commit: String?
    public var reason: String
    public var since: Double

    public init(commit: String?, reason: String, since: Double = Date().timeIntervalSince1970) {
        self.commit = commit
        self.reason = reason
        self.since = since
    }

    public static func path(gitDirectory: String) -> String {
        gitDirectory + "/factoryctl/needs-sync.json"
    }

    public static func read(gitDirectory: String) -> EnvironmentDebt? {
        guard let data = FileManager.default.contents(atPath: path(gitDirectory: gitDirectory)) else { return nil }
        // A record that cannot be read still says a sync is owed.
        return (try? JSONDecoder().decode(EnvironmentDebt.self, from: data))
            ?? EnvironmentDebt(commit: nil, reason: "an unreadable needs-sync record", since: 0)
    }

    /// Records the debt. Throws when it cannot be written: the caller must then keep its own record.
    public func record(gitDirectory: String) throws {
        let path = Self.path(gitDirectory: gitDirectory)
        try FileManager.default.createDirectory(atPath: path.deletingLastPathComponent, withIntermediateDirectories: true)
        try FileWriting.replace(path, with: Array(try JSONEncoder.factory.encode(self)))
    }

    public static func clear(gitDirectory: String) {
        unlink(path(gitDirectory: gitDirectory))
    }

    /// "the environment needs a sync (since …): <reason>", for status and messages.
    public var summary: String {
        "the environment does not match the code (\(reason)); the next update syncs it"
    }
}
