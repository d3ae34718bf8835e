import ArgumentParser
import FactoryKit
import GitKit

/// The update pipeline's flags that `update`, `rollback` and `consume` share: declared and
/// checked once, and turned into `UpdateSettings.Flags` the same way for all three.
struct PipelineOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp(
        "A systemd --user service to restart (repeatable; env UA_FACTORY_SERVICE; default universal-agent-local-factory).",
        valueName: "name"))
    var service: [String] = []

    @Flag(name: .long, help: "Do not run the dependency sync (uv sync).")
    var noSync = false

    @Flag(name: .long, help: "Run the dependency sync even when no dependency file (pyproject.toml, uv.lock, ...) changed since the environment was last synced.")
    var forceSync = false

    @Option(name: .long, help: ArgumentHelp("Seconds a restarted service of Type=simple/exec must stay up before it counts as started (units that report readiness, Type=notify, are known at once).", valueName: "seconds"))
    var settle: Double = 3

    @Option(name: .long, help: ArgumentHelp("After the restart and the health gate, keep the update provisional this long: a unit that crashes or restarts, or a health URL that keeps failing, reverts it (env UA_FACTORY_SOAK_SECONDS; default 0, off).", valueName: "seconds"))
    var soak: Double?

    func validate() throws {
        for name in service where name.hasPrefix("-") || name.isEmpty {
            throw ValidationError("invalid service name '\(name)'")
        }
        guard settle >= 0, settle <= 600 else { throw ValidationError("--settle must be between 0 and 600 seconds") }
        if let soak, !(0...FactoryEnvironment.maximumSoakSeconds).contains(soak) {
            throw ValidationError("--soak must be between 0 and \(Int(FactoryEnvironment.maximumSoakSeconds)) seconds")
        }
    }

    /// These flags, with the ones each command has of its own.
    func flags(restart: Bool, waitForLock: Bool = false, fetchTimeout: Double? = nil) -> UpdateSettings.Flags {
        var flags = UpdateSettings.Flags()
        flags.restart = restart
        flags.services = service
        flags.sync = !noSync
        flags.forceSync = forceSync
        flags.waitForLock = waitForLock
        flags.settleSeconds = settle
        flags.fetchTimeout = fetchTimeout
        flags.soakSeconds = soak
        return flags
    }

    /// The settings from these flags and the context's environment; a value that is not valid
    /// is a usage error.
    func settings(_ flags: UpdateSettings.Flags, _ context: CommandContext) throws(CommandFailure) -> UpdateSettings {
        try configured { try UpdateSettings(flags, environment: context.environment) }
    }
}

/// The app's update lock (`UA_FACTORY_UPDATE_LOCK`), for `update` and `rollback`: how long to
/// wait for the app to let go of it, or to go ahead without it.
struct AppLockOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("With UA_FACTORY_UPDATE_LOCK: wait this long for the app to let go of its update lock, then fail with nothing changed (env UA_FACTORY_UPDATE_LOCK_TIMEOUT; default 600; 0: do not wait).", valueName: "seconds"))
    var appLockTimeout: Double?

    @Flag(name: .long, help: "Update even while the app holds its update lock (UA_FACTORY_UPDATE_LOCK); recorded in the history and the result.")
    var ignoreAppLock = false

    func validate() throws {
        if let appLockTimeout, !FactoryEnvironment.isValidAppLockTimeout(appLockTimeout) {
            throw ValidationError("--app-lock-timeout must be between 0 and \(Int(AppLock.maximumTimeout)) seconds")
        }
    }

    /// `flags` with these two set.
    func apply(to flags: UpdateSettings.Flags) -> UpdateSettings.Flags {
        var flags = flags
        flags.appLockTimeout = appLockTimeout
        flags.ignoreAppLock = ignoreAppLock
        return flags
    }
}

/// Where an update goes, for `update` (this factory) and `publish` (the fleet's mission): the
/// branch, an exact commit, and whether older code is allowed.
struct RevisionOptions: ParsableArguments {
    @Option(name: [.short, .long], help: ArgumentHelp("The branch to update to.", valueName: "name"),
            completion: .custom(Completions.branches))
    var branch = "main"

    @Option(name: .long, help: ArgumentHelp("Move exactly to this commit (full id), which must be on origin's branch, instead of the branch's tip; for publish, every factory moves exactly there.", valueName: "sha"))
    var commit: String?

    @Flag(name: .long, help: "Allow moving to older code, or past a force-push that dropped commits a factory runs (a deliberate rollback).")
    var allowRewind = false

    func validate() throws {
        do {
            try BranchName.validate(branch)
        } catch {
            throw ValidationError("\(error)")
        }
        if let commit, !Mission.isCommitID(commit) {
            throw ValidationError("--commit needs a full commit id (40 lowercase hex digits), not '\(commit.prefix(60))'")
        }
    }

    var commitID: ObjectID? { commit.flatMap(ObjectID.init(hex:)) }
}
