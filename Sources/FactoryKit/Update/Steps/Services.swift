import FoundationEssentials
import FactoryBasics
import GitKit

/// Steps 6–7: the dependency sync for the new code, then the restart and the health gate. A
/// failure rolls back (code, environment, services) through `rollBack`.
extension UpdatePipeline {
    /// Syncs the environment for `target`, unless nothing uv reads changed since the environment
    /// in place was synced (always synced when an earlier failure left the environment owed).
    func syncStep(_ target: ObjectID, owed: EnvironmentDebt?, _ rollback: Rollback, _ repository: Repository,
                  _ journal: inout ApplyJournal, _ report: inout UpdateReport) throws {
        guard request.sync else { return }
        if owed == nil, let since = syncNotNeeded(repository, target: target) {
            logger.info("dependencies unchanged since \(since.short), whose environment is in place: skipping \(request.syncCommand.joined(separator: " "))")
            report.syncSkipped = true
            return
        }
        try advance(&journal, to: .syncing, repository, rollback, &report)
        let result = report.time("sync") { runSync(journalIn: repository.gitDirectory, for: target) }
        if result.stopped {
            throw Stop(failure: .cancelled,
                       message: "stopped during the dependency sync of \(target.short) (asked to stop); ended the sync. The checkout is on \(target.short) with a half-synced environment; the next `factoryctl update` (or consumer start) finishes or undoes it",
                       keepJournal: true)
        }
        if !result.ok {
            try rollBack(rollback, &report, failure: .syncFailed, reason: result.message, resync: true, restart: false)
        }
        report.synced = true
        try advance(&journal, to: .synced, repository, rollback, &report)
    }

    /// With `--restart`: restarts the services, checks they are up, then the health gate.
    func restartStep(_ rollback: Rollback, _ repository: Repository, _ journal: inout ApplyJournal,
                     _ report: inout UpdateReport) throws {
        guard request.restart else { return }
        try advance(&journal, to: .restarting, repository, rollback, &report)
        report.services = request.services
        let services = ServiceManager(runner: ProcessRunner(environment: request.environment), logger: logger)
        let inactive = report.time("restart") { services.restart(request.services, settle: request.settleSeconds) }
        report.restarted = true
        if !inactive.isEmpty {
            try rollBack(rollback, &report, failure: .serviceInactive,
                         reason: "service(s) not active after restart: \(inactive.joined(separator: ", "))",
                         resync: request.sync, restart: true)
        }
        guard let gate = request.healthGate else { return }
        logger.info("waiting for \(gate.url) to answer 2xx (up to \(Int(gate.timeout)) s)")
        if let why = report.time("health", { gate.wait() }) {
            try rollBack(rollback, &report, failure: .healthCheckFailed,
                         reason: "health check \(gate.url) did not answer 2xx within \(Int(gate.timeout)) s (last: \(why))",
                         resync: request.sync, restart: true)
        }
        report.healthChecked = true
    }

    /// With a soak window: the update stays provisional (phase `soaking`) while the restarted
    /// units and the health URL are watched; a failure rolls it back like a failed restart. Asked
    /// to stop part-way, it leaves the record: the next run soaks again and keeps or undoes it.
    func soakStep(_ rollback: Rollback, _ repository: Repository, _ journal: inout ApplyJournal,
                  _ report: inout UpdateReport) throws {
        guard request.restart, request.soakSeconds > 0 else { return }
        let watch = soakWatch(seconds: request.soakSeconds, services: request.services)
        let baseline = watch.baseline()
        journal.soakSeconds = request.soakSeconds
        journal.soakStartedAt = Date().timeIntervalSince1970
        journal.soakBaseline = baseline
        journal.bootID = ServiceManager.bootID
        try advance(&journal, to: .soaking, repository, rollback, &report)
        report.soakSeconds = request.soakSeconds
        logger.info("soaking \(Int(request.soakSeconds)) s: watching \(request.services.joined(separator: ", "))\(request.healthGate.map { " and \($0.url)" } ?? "")")
        let outcome = report.time("soak") { watch.run(from: baseline, shouldStop: shouldStopSync, tick: { onSoak($0) }) }
        switch outcome {
        case .passed:
            report.soaked = true
            logger.info("soak passed: keeping \(report.shortTo ?? "?")")
        case .failed(let failure) where report.integration == .rewind:
            // A move back to older code (a rollback): going forward again would bring back what
            // it escaped. Kept, and said plainly.
            throw Stop(failure: .soakFailed,
                       message: "soak failed: \(failure); kept \(report.shortTo ?? "?"): this update moved back to older code, and undoing it would bring back what it left. Needs attention")
        case .failed(let failure):
            try rollBack(rollback, &report, failure: .soakFailed, reason: "soak failed: \(failure)", resync: request.sync, restart: true)
        case .stopped(let left):
            throw Stop(failure: .cancelled,
                       message: "stopped during the soak of \(report.shortTo ?? "?") (\(Int(left)) s left, asked to stop); the update is still provisional: the next `factoryctl update` (or consumer start) soaks it again and keeps or undoes it",
                       keepJournal: true)
        }
    }

    /// The watch of `services` (and the health URL) for `seconds`.
    /// A run that does not restart (a plain `update` finding an update left mid-soak) still asks
    /// the configured health URL.
    func soakWatch(seconds: Double, services: [String]) -> SoakWatch {
        let manager = ServiceManager(runner: ProcessRunner(environment: request.environment), logger: logger)
        let health = request.healthGate ?? (try? FactoryEnvironment(request.environment).healthGate()) ?? nil
        return SoakWatch(services: services, health: health, seconds: seconds, manager: manager)
    }
}
