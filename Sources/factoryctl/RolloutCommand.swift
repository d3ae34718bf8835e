import ArgumentParser
import FactoryKit
import FoundationEssentials
import FactoryBasics
import Glibc
import Logging

/// `publish update --canary … --batch …`: a staged rollout.
struct RolloutOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("First wave: this many factories, or a percentage ('10%').", valueName: "n|p%"))
    var canary: String?

    @Option(name: .long, help: ArgumentHelp("A factory for the first wave (repeatable; canaries go first).", valueName: "id"),
            completion: .custom(Completions.factoryIDs))
    var canaryTarget: [String] = []

    @Option(name: .long, help: ArgumentHelp("Each later wave: this many factories, or a percentage.", valueName: "n|p%"))
    var batch: String?

    @Option(name: .long, help: ArgumentHelp("Seconds between a successful wave and the next.", valueName: "seconds"))
    var pause: Double = 0

    @Option(name: .long, help: ArgumentHelp("Tolerate this many failed factories in all before halting (default 0: the first failure halts).", valueName: "k"))
    var maxFailures: Int = 0

    @Flag(name: .long, help: "When the rollout halts, send the factories that moved back to the commit each was on.")
    var rollbackOnHalt = false

    @Option(name: .long, help: ArgumentHelp("Seconds a wave may take (results and re-registration).", valueName: "seconds"))
    var waveTimeout: Double = 600

    var isRollout: Bool { canary != nil || batch != nil || !canaryTarget.isEmpty }

    func validate() throws {
        if let canary, Rollout.Size(canary) == nil { throw ValidationError("--canary takes a number or a percentage, not '\(canary)'") }
        if let batch, Rollout.Size(batch) == nil { throw ValidationError("--batch takes a number or a percentage, not '\(batch)'") }
        guard pause >= 0, pause <= 86_400 else { throw ValidationError("--pause must be 0...86400 seconds") }
        guard maxFailures >= 0 else { throw ValidationError("--max-failures must be 0 or more") }
        guard waveTimeout > 0 else { throw ValidationError("--wave-timeout must be positive") }
        for id in canaryTarget where !MissionID.isValid(id) { throw ValidationError("invalid factory id '\(id)'") }
    }
}

extension PublishCommand {
    func startRollout(_ publisher: Publisher, target: MissionTarget, environment: FactoryEnvironment, leaseSeconds: Double,
                      logger: Logger) throws {
        guard let commit = try commit ?? resolveTip(environment, logger: logger) else {
            throw CommandFailure(code: .usage, message: "a rollout moves every wave to one commit: pass --commit SHA, or set UA_FACTORY_REPO_URL (or --repo) to pin the branch's tip")
        }
        let matches: [Publisher.Match]
        do {
            matches = try withRedis("read the fleet registry") {
                try publisher.plan(kind: .update, target: target, force: force, requireRegistered: !allowUnregistered)
            }
        } catch let refusal as Publisher.Refusal {
            throw CommandFailure(code: .refused, message: refusal.description)
        } catch let refusal as Publisher.UnregisteredTarget {
            throw CommandFailure(code: .refused, message: refusal.description)
        }
        let live = matches.filter { !$0.stale }.map(\.factoryID)
        guard !live.isEmpty else { throw CommandFailure(code: .timedOut, message: "no live registered factory matches \(target); nothing to roll out") }
        let waves = Rollout.waves(live: live, canaryTargets: rollout.canaryTarget, canary: rollout.canary.flatMap(Rollout.Size.init),
                                  batch: rollout.batch.flatMap(Rollout.Size.init))
        let plan = Rollout.Plan(id: MissionID.make(prefix: "rollout"), branch: branch, commit: commit, waves: waves,
                                pauseSeconds: rollout.pause, maxFailures: rollout.maxFailures, rollbackOnHalt: rollout.rollbackOnHalt,
                                waveTimeout: rollout.waveTimeout, missionTimeout: Int64(missionTimeout),
                                createdAt: Date().timeIntervalSince1970)
        let runner = Rollout(publisher: publisher, logger: logger, leaseSeconds: leaseSeconds, runnerName: Self.runnerName)
        do {
            try withRedis("record the rollout") { try runner.create(plan) }
        } catch let conflict as Rollout.Conflict {
            throw CommandFailure(code: .refused, message: conflict.description)
        }
        if !json { say(plan.id) }
        StandardStream.error("rollout \(plan.id): \(waves.count) wave\(waves.count == 1 ? "" : "s") of \(waves.map { String($0.count) }.joined(separator: ", ")) → \(commit.prefix(7))\n")
        try drive(runner, id: plan.id)
    }

