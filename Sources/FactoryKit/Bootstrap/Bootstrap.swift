import FoundationEssentials
import FactoryBasics
import Glibc
import GitKit
import Logging

/// `factoryctl bootstrap`: a factory from the template repository in one command.
///
/// The steps, each one that changes nothing when it is already done, so that running bootstrap
/// again finishes what a killed or failed run left and otherwise says "nothing was changed":
/// clone (into a temporary sibling, renamed into place: a failure before that leaves nothing),
/// `.env` from the template's example (never over an existing one), the sync (the command
/// `update` runs; done once per commit, recorded in `.git/factoryctl/bootstrap.json`), the first
/// release (`--layout releases`, through `ReleasesInit`), the consumer's env file, the app's
/// unit, enabling and starting the units, and the first registration.
public struct Bootstrap {
    public var request: BootstrapRequest
    public var logger: Logger
    /// Polled during the clone and the registration wait (SIGTERM, Ctrl-C).
    public var shouldCancel: () -> Bool = { false }
    /// Polled while the sync runs: true ends it (the next run syncs again).
    public var shouldStopSync: () -> Bool = { false }

    public init(request: BootstrapRequest, logger: Logger = Logger(label: "factoryctl.bootstrap")) {
        self.request = request
        self.logger = logger
    }

    /// What every step needs, worked out before anything changes.
    struct Plan {
        let settings: UpdateSettings
        /// The environment the consumer will see: this process's, with the env file's lines over it.
        let consumerEnvironment: FactoryEnvironment
        let factoryID: String
        let envFilePath: String
        let envFile: ConsumerEnvFile
        let appUnit: String
    }

    static let stepNames = ["clone", ".env", "sync", "release", "env file", "unit", "services", "registration"]

    public func run() throws(BootstrapFailure) -> BootstrapOutcome {
        let plan = try prepare()
        var outcome = BootstrapOutcome(factoryDirectory: request.factoryDirectory, repoURL: request.repoURL, branch: request.branch,
                                       factoryID: plan.factoryID, layout: request.layout, envFile: plan.envFilePath)
        outcome.dryRun = request.dryRun
        do {
            try runSteps(plan, &outcome)
        } catch {
            throw Self.explained(error, outcome)
        }
        return outcome
    }

    private func runSteps(_ plan: Plan, _ outcome: inout BootstrapOutcome) throws(BootstrapFailure) {
        let cloned = try cloneStep(plan, &outcome)
        if request.dryRun {
            // Nothing past the clone is inspected: each step says what it does when it is not done yet.
            for name in Self.stepNames.dropFirst() { outcome.record(name, .would, wouldText(name, plan) + (cloned ? " (unless already done)" : "")) }
            return
        }
        if ReleasesLayout.detect(request.factoryDirectory) != nil { outcome.layout = .releases }
        try inPlaceSteps(plan, &outcome)
        if outcome.layout == .releases { try releaseStep(plan, &outcome) } else { outcome.record("release", .skipped, "the in-place layout") }
        outcome.commit = liveCommit()?.hex
        let envFileChanged = try envFileStep(plan, &outcome)
        let unitChanged = try unitStep(plan, &outcome)
        try servicesStep(plan, unitChanged: unitChanged, envFileChanged: envFileChanged, &outcome)
        try registrationStep(plan, &outcome)
        if let note = XDGNote.envFile(plan.envFilePath, environment: request.environment.values) { outcome.notes.append(note) }
    }

    /// The failure, with what is done and what is not, and how to go on.
    static func explained(_ failure: BootstrapFailure, _ outcome: BootstrapOutcome) -> BootstrapFailure {
        let done = outcome.steps.filter { $0.action != .would }
        guard !done.isEmpty, failure.kind != .usage else {
            var plain = failure
            plain.done = done
            return plain
        }
        let finished = done.map(\.name)
        let remaining = stepNames.filter { !finished.contains($0) }
        var explained = BootstrapFailure(failure.kind, failure.message
            + ". Done: \(finished.joined(separator: ", ")); not done: \(remaining.joined(separator: ", ")). Run the same bootstrap again to finish: it keeps what is done")
        explained.done = done
        return explained
    }

    /// The commit the factory runs: HEAD in place, the live release's in the releases layout.
    func liveCommit() -> ObjectID? {
        if let layout = ReleasesLayout.detect(request.factoryDirectory), let name = layout.liveName,
           let release = layout.release(name), let commit = ObjectID(hex: release.commit) {
            return commit
        }
        return (try? Repository.open(at: request.factoryDirectory).head())?.commit
    }

    private func wouldText(_ name: String, _ plan: Plan) -> String {
        switch name {
        case ".env": "create .env from \(BootstrapRequest.envTemplates.joined(separator: " or ")) if the template has one"
        case "sync": request.layout == .releases ? "sync in the first release" : "run \(plan.settings.syncCommand.joined(separator: " "))"
        case "release": request.layout == .releases ? "build the first release: current → releases/<commit>" : "the in-place layout"
        case "env file": "write \(plan.envFilePath) (0600): \(plan.envFile.names.joined(separator: ", "))"
        case "unit": "install \(plan.appUnit) from \(BootstrapRequest.unitTemplate) if the template ships one"
        case "services": request.start ? "enable and start \(plan.appUnit) (if installed) and \(BootstrapRequest.consumerUnit)" : "not started (--no-start)"
        default: request.start ? "wait up to \(Int(request.registrationTimeout)) s for \(plan.factoryID)'s first registration" : "not waited for (--no-start)"
        }
    }
}

/// Where systemd's units look for the env file.
enum XDGNote {
    static func envFile(_ path: String, environment: [String: String]) -> String? {
        let home = ConsumerEnvFile.homeDirectory(environment) + "/.config/factoryctl/env"
        guard path != home else { return nil }
        return "the env file is \(path) (XDG_CONFIG_HOME); the packaged \(BootstrapRequest.consumerUnit) reads %h/.config/factoryctl/env"
    }
}
