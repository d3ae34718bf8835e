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
    /// After the restart and the health gate, the update is provisional this long: the services
    /// (and the health URL) are watched, and a failure reverts it (`SoakWatch`). 0: off.
    public var soakSeconds: Double = 0
    /// Move to a commit that failed here before (`Quarantine`), once.
    public var retryQuarantined = false
    /// The app's update lock (`UA_FACTORY_UPDATE_LOCK`), taken before anything changes; nil: none.
    public var appLockPath: String?
    /// Longest wait for the app to let go of its lock (0: try once).
    public var appLockTimeout: Double = AppLock.defaultTimeout
    /// Run without the app's lock (`--ignore-app-lock`): recorded in the report.
    public var ignoreAppLock = false
    /// Environment for credentials and child processes.
    public var environment: [String: String] = ProcessInfo.processInfo.environment
    /// Record the outcome in `.git/factoryctl/history.jsonl`.
    public var recordHistory = true
    /// Rewrite this node_exporter textfile after the outcome is recorded (`UA_FACTORY_METRICS_FILE`).
    public var metricsTextfile: FactoryTextfile?

    public init(factoryDirectory: String) {
        self.factoryDirectory = factoryDirectory
    }
}

/// How the pipeline runs an update, whoever asks for it: built once from flags and the
/// environment (`init(_:environment:)`), by `update`, `rollback` and `consume` alike, and turned
/// into a request for a branch by `UpdateRequest(factoryDirectory:branch:settings:)`.
public struct UpdateSettings: Sendable {
    public var restart = false
    public var services: [String] = [FactoryEnvironment.defaultService]
    public var sync = true
    public var syncCommand: [String] = ["uv", "sync"]
    public var forceSync = false
    public var waitForLock = false
    public var settleSeconds: Double = 3
    public var fetchTimeout: Double = 120
    public var signaturePolicy: CommitSignaturePolicy?
    /// Read only for a pipeline that restarts (the gate runs after the restart).
    public var healthGate: HealthGate?
    /// Only for a pipeline that restarts.
    public var soakSeconds: Double = 0
    public var appLockPath: String?
    public var appLockTimeout: Double = AppLock.defaultTimeout
    public var ignoreAppLock = false
    public var environment: [String: String] = [:]
    /// `UA_FACTORY_METRICS_FILE`.
    public var metricsTextfile: FactoryTextfile?

    public init() {}

    /// What the flags say; nil or empty where a flag was not given.
    public struct Flags: Sendable {
        public var restart = false
        /// Empty: `UA_FACTORY_SERVICE`, else the default service.
        public var services: [String] = []
        public var sync = true
        public var forceSync = false
        public var waitForLock = false
        public var settleSeconds: Double = 3
        /// nil: `FACTORYCTL_FETCH_TIMEOUT`, else 120.
        public var fetchTimeout: Double?
        /// nil: `UA_FACTORY_SOAK_SECONDS`, else 0.
        public var soakSeconds: Double?
        /// nil: `UA_FACTORY_UPDATE_LOCK_TIMEOUT`, else 600.
        public var appLockTimeout: Double?
        public var ignoreAppLock = false

        public init() {}
    }

    /// Flags win over the environment. Reads `UA_FACTORY_SERVICE`, `UA_FACTORY_SYNC_COMMAND`,
    /// `FACTORYCTL_FETCH_TIMEOUT`, `UA_ALLOWED_SIGNERS`, `UA_FACTORY_UPDATE_LOCK`,
    /// `UA_FACTORY_UPDATE_LOCK_TIMEOUT` and, with `restart`, `UA_FACTORY_HEALTH_URL`
    /// and `UA_FACTORY_HEALTH_TIMEOUT`. Throws the first value that is not valid (a configuration
    /// error: FactoryError or CommitSignaturePolicy.Refusal), before anything runs.
    public init(_ flags: Flags, environment: FactoryEnvironment) throws {
        restart = flags.restart
        services = flags.services.isEmpty ? environment.services : flags.services
        sync = flags.sync
        syncCommand = environment.syncCommand
        forceSync = flags.forceSync
        waitForLock = flags.waitForLock
        settleSeconds = flags.settleSeconds
        self.environment = environment.values
        fetchTimeout = try environment.fetchTimeout(flag: flags.fetchTimeout)
        signaturePolicy = try environment.commitSignaturePolicy()
        metricsTextfile = try environment.metricsTextfile()
        appLockPath = try environment.appLockPath()
        appLockTimeout = try environment.appLockTimeout(flag: flags.appLockTimeout)
        ignoreAppLock = flags.ignoreAppLock
        if restart {
            healthGate = try environment.healthGate()
            soakSeconds = try environment.soakSeconds(flag: flags.soakSeconds)
        }
    }
}

extension UpdateRequest {
    /// The one way a request is made from settings: `update`, `rollback` and the consumer's
    /// update and rollback missions all come through here.
    public init(factoryDirectory: String, branch: String, commit: ObjectID? = nil, allowRewind: Bool = false,
                settings: UpdateSettings) {
        self.init(factoryDirectory: factoryDirectory)
        self.branch = branch
        self.commit = commit
        self.allowRewind = allowRewind
        restart = settings.restart
        services = settings.services
        sync = settings.sync
        syncCommand = settings.syncCommand
        forceSync = settings.forceSync
        waitForLock = settings.waitForLock
        settleSeconds = settings.settleSeconds
        fetchTimeout = settings.fetchTimeout
        signaturePolicy = settings.signaturePolicy
        healthGate = settings.restart ? settings.healthGate : nil
        soakSeconds = settings.restart ? settings.soakSeconds : 0
        appLockPath = settings.appLockPath
        appLockTimeout = settings.appLockTimeout
        ignoreAppLock = settings.ignoreAppLock
        environment = settings.environment
        metricsTextfile = settings.metricsTextfile
    }
}

extension ConsumerConfiguration {
    /// The consumer's pipeline settings, kept in its own fields (the consumer never waits for
    /// the checkout lock: a held lock fails the mission, which reports it).
    public var updateSettings: UpdateSettings {
        get {
            var settings = UpdateSettings()
            settings.restart = restart
            settings.services = services
            settings.sync = sync
            settings.syncCommand = syncCommand
            settings.forceSync = forceSync
            settings.settleSeconds = settleSeconds
            settings.fetchTimeout = fetchTimeout
            settings.signaturePolicy = signaturePolicy
            settings.healthGate = healthGate
            settings.soakSeconds = soakSeconds
            // A mission never waits in the pipeline for the app: a held lock defers it instead.
            settings.appLockPath = appLockPath
            settings.appLockTimeout = 0
            settings.environment = environment
            settings.metricsTextfile = metricsTextfile
            return settings
        }
        set {
            restart = newValue.restart
            services = newValue.services
            sync = newValue.sync
            syncCommand = newValue.syncCommand
            forceSync = newValue.forceSync
            settleSeconds = newValue.settleSeconds
            fetchTimeout = newValue.fetchTimeout
            signaturePolicy = newValue.signaturePolicy
            healthGate = newValue.healthGate
            soakSeconds = newValue.soakSeconds
            appLockPath = newValue.appLockPath
            environment = newValue.environment
            metricsTextfile = newValue.metricsTextfile
        }
    }
}
