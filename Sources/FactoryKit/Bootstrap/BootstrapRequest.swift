import FoundationEssentials
import FactoryBasics
import GitKit

/// What `factoryctl bootstrap` is asked to make: a factory from the template repository.
public struct BootstrapRequest: Sendable {
    public enum Layout: String, Sendable, Codable, CaseIterable {
        case inPlace = "in-place"
        case releases
    }

    public var repoURL: String
    /// Absolute, without a trailing slash.
    public var factoryDirectory: String
    public var branch = "main"
    /// Clone exactly this commit (it must be on origin/<branch>), not the branch's tip.
    public var commit: ObjectID?
    /// `--id`; nil: the enrollment's `UA_FACTORY_ID`, else the env file's, else the host name.
    public var factoryID: String?
    /// The enrollment lines (`--env-file`); nil: none given (an existing env file is kept).
    public var enrollment: ConsumerEnvFile?
    public var layout: Layout = .inPlace
    /// Enable and start the units, then wait for the first registration.
    public var start = true
    public var dryRun = false
    /// Longest wait for the first registration.
    public var registrationTimeout: Double = 60
    /// The process's environment (credentials for the clone, the sync's, systemctl's, XDG paths).
    public var environment: FactoryEnvironment
    /// How to start the killable fetch helper for a network remote; nil fetches in-process.
    public var fetchHelper: [String]? = IsolatedFetch.defaultHelper

    public init(repoURL: String, factoryDirectory: String, environment: FactoryEnvironment) {
        self.repoURL = repoURL
        var directory = factoryDirectory
        while directory.count > 1, directory.hasSuffix("/") { directory.removeLast() }
        self.factoryDirectory = directory
        self.environment = environment
    }

    /// The template's user unit for the app, relative to the checkout; `@FACTORY_DIR@` in it
    /// becomes the directory the app runs in (DIR, or DIR/current in the releases layout).
    public static let unitTemplate = "deploy/factory.service"
    public static let unitPlaceholder = "@FACTORY_DIR@"
    /// The consumer's unit, installed by the package (or from deploy/ in a source install).
    public static let consumerUnit = "factoryctl-consume.service"
    /// The files `.env` is made from when there is none, in this order.
    public static let envTemplates = [".env.example", ".env.template"]
}

/// Why a bootstrap stopped. `message` says what is done, what is not, and how to go on.
public struct BootstrapFailure: Error, CustomStringConvertible, Sendable {
    public enum Kind: String, Sendable {
        /// Bad input or configuration: nothing was changed.
        case usage
        /// Failed; what is done is kept and the next run goes on from there.
        case failed
        case remoteUnreachable
        case lockHeld
        /// A directory or env file that belongs to something else.
        case refused
        case redisUnavailable
        /// No registration in time.
        case timedOut
    }

    public let kind: Kind
    public let message: String
    /// The steps that completed before the failure (the summary lists them).
    public var done: [BootstrapOutcome.Step] = []

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}

/// What bootstrap did (or would do), step by step.
public struct BootstrapOutcome: Encodable, Sendable {
    public struct Step: Encodable, Sendable, Equatable {
        public enum Action: String, Encodable, Sendable {
            /// Done by this run.
            case done
            /// Already so: nothing changed.
            case unchanged
            /// Not needed here (no unit template, --no-start).
            case skipped
            /// `--dry-run`: what this run would do.
            case would
        }

        public let name: String
        public let action: Action
        public let detail: String
    }

    public var factoryDirectory: String
    public var repoURL: String
    public var branch: String
    public var commit: String?
    public var factoryID: String
    public var layout: BootstrapRequest.Layout
    public var envFile: String
    public var steps: [Step] = []
    public var dryRun = false
    /// The first registration seen (its status), nil when not waited for or not readable.
    public var registration: String?
    public var notes: [String] = []

    /// True when this run changed something.
    public var changed: Bool { steps.contains { $0.action == .done } }

    enum CodingKeys: String, CodingKey {
        case branch, commit, layout, steps, registration, notes, changed
        case factoryDirectory = "factory_dir", repoURL = "repo", factoryID = "factory_id", envFile = "env_file", dryRun = "dry_run"
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(factoryDirectory, forKey: .factoryDirectory)
        try c.encode(UpdatePipeline.redact(repoURL), forKey: .repoURL)
        try c.encode(branch, forKey: .branch)
        try c.encode(commit, forKey: .commit)
        try c.encode(factoryID, forKey: .factoryID)
        try c.encode(layout, forKey: .layout)
        try c.encode(envFile, forKey: .envFile)
        try c.encode(steps, forKey: .steps)
        try c.encode(dryRun, forKey: .dryRun)
        try c.encode(registration, forKey: .registration)
        try c.encode(notes, forKey: .notes)
        try c.encode(changed, forKey: .changed)
    }

    mutating func record(_ name: String, _ action: Step.Action, _ detail: String) {
        steps.append(Step(name: name, action: action, detail: detail))
    }
}

/// What bootstrap keeps between runs, in `.git/factoryctl/bootstrap.json`: the commit it
/// synced (so a killed or failed sync runs again, and a finished one does not), and the process
/// group of a sync in progress (so the next run ends one a killed bootstrap left running).
struct BootstrapRecord: Codable, Sendable, Equatable {
    var repo: String
    var branch: String
    var layout: BootstrapRequest.Layout
    var syncedCommit: String?
    var syncGroup: Int32?
    var syncProgram: String?

    enum CodingKeys: String, CodingKey {
        case repo, branch, layout
        case syncedCommit = "synced_commit", syncGroup = "sync_group", syncProgram = "sync_program"
    }

    static func path(gitDirectory: String) -> String { gitDirectory + "/factoryctl/bootstrap.json" }

    static func load(gitDirectory: String) -> BootstrapRecord? {
        guard let data = FileManager.default.contents(atPath: path(gitDirectory: gitDirectory)) else { return nil }
        return try? JSONDecoder().decode(BootstrapRecord.self, from: data)
    }

    func write(gitDirectory: String) throws {
        try ReleasesLayout.makeDirectories(gitDirectory + "/factoryctl")
        try FileWriting.replace(Self.path(gitDirectory: gitDirectory), with: Array(try JSONEncoder().encode(self)), mode: 0o600)
    }
}