    /// Names this process in a rollout's lease.
    static let runnerName = "factoryctl publish"

    func controlRollout(_ publisher: Publisher, id: String, leaseSeconds: Double, logger: Logger) throws {
        let runner = Rollout(publisher: publisher, logger: logger, leaseSeconds: leaseSeconds, runnerName: Self.runnerName)
        if action == .abortRollout {
            let aborted = try withRedis("abort the rollout") { try runner.abort(id) }
            guard aborted else { throw CommandFailure(code: .failedUnchanged, message: "rollout \(id) is not running (unknown, finished or already aborted)") }
            let summary = try withRedis("read the rollout") { try runner.summary(id) }
            if json { try printJSON(summary) } else { RolloutText(summary: summary).lines.forEach(say) }
            return
        }
        try drive(runner, id: id)
    }

    /// Runs the rollout to its end (or until SIGTERM/Ctrl-C: then it can be resumed).
    private func drive(_ runner: Rollout, id: String) throws {
        let stop = StopSignal()
        stop.installHandlers()
        let quiet = json
        let summary: Rollout.Summary
        do {
            summary = try withRedis("run the rollout") {
                try runner.run(id, stop: stop) { line in if !quiet { StandardStream.error(line + "\n") } }
            }
        } catch let busy as RolloutLease.Busy {
            throw CommandFailure(code: .refused, message: busy.description)
        } catch let lost as RolloutLease.Lost {
            throw CommandFailure(code: .failedUnchanged, message: lost.description)
        } catch let error as FactoryError {
            throw CommandFailure(code: .failedUnchanged, message: "\(error)")
        }
        let (status, message): (ExitStatus, String?) = switch summary.state {
        case .succeeded: (.success, nil)
        case .halted: (.failedUnchanged, "rollout \(id) halted at wave \(summary.wave + 1): \(summary.failures.map(\.factoryID).joined(separator: ", "))")
        case .rolledBack: (.rolledBack, "rollout \(id) halted at wave \(summary.wave + 1) and rolled back")
        case .timedOut: (.timedOut, "rollout \(id) timed out in wave \(summary.wave + 1)")
        case .aborted: (.refused, "rollout \(id) was aborted")
        case .running: (.failedUnchanged, "stopped; the rollout is still running: factoryctl publish resume-rollout \(id)")
        }
        if json { try printJSON(summary, exit: status, error: message) } else { RolloutText(summary: summary).lines.forEach(say) }
        if let message { throw CommandFailure(code: status, message: message) }
    }
}

/// A rollout for people: the state, then where every factory is.
struct RolloutText {
    let summary: Rollout.Summary

    var lines: [String] {
        var lines = ["Rollout \(summary.id): \(summary.state.rawValue), \(summary.branch) → \(summary.commit.prefix(7)), wave \(min(summary.wave + 1, summary.waves.count)) of \(summary.waves.count)"]
        let rows = summary.members.map { m in
            [m.factoryID, String(m.wave + 1), m.status, m.commit.map { String($0.prefix(7)) } ?? "-",
             m.before.map { String($0.prefix(7)) } ?? "-", m.error ?? ""]
        }
        lines += render([["FACTORY", "WAVE", "RESULT", "NOW AT", "BEFORE", "ERROR"]] + rows)
        return lines
    }
}
