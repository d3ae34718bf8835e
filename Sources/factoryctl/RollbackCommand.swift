import ArgumentParser
import FactoryKit
import FoundationEssentials
import FactoryBasics
import Glibc
import GitKit

struct RollbackCommand: ParsableCommand {
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

    @Option(name: .long, help: ArgumentHelp("A systemd --user service to restart (repeatable; env UA_FACTORY_SERVICE).", valueName: "name"))
    var service: [String] = []

    @Flag(name: .long, help: "Do not run the dependency sync.")
    var noSync = false

    @Option(name: .long, help: ArgumentHelp("Seconds a restarted Type=simple/exec service must stay up.", valueName: "seconds"))
    var settle: Double = 3

    @Flag(name: [.customShort("n"), .long], help: "Say where it would go; change nothing.")
    var dryRun = false

    @Flag(name: .long, help: "Print one JSON object instead of the summary.")
    var json = false

    func validate() throws {
        if let to, !Mission.isCommitID(to) { throw ValidationError("--to needs a full commit id (40 lowercase hex digits)") }
        if let branch { do { try BranchName.validate(branch) } catch { throw ValidationError("\(error)") } }
        if branch != nil, to == nil { throw ValidationError("--branch goes with --to") }
        guard settle >= 0, settle <= 600 else { throw ValidationError("--settle must be between 0 and 600 seconds") }
    }

    func run() throws {
        let environment = FactoryEnvironment.current
        let factoryDirectory = directory.resolve(environment, searchUpward: true)
        let target: RollbackTarget
        do {
            target = try RollbackTarget.resolve(factoryDirectory: factoryDirectory, explicit: to.flatMap(ObjectID.init(hex:)), branch: branch)
        } catch let missing as RollbackTarget.Missing {
            throw CommandFailure(code: .failedUnchanged, message: missing.description)
        } catch {
            throw CommandFailure(code: .failedUnchanged, message: "\(factoryDirectory) is not a git checkout (\(error)); set --factory-dir or UA_FACTORY_DIR")
        }
        let logger = global.logger("factoryctl.rollback")
        logger.notice("rolling back to \(target.commit.short) on \(target.branch)\(target.undoing.map { ", undoing \($0)" } ?? "")")
        var request = UpdateRequest(factoryDirectory: factoryDirectory)
        request.branch = target.branch
        request.commit = target.commit
        request.allowRewind = true
        request.restart = !noRestart
        request.services = service.isEmpty ? environment.services : service
        request.dryRun = dryRun
        request.sync = !noSync
        request.syncCommand = environment.syncCommand
        request.settleSeconds = settle
        request.environment = environment.values
        do {
            request.fetchTimeout = try environment.fetchTimeout()
            request.signaturePolicy = try environment.commitSignaturePolicy()
            if request.restart { request.healthGate = try environment.healthGate() }
        } catch {
            throw CommandFailure(code: .usage, message: "\(error)")
        }
        let stop = StopSignal()
        stop.installHandlers(brokenPipe: true)
        var pipeline = UpdatePipeline(request: request, logger: logger)
        pipeline.shouldCancel = { stop.isSet }
        pipeline.shouldStopSync = { stop.childShouldStop(grace: UpdatePipeline.syncStopGrace) }
        stop.onSet {
            logger.notice("asked to stop: stopping once nothing is half-done (a running sync gets up to \(Int(UpdatePipeline.syncStopGrace)) s; ask again to end it now)")
        }
        let report = pipeline.run()
        let status = ExitStatus(report)
        if json {
            try printJSON(report, exit: status)
        } else {
            UpdateSummary(report: report).lines.forEach(say)
        }
        if status != .success { throw CommandFailure(code: status, message: report.error ?? "rollback failed") }
    }
}
