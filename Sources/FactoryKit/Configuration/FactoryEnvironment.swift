import FoundationEssentials
import Dispatch
import FactoryBasics
import Glibc
import GitKit

/// The environment names the existing fleet already sets (see DESIGN.md), read from one dictionary
/// so tests and the consumer can pass their own instead of mutating the process environment.
public struct FactoryEnvironment: Sendable {
    public static let defaultService = "universal-agent-local-factory"
    public static let defaultMissionStream = "ua:missions:delegation"
    public static let defaultDeadLetterStream = "ua:missions:dlq"

    public var values: [String: String]

    public init(_ values: [String: String] = ProcessInfo.processInfo.environment) {
        self.values = values
    }

    public static var current: FactoryEnvironment { FactoryEnvironment() }

    public subscript(name: String) -> String? {
        guard let value = values[name]?.trimmed, !value.isEmpty else { return nil }
        return value
    }

    /// `FACTORYCTL_FETCH_TIMEOUT`: seconds a network fetch may go without progress (default 120);
    /// `flag` (`--fetch-timeout`, checked by `isValidFetchTimeout`) wins when given.
    public func fetchTimeout(flag: Double? = nil) throws(FactoryError) -> Double {
        if let flag { return flag }
        guard let raw = self["FACTORYCTL_FETCH_TIMEOUT"] else { return 120 }
        guard let value = Double(raw), Self.isValidFetchTimeout(value) else {
            throw .invalidArgument("FACTORYCTL_FETCH_TIMEOUT must be a number of seconds between 0 and 86400, not '\(raw.prefix(40))'")
        }
        return value
    }

    /// The fetch timeout's rule, for the flag and the variable alike: more than 0, at most a day.
    public static func isValidFetchTimeout(_ seconds: Double) -> Bool { seconds > 0 && seconds <= 86_400 }

    /// `UA_DELEGATION_STREAM_MAXLEN`: the approximate MAXLEN publishing keeps the mission stream
    /// to (default 10,000); `flag` (`--max-length`) wins when given. At least 100, flag or not.
    public func missionStreamMaxLength(flag: Int? = nil) throws(FactoryError) -> Int {
        if let flag { return flag }
        guard let raw = self["UA_DELEGATION_STREAM_MAXLEN"] else { return Self.defaultStreamMaxLength }
        guard let value = Int(raw), value >= Self.minimumStreamMaxLength else {
            throw .invalidArgument("UA_DELEGATION_STREAM_MAXLEN must be a whole number of at least \(Self.minimumStreamMaxLength), not '\(raw.prefix(40))'")
        }
        return value
    }

    public static let defaultStreamMaxLength = 10_000
    public static let minimumStreamMaxLength = 100

    /// `UA_FACTORY_MIN_UPDATE_INTERVAL`: the fewest seconds between two updates of a factory
    /// (default 10); `flag` (`--min-interval`) wins when given. Never negative.
    public func minimumUpdateInterval(flag: Double? = nil) throws(FactoryError) -> Double {
        if let flag { return flag }
        guard let raw = self["UA_FACTORY_MIN_UPDATE_INTERVAL"] else { return 10 }
        guard let value = Double(raw), value >= 0, value.isFinite else {
            throw .invalidArgument("UA_FACTORY_MIN_UPDATE_INTERVAL must be a number of seconds, 0 or more, not '\(raw.prefix(40))'")
        }
        return value
    }

    /// `FACTORYCTL_ROLLOUT_LEASE_SECONDS`: how long a rollout's runner holds it without renewing
    /// (default 30; renewed every third of that). A runner that dies frees it after this long.
    public func rolloutLeaseSeconds() throws(FactoryError) -> Double {
        guard let raw = self["FACTORYCTL_ROLLOUT_LEASE_SECONDS"] else { return RolloutLease.defaultSeconds }
        guard let value = Double(raw), value >= 1, value <= 3600 else {
            throw .invalidArgument("FACTORYCTL_ROLLOUT_LEASE_SECONDS must be a number of seconds between 1 and 3600, not '\(raw.prefix(40))'")
        }
        return value
    }

