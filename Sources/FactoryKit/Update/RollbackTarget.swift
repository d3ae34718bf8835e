import FoundationEssentials
import FactoryBasics
import GitKit

/// Where `factoryctl rollback` (and a `system:rollback_factory` mission) goes: the commit the
/// checkout was on before the last successful update that brought it to what it runs now, from
/// `.git/factoryctl/history.jsonl`, or an explicit commit.
public struct RollbackTarget: Sendable, Equatable {
    public let commit: ObjectID
    public let branch: String
    /// The update being undone, when the target came from the history.
    public let undoing: String?

    public struct Missing: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    /// `explicit` (on `branch`, else the branch checked out) or the history's previous commit.
    public static func resolve(factoryDirectory: String, explicit: ObjectID?, branch: String?) throws -> RollbackTarget {
        let repository = try Repository.open(at: ReleasesLayout.repositoryPath(for: factoryDirectory))
        let head = try repository.head()
        if let explicit {
            guard let name = branch ?? head.branchName else {
                throw Missing(description: "HEAD is detached: name the branch to roll back (--branch)")
            }
            return RollbackTarget(commit: explicit, branch: name, undoing: nil)
        }
        guard let current = head.commit?.hex else { throw Missing(description: "HEAD has no commit") }
        let history = UpdateHistory(gitDirectory: repository.gitDirectory).entries()
        // The newest successful update (not itself a rollback) that moved the checkout to what it
        // runs now: a second rollback goes further back instead of undoing the first.
        guard let last = history.reversed().first(where: {
                  $0.succeeded && $0.changed && !$0.dryRun && $0.to == current && $0.integration != .rewind }),
              let from = last.from.flatMap(ObjectID.init(hex:)) else {
            throw Missing(description: "no successful update to \(String(current.prefix(7))) is recorded in .git/factoryctl/history.jsonl; nothing to roll back to (pass --to SHA)")
        }
        let name = last.previousBranch ?? branch ?? last.branch
        let what = "\(last.branch) \(last.shortFrom ?? "?") → \(last.shortTo ?? "?")\(last.jobID.map { " (\($0))" } ?? "")"
        return RollbackTarget(commit: from, branch: name, undoing: what)
    }
}
