import FoundationEssentials
import FactoryBasics
import GitKit

/// What to update and how. Built by `factoryctl update` from flags and by the consumer from a mission.
public struct UpdateRequest: Sendable {
    public var factoryDirectory: String
    public var branch: String = "main"
    public var remote: String = "origin"
    public var restart = false
    public var services: [String] = [FactoryEnvironment.defaultService]
    public var dryRun = false
    public var sync = true
    public var syncCommand: [String] = ["uv", "sync"]
    /// Run the sync even when no dependency file changed since the environment was last synced.
    public var forceSync = false
    public var waitForLock = false
    /// Seconds to wait after restarting before checking `is-active`.
    public var settleSeconds: Double = 3
    /// Longest a single `uv sync` may run.
    public var syncTimeout: Double = 600
    /// Longest a network fetch may go without progress (connect, read) before it is ended
    /// (`--fetch-timeout`, `FACTORYCTL_FETCH_TIMEOUT`).
    public var fetchTimeout: Double = 120
    /// How to start `factoryctl fetch-helper` for network remotes; nil fetches in-process.
    public var fetchHelper: [String]? = IsolatedFetch.defaultHelper
    /// Whole-update deadline (the mission's `timeout_seconds`); nil for none.
    public var deadline: Date?
    public var jobID: String?
    /// Move exactly to this commit (it must be on origin's branch), not to the branch's tip.
    public var commit: ObjectID?
    /// Allow moving to older code, or past a force-push that dropped commits this factory runs.
    public var allowRewind = false
    /// Move only to upstream code whose commit an allowed signer signed (`UA_ALLOWED_SIGNERS`).
    public var signaturePolicy: CommitSignaturePolicy?
    /// After a restart, this URL must answer 2xx in time, else the update rolls back.
    public var healthGate: HealthGate?
    /// Environment for credentials and child processes.
    public var environment: [String: String] = ProcessInfo.processInfo.environment
    /// Record the outcome in `.git/factoryctl/history.jsonl`.
    public var recordHistory = true

    public init(factoryDirectory: String) {
        self.factoryDirectory = factoryDirectory
    }
}