    /// `UA_FLEET_ID`: the fleet a signed mission is for (empty when unset). HQ signs it into every
    /// mission; a factory accepts only missions signed for its own.
    public var fleetID: String { self["UA_FLEET_ID"] ?? "" }

    /// `UA_FACTORY_DIR`, else nil (callers default to the current directory).
    public var factoryDirectory: String? { self["UA_FACTORY_DIR"] }

    /// `UA_FACTORY_ID`, else the host name.
    public var factoryID: String { self["UA_FACTORY_ID"] ?? ProcessInfo.processInfo.hostName }

    /// This factory's id: `flag` (`--factory-id`), else `UA_FACTORY_ID`, else the host name; it
    /// must be a valid id (a host name such as `my_host!` is not).
    public func checkedFactoryID(flag: String? = nil) throws(FactoryError) -> String {
        let id = flag ?? factoryID
        guard MissionID.isValid(id) else {
            throw .invalidArgument("factory id '\(id)' is not valid; set UA_FACTORY_ID or --factory-id")
        }
        return id
    }

    /// `FACTORY_ROLE` (`HEADQUARTERS` may publish; see `FactoryRole`).
    public var role: FactoryRole { FactoryRole(self["FACTORY_ROLE"] ?? FactoryRole.localWorker.name) }

    /// `UA_FACTORY_REPO_URL`: the factories' repository, where HQ reads a branch's tip to pin
    /// an update (see `BranchTip`).
    public var repoURL: String? { self["UA_FACTORY_REPO_URL"] }

    /// Whether stderr is the systemd journal (`JOURNAL_STREAM`): log lines then carry priorities.
    public var stderrIsJournal: Bool { JournalLogHandler.stderrIsJournal(environment: values) }

    /// `UA_FACTORY_SERVICE`: one or more services, separated by commas or spaces.
    public var services: [String] {
        guard let raw = self["UA_FACTORY_SERVICE"] else { return [Self.defaultService] }
        let names = raw.split(whereSeparator: { $0 == "," || $0 == " " }).map(String.init)
        return names.isEmpty ? [Self.defaultService] : names
    }

    /// `UA_FACTORY_SYNC_COMMAND`: the dependency sync argv, split on spaces (no shell). Default `uv sync`.
    public var syncCommand: [String] {
        guard let raw = self["UA_FACTORY_SYNC_COMMAND"] else { return ["uv", "sync"] }
        return raw.split(separator: " ").map(String.init)
    }

    public var missionStream: String { self["UA_DELEGATION_STREAM_NAME"] ?? Self.defaultMissionStream }
    public var deadLetterStream: String { self["UA_DELEGATION_DLQ_STREAM"] ?? Self.defaultDeadLetterStream }
    /// `UA_OPS_TOKEN` as it is (the consumer sends it to HQ); `OpsToken.forServing` checks it for `serve`.
    public var opsToken: String? { self["UA_OPS_TOKEN"] }
    /// `UA_FACTORY_TOKEN`: an enrolled factory's own HTTP registration token (`factoryctl enroll`).
    public var factoryToken: String? { self["UA_FACTORY_TOKEN"] }

    /// `UA_FACTORY_ENROLLED` (`1`/`true`/`yes`, or `0`/`false`/`no`; default no): this factory has
    /// its own Redis user (`factoryctl enroll`) and uses its own keys.
    public func enrolled() throws(FactoryError) -> Bool {
        guard let raw = self["UA_FACTORY_ENROLLED"] else { return false }
        switch raw.lowercased() {
        case "1", "true", "yes": return true
        case "0", "false", "no": return false
        default: throw .invalidArgument("UA_FACTORY_ENROLLED must be 1 or 0 (true/false, yes/no), not '\(raw.prefix(40))'")
        }
    }

    /// `UA_MISSION_SIGNING_KEY`: HQ signs every mission it publishes with this key file.
    public func missionSigner() throws(MissionSigning.KeyError) -> MissionSigner? {
        guard let path = self["UA_MISSION_SIGNING_KEY"], !path.isEmpty else { return nil }
        return try MissionSigner.load(path: path)
    }

