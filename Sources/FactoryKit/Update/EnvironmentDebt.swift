import FoundationEssentials
import FactoryBasics
import Glibc
import GitKit

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

extension UpdatePipeline {
    /// Records that the environment is owed a sync; stops the run when the record cannot be
    /// written.
    ///
    /// The record is what makes the next update sync code that does not move, and what `status`
    /// and the fleet page show; without it an environment that does not match the code would look
    /// healthy, and an update that finds nothing to move would never sync it. So a record that
    /// cannot be written is a failure (`internal_error`), never a warning, and the safe outcome is
    /// to keep the intent record instead: it is the other record that makes the next run (update,
    /// rollback or consumer start) settle the environment before anything else. Nothing further
    /// happens in this run: no update goes on from a state the factory cannot record.
    func recordDebt(_ debt: EnvironmentDebt, gitDirectory: String) throws {
        do {
            try debt.record(gitDirectory: gitDirectory)
        } catch {
            let commit = debt.commit.flatMap(ObjectID.init(hex:))?.short ?? "the checked-out code"
            throw Stop(failure: .internalError,
                       message: "the environment of \(commit) does not match the code (\(debt.reason)), and that cannot be recorded in \(EnvironmentDebt.path(gitDirectory: gitDirectory)): \(error). Stopped here; the update record is kept, so the next `factoryctl update` (or consumer start) syncs the environment first. Free space or fix permissions in \(gitDirectory)/factoryctl, then run `factoryctl update` again",
                       keepJournal: true)
        }
    }
}
