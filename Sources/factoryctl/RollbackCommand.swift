import ArgumentParser
import FactoryKit
import FoundationEssentials
import FactoryBasics
import Glibc
import GitKit

struct RollbackCommand: FactoryctlCommand {
    static let configuration = CommandConfiguration(
        commandName: "rollback",
        abstract: "Move the factory back to the commit before its last successful update (or --to SHA).",
        discussion: """
        Reads .git/factoryctl/history.jsonl for the newest successful update that brought the \
        checkout to what it runs now, and moves back to the commit that update started from, \
        through the update pipeline: the lock, the checks, the sync, the restart (unless \
        --no-restart), the health gate, the record. It is a deliberate rewind (allowed), but \
        local commits on top are never dropped, and the commit must be on origin's branch. HQ \
        sends the same as a mission: `factoryctl publish rollback --target ID`.

        Examples:
          factoryctl rollback
          factoryctl rollback --to 3884f55c0a6d3c0b5d2e1f4a7b8c9d0e1f2a3b4c --json
        """
    )

    @OptionGroup var global: GlobalOptions
    @OptionGroup var directory: FactoryDirectoryOption

    @Option(name: .long, help: ArgumentHelp("Roll back to this commit (full id) instead of the one before the last update.", valueName: "sha"))
    var to: String?

    @Option(name: [.short, .long], help: ArgumentHelp("With --to: the branch it is on (default: the branch checked out).", valueName: "name"),
            completion: .custom(Completions.branches))
    var branch: String?

    @Flag(name: .long, help: "Do not restart the services (and skip the health gate).")
    var noRestart = false

    @OptionGroup var pipeline: PipelineOptions
    @OptionGroup var appLock: AppLockOptions

    @Flag(name: [.customShort("n"), .long], help: "Say where it would go; change nothing.")
    var dryRun = false

    @Flag(name: .long, help: "Move to a commit that is quarantined here (it failed on this factory before), this once.")
    var retryQuarantined = false

    @Flag(name: .long, help: "Print one JSON object instead of the summary.")
    var json = false

    func validate() throws {
        if pipeline.soak.map({ $0 > 0 }) == true, noRestart { throw ValidationError("--soak watches the restarted services: it cannot go with --no-restart") }
        if let to, !Mission.isCommitID(to) { throw ValidationError("--to needs a full commit id (40 lowercase hex digits)") }
        if let branch { do { try BranchName.validate(branch) } catch { throw ValidationError("\(error)") } }
        if branch != nil, to == nil { throw ValidationError("--branch goes with --to") }
    }

    func run(_ context: CommandContext) throws {
        let factoryDirectory = directory.resolve(context, searchUpward: true)
        let target = try rollbackTarget(factoryDirectory)
        let logger = global.logger("factoryctl.rollback", context)
        logger.notice("rolling back to \(target.commit.short) on \(target.branch)\(target.undoing.map { ", undoing \($0)" } ?? "")")
        let settings = try pipeline.settings(appLock.apply(to: pipeline.flags(restart: !noRestart)), context)
        var request = UpdateRequest(factoryDirectory: factoryDirectory, branch: target.branch, commit: target.commit,
                                    allowRewind: true, settings: settings)
        request.dryRun = dryRun
        request.retryQuarantined = retryQuarantined
        let report = PipelineRun(request: request, logger: logger).run(context)
        let status = ExitStatus(report)
        try UpdateSummary(report: report).write(to: context, json: json, status: status)
        if status != .success { throw CommandFailure(code: status, message: report.error ?? "rollback failed") }
    }

    /// The commit before the last update (or `--to`); what is missing when there is none.
    private func rollbackTarget(_ factoryDirectory: String) throws(CommandFailure) -> RollbackTarget {
        do {
            return try RollbackTarget.resolve(factoryDirectory: factoryDirectory, explicit: to.flatMap(ObjectID.init(hex:)), branch: branch)
        } catch let missing as RollbackTarget.Missing {
            throw CommandFailure(code: .failedUnchanged, message: missing.description)
        } catch {
            throw CommandFailure(code: .failedUnchanged, message: "\(factoryDirectory) is not a git checkout (\(error)); set --factory-dir or UA_FACTORY_DIR")
        }
    }
}