    /// `UA_FACTORY_HEALTH_URL` (http or https) and `UA_FACTORY_HEALTH_TIMEOUT` (seconds, default 30).
    public func healthGate() throws(FactoryError) -> HealthGate? {
        guard let url = self["UA_FACTORY_HEALTH_URL"], !url.isEmpty else { return nil }
        guard HealthGate.isValid(url) else {
            throw .invalidArgument("UA_FACTORY_HEALTH_URL must be an http:// or https:// URL, not '\(url.prefix(80))'")
        }
        var timeout = 30.0
        if let raw = self["UA_FACTORY_HEALTH_TIMEOUT"] {
            guard let value = Double(raw), value > 0, value <= 3600 else {
                throw .invalidArgument("UA_FACTORY_HEALTH_TIMEOUT must be seconds between 0 and 3600, not '\(raw.prefix(40))'")
            }
            timeout = value
        }
        return HealthGate(url: url, timeout: timeout)
    }

    /// The soak window after a restart (`--soak`, else `UA_FACTORY_SOAK_SECONDS`, else 0: off).
    public func soakSeconds(flag: Double?) throws(FactoryError) -> Double {
        if let flag { return flag }
        guard let raw = self["UA_FACTORY_SOAK_SECONDS"], !raw.isEmpty else { return 0 }
        guard let value = Double(raw), value >= 0, value <= Self.maximumSoakSeconds else {
            throw .invalidArgument("UA_FACTORY_SOAK_SECONDS must be seconds between 0 and \(Int(Self.maximumSoakSeconds)), not '\(raw.prefix(40))'")
        }
        return value
    }

    public static let maximumSoakSeconds = 86_400.0

    /// `UA_FACTORY_METRICS_FILE`: an absolute path ending in `.prom` (node_exporter's textfile
    /// collector reads only those) in a directory that exists; nil when unset or empty.
    public func metricsTextfile() throws(FactoryError) -> FactoryTextfile? {
        guard let path = self["UA_FACTORY_METRICS_FILE"], !path.isEmpty else { return nil }
        guard path.hasPrefix("/"), path.hasSuffix(".prom"), !path.utf8.contains(0), path.utf8.count <= 4096,
              !path.split(separator: "/").contains("..") else {
            throw .invalidArgument("UA_FACTORY_METRICS_FILE must be an absolute path ending in .prom (node_exporter reads only *.prom), not '\(path.prefix(200))'")
        }
        // Its directory is not checked here: one that is missing (not mounted yet) must not stop
        // updates; each write that fails is logged instead.
        return FactoryTextfile(path: path)
    }

    /// `UA_FACTORY_UPDATE_WINDOW`: when update missions may run, in local time (`TZ`); nil when
    /// unset (any time). See `UpdateWindow` for the syntax.
    public func updateWindow() throws(FactoryError) -> UpdateWindow? {
        guard let raw = self["UA_FACTORY_UPDATE_WINDOW"] else { return nil }
        do {
            return try UpdateWindow(raw)
        } catch {
            throw .invalidArgument("UA_FACTORY_UPDATE_WINDOW='\(raw.prefix(80))' is not a window: \(error) (e.g. 02:00-04:00, or Mon-Fri 02:00-04:00,Sat 10:00-12:00)")
        }
    }

    /// `UA_FACTORY_UPDATE_LOCK`: the app's update lock file (an absolute path); nil when unset.
    public func appLockPath() throws(FactoryError) -> String? {
        guard let path = self["UA_FACTORY_UPDATE_LOCK"] else { return nil }
        guard path.hasPrefix("/"), !path.hasSuffix("/"), path.utf8.count < 4096, !path.utf8.contains(0) else {
            throw .invalidArgument("UA_FACTORY_UPDATE_LOCK must be the absolute path of a file, not '\(path.prefix(80))'")
        }
        return path
    }

    /// How long `update` waits for the app to let go of its lock: `flag` (`--app-lock-timeout`),
    /// else `UA_FACTORY_UPDATE_LOCK_TIMEOUT`, else 600 seconds.
    public func appLockTimeout(flag: Double? = nil) throws(FactoryError) -> Double {
        if let flag { return flag }
        guard let raw = self["UA_FACTORY_UPDATE_LOCK_TIMEOUT"] else { return AppLock.defaultTimeout }
        guard let value = Double(raw), Self.isValidAppLockTimeout(value) else {
            throw .invalidArgument("UA_FACTORY_UPDATE_LOCK_TIMEOUT must be seconds from 0 to \(Int(AppLock.maximumTimeout)), not '\(raw.prefix(40))'")
        }
        return value
    }

