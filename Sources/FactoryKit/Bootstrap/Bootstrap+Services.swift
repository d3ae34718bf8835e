import FoundationEssentials
import FactoryBasics
import Glibc
import GitKit
import Logging

extension Bootstrap {
    private var directory: String { request.factoryDirectory }

    private func services(_ plan: Plan) -> BootstrapServices {
        BootstrapServices(runner: ProcessRunner(environment: plan.settings.environment), environment: plan.settings.environment, logger: logger)
    }

    /// The consumer's env file, written (0600, atomically) only when its bytes differ. True when written.
    func envFileStep(_ plan: Plan, _ outcome: inout BootstrapOutcome) throws(BootstrapFailure) -> Bool {
        let path = plan.envFilePath
        let names = plan.envFile.names.joined(separator: ", ")
        if FileManager.default.contents(atPath: path) == Data(plan.envFile.text.utf8) {
            var info = stat()
            if stat(path, &info) == 0, info.st_mode & 0o777 != 0o600 {
                chmod(path, 0o600)
                outcome.record("env file", .done, "set the mode of \(path) back to 0600 (it holds secrets)")
            } else {
                outcome.record("env file", .unchanged, "\(path) already holds \(names)")
            }
            return false
        }
        let existed = ReleasesLayout.exists(path)
        do {
            try plan.envFile.write(to: path)
        } catch {
            throw BootstrapFailure(.failed, "could not write \(path): \(error)")
        }
        outcome.record("env file", .done, "\(existed ? "replaced" : "wrote") \(path) (0600): \(names)")
        return true
    }

    /// The directory the app runs in: DIR, or DIR/current in the releases layout.
    private var appDirectory: String {
        ReleasesLayout.detect(directory).map(\.current) ?? directory
    }

    /// The app's unit from `deploy/factory.service`, when the template ships one. True when written.
    func unitStep(_ plan: Plan, _ outcome: inout BootstrapOutcome) throws(BootstrapFailure) -> Bool {
        let template = appDirectory + "/" + BootstrapRequest.unitTemplate
        guard let text = BootstrapServices.renderUnit(template: template, appDirectory: appDirectory) else {
            outcome.record("unit", .skipped, "the template ships no \(BootstrapRequest.unitTemplate)")
            return false
        }
        let manager = services(plan)
        let path = manager.unitDirectory + "/" + plan.appUnit
        guard try manager.install(plan.appUnit, text: text) else {
            outcome.record("unit", .unchanged, "\(path) is \(BootstrapRequest.unitTemplate) for \(appDirectory)")
            return false
        }
        outcome.record("unit", .done, "installed \(path) from \(BootstrapRequest.unitTemplate) (\(BootstrapRequest.unitPlaceholder) = \(appDirectory))")
        return true
    }

    /// Enables and starts the app's unit (when installed) and the consumer, unless `--no-start`.
    func servicesStep(_ plan: Plan, unitChanged: Bool, envFileChanged: Bool, _ outcome: inout BootstrapOutcome) throws(BootstrapFailure) {
        guard request.start else {
            let units = (outcome.steps.contains { $0.name == "unit" && $0.action != .skipped } ? plan.appUnit + " " : "") + BootstrapRequest.consumerUnit
            outcome.record("services", .skipped, "--no-start: start them with `systemctl --user daemon-reload && systemctl --user enable --now \(units)`")
            return
        }
        let manager = services(plan)
        if unitChanged { try manager.systemctl("daemon-reload") }
        let installed = ReleasesLayout.exists(manager.unitDirectory + "/" + plan.appUnit) && outcome.steps.contains { $0.name == "unit" && $0.action != .skipped }
        var done: [String] = []
        if installed, let what = try manager.enableAndStart(plan.appUnit, restart: unitChanged) { done.append("\(plan.appUnit): \(what)") }
        if let what = try manager.enableAndStart(BootstrapRequest.consumerUnit, restart: envFileChanged) {
            done.append("\(BootstrapRequest.consumerUnit): \(what)")
        }
        let units = (installed ? [plan.appUnit] : []) + [BootstrapRequest.consumerUnit]
        if done.isEmpty {
            outcome.record("services", .unchanged, "\(units.joined(separator: " and ")) enabled and active")
        } else {
            outcome.record("services", .done, done.joined(separator: "; "))
        }
        if let note = BootstrapServices.lingerNote() { outcome.notes.append(note) }
    }

    /// The first registration, unless `--no-start`.
    func registrationStep(_ plan: Plan, _ outcome: inout BootstrapOutcome) throws(BootstrapFailure) {
        guard request.start else {
            outcome.record("registration", .skipped, "--no-start: nothing started, nothing to wait for")
            return
        }
        var wait = FirstRegistration(environment: plan.consumerEnvironment, factoryID: plan.factoryID, commit: liveCommit(),
                                     timeout: request.registrationTimeout)
        wait.shouldCancel = shouldCancel
        switch try wait.wait() {
        case .registered(let status):
            outcome.registration = status
            // Reading it changes nothing: it counts as done only when this run started something.
            let started = outcome.steps.contains { $0.name == "services" && $0.action == .done }
            outcome.record("registration", started ? .done : .unchanged, "\(plan.factoryID) is registered (\(status))")
        case .unreadable(let why):
            outcome.record("registration", .skipped, "not checked: \(why)")
        }
    }
}
