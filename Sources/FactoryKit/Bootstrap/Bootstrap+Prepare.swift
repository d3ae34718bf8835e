import FoundationEssentials
import FactoryBasics
import Glibc
import GitKit

extension Bootstrap {
    /// Everything checked before anything changes: the directory, the id, the env file's lines,
    /// the configuration, the sync program and the user's service manager.
    func prepare() throws(BootstrapFailure) -> Plan {
        try checkDirectory()
        let environment = request.environment.values
        let envFilePath = ConsumerEnvFile.path(environment: environment)
        let existing: ConsumerEnvFile?
        do {
            existing = try ConsumerEnvFile.read(envFilePath)
        } catch {
            throw BootstrapFailure(.usage, "the existing \(envFilePath) is not valid: \(error) Fix it, or pass the enrollment's lines with --env-file to replace it")
        }
        let factoryID = try resolveFactoryID(existing: existing)
        let envFile = try desiredEnvFile(existing: existing, factoryID: factoryID, path: envFilePath)
        let consumer = FactoryEnvironment(environment.merging(envFile.values) { $1 })
        let settings: UpdateSettings
        do {
            settings = try UpdateSettings(UpdateSettings.Flags(), environment: consumer)
        } catch {
            throw BootstrapFailure(.usage, "\(error); nothing was changed")
        }
        let appUnit = (consumer.services.first ?? FactoryEnvironment.defaultService) + ".service"
        guard BootstrapServices.isUnitName(appUnit) else {
            throw BootstrapFailure(.usage, "UA_FACTORY_SERVICE names '\(appUnit.prefix(80))', which is not a unit name; nothing was changed")
        }
        let plan = Plan(settings: settings, consumerEnvironment: consumer, factoryID: factoryID, envFilePath: envFilePath,
                        envFile: envFile, appUnit: appUnit)
        if !request.dryRun { try precheck(plan) }
        return plan
    }

    /// The factory directory is missing, empty, or a checkout of this repository.
    private func checkDirectory() throws(BootstrapFailure) {
        let directory = request.factoryDirectory
        guard directory.hasPrefix("/"), directory.count > 1, !directory.split(separator: "/").contains(where: { $0 == ".." || $0 == "." }) else {
            throw BootstrapFailure(.usage, "--factory-dir must be an absolute path without . or .. (\(directory.prefix(120))); nothing was changed")
        }
        // It goes into the app's unit (@FACTORY_DIR@) and the env file: no spaces, quotes,
        // backslashes, % (systemd's specifiers), $ or control characters.
        guard directory.utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || ($0 >= 65 && $0 <= 90) || ($0 >= 97 && $0 <= 122)
                                          || [47, 46, 95, 45, 43, 64, 44, 58, 61].contains($0) || $0 >= 0x80 }) else {
            throw BootstrapFailure(.usage, "--factory-dir may hold letters, digits and / . _ - + @ , : = only (it goes into a systemd unit and an env file); nothing was changed")
        }
        switch BootstrapClone.inspect(directory) {
        case .nothing, .emptyDirectory:
            return
        case .checkout(let origin) where origin == request.repoURL:
            return
        case .checkout(let origin):
            throw BootstrapFailure(.refused, "\(directory) is already a checkout of \(origin.map(UpdatePipeline.redact) ?? "a repository without origin"), not of \(UpdatePipeline.redact(request.repoURL)); nothing was changed. Pass that --repo, or choose another --factory-dir")
        case .other:
            throw BootstrapFailure(.refused, "\(directory) exists and is neither empty nor a git checkout; nothing was changed. Choose another --factory-dir, or empty it")
        }
    }

    /// `--id`, else the enrollment's, else the existing env file's, else the host name.
    private func resolveFactoryID(existing: ConsumerEnvFile?) throws(BootstrapFailure) -> String {
        let enrolled = request.enrollment?["UA_FACTORY_ID"]
        if let flag = request.factoryID, let enrolled, flag != enrolled {
            throw BootstrapFailure(.usage, "--id \(flag) differs from the enrollment's UA_FACTORY_ID=\(enrolled); nothing was changed. Pass the lines `factoryctl enroll \(flag)` printed, or drop --id")
        }
        let id = request.factoryID ?? enrolled ?? existing?["UA_FACTORY_ID"] ?? request.environment.factoryID
        guard MissionID.isValid(id) else {
            throw BootstrapFailure(.usage, "invalid factory id '\(id.prefix(80))': use 1-128 of A-Z a-z 0-9 . _ : - (pass --id); nothing was changed")
        }
        return id
    }

    /// The env file as it must be: the enrollment's lines (or the existing file's) with
    /// `UA_FACTORY_DIR` and `UA_FACTORY_ID`.
    private func desiredEnvFile(existing: ConsumerEnvFile?, factoryID: String, path: String) throws(BootstrapFailure) -> ConsumerEnvFile {
        let directory = request.factoryDirectory
        if let enrolledDirectory = request.enrollment?["UA_FACTORY_DIR"], enrolledDirectory != directory {
            throw BootstrapFailure(.usage, "the enrollment's UA_FACTORY_DIR=\(enrolledDirectory) differs from --factory-dir \(directory); nothing was changed")
        }
        if request.enrollment == nil, let existingDirectory = existing?["UA_FACTORY_DIR"], existingDirectory != directory {
            throw BootstrapFailure(.refused, "\(path) is the consumer's env file for the factory at \(existingDirectory) (one consumer per user); nothing was changed. Pass --env-file with this factory's enrollment to replace it")
        }
        var file = request.enrollment ?? existing ?? ConsumerEnvFile(lines: [])
        file.set("UA_FACTORY_DIR", directory)
        file.set("UA_FACTORY_ID", factoryID)
        return file
    }

    /// The sync program and, unless `--no-start`, the user's service manager are there before
    /// anything is cloned (as `update --restart` checks before it moves).
    private func precheck(_ plan: Plan) throws(BootstrapFailure) {
        let runner = ProcessRunner(environment: plan.settings.environment)
        if let program = plan.settings.syncCommand.first {
            do {
                _ = try runner.resolve(program)
            } catch {
                throw BootstrapFailure(.usage, "the sync program \(program) was not found (\(error)); install it (uv: docs/install.md) or set UA_FACTORY_SYNC_COMMAND. Nothing was changed")
            }
        }
        guard request.start else { return }
        if let reason = ServiceManager(runner: runner, logger: logger).unreachableReason() {
            let runtime = request.environment["XDG_RUNTIME_DIR"].map { "XDG_RUNTIME_DIR=\($0)" } ?? "XDG_RUNTIME_DIR is not set"
            throw BootstrapFailure(.failed, "starting the units needs the user's service manager, and systemctl --user cannot reach it: \(reason) (\(runtime)). Usual fixes: `sudo loginctl enable-linger $USER` once, and export XDG_RUNTIME_DIR=/run/user/$(id -u); or pass --no-start. Nothing was changed")
        }
    }
}