    public static func isValidAppLockTimeout(_ seconds: Double) -> Bool { seconds >= 0 && seconds <= AppLock.maximumTimeout }

    /// `UA_FACTORY_SHARED`: more paths (comma-separated, relative to the factory) linked from
    /// shared/ into every release in the releases layout; a name ending in "/" is a directory.
    public func sharedPaths() throws(FactoryError) -> [String] {
        let names = (self["UA_FACTORY_SHARED"] ?? "").split(separator: ",").map { String($0).trimmed }.filter { !$0.isEmpty }
        for name in names {
            do { try ReleasesLayout.validateSharedPath(String(name.trimmingSuffix("/"))) } catch {
                throw .invalidArgument("UA_FACTORY_SHARED: \(error)")
            }
        }
        return names
    }

    /// `UA_REDIS_WAIT_MS`: how long `publish` waits for a replica to confirm a mission when the
    /// primary has replicas (0 to 60000; default 1000; 0: do not wait).
    public func redisWaitMilliseconds() throws(FactoryError) -> Int {
        guard let raw = self["UA_REDIS_WAIT_MS"], !raw.isEmpty else { return 1000 }
        guard let value = Int(raw), (0...60_000).contains(value) else {
            throw .invalidArgument("UA_REDIS_WAIT_MS must be milliseconds from 0 to 60000, not '\(raw.prefix(40))'")
        }
        return value
    }

    /// `UA_FACTORY_KEEP_RELEASES`: complete releases kept besides the live one (default 3).
    public func keepReleases() throws(FactoryError) -> Int {
        guard let raw = self["UA_FACTORY_KEEP_RELEASES"], !raw.isEmpty else { return 3 }
        guard let value = Int(raw), (1...100).contains(value) else {
            throw .invalidArgument("UA_FACTORY_KEEP_RELEASES must be a number of releases from 1 to 100, not '\(raw.prefix(40))'")
        }
        return value
    }

    /// `UA_ALLOWED_SIGNERS`: git's allowed_signers file; set, updates move only to signed code.
    public func commitSignaturePolicy() throws(CommitSignaturePolicy.Refusal) -> CommitSignaturePolicy? {
        guard let path = self["UA_ALLOWED_SIGNERS"], !path.isEmpty else { return nil }
        return try CommitSignaturePolicy.load(path: path)
    }

    /// `UA_MISSION_VERIFY_KEYS`: a factory runs only missions signed by one of these public keys.
    public func missionVerifier() throws(MissionSigning.KeyError) -> MissionVerifier? {
        guard let paths = self["UA_MISSION_VERIFY_KEYS"], !paths.isEmpty else { return nil }
        return try MissionVerifier.load(paths: paths)
    }
    public var hqBaseURL: String? { self["UA_HQ_BASE_URL"] }
    public var capabilities: [String] {
        (self["UA_FACTORY_CAPABILITIES"] ?? "").split(separator: ",")
            .map { $0.trimmed }.filter { !$0.isEmpty }
    }

    /// The Redis URL: `UA_REDIS_URL`, else built from `UA_REDIS_HOST`, `UA_REDIS_PORT`,
    /// `UA_REDIS_DB` and `REDIS_PASSWORD`.
    public var redisURL: String {
        if let url = self["UA_REDIS_URL"] { return url }
        var host = self["UA_REDIS_HOST"] ?? "127.0.0.1"
        // An IPv6 address goes in brackets, or its colons read as a port.
        if host.contains(":"), !host.hasPrefix("[") { host = "[\(host)]" }
        let port = self["UA_REDIS_PORT"] ?? "6379"
        let db = self["UA_REDIS_DB"] ?? "0"
        if let password = self["REDIS_PASSWORD"] {
            let escaped = password.percentEncodedStrict
            return "redis://:\(escaped)@\(host):\(port)/\(db)"
        }
        return "redis://\(host):\(port)/\(db)"
    }
}
