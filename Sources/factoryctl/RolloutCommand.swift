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

    @Option(name: .long, help: ArgumentHelp("A sliding window instead of batches: at most this many factories (or a percentage) updating at once; the next one gets its mission as soon as one finishes.", valueName: "n|p%"))
    var maxInFlight: String?

    @Option(name: .long, help: ArgumentHelp("With --max-in-flight: halt when more than K factories fail within SECONDS.", valueName: "k/seconds"))
    var maxFailureRate: String?

    @Option(name: .long, help: ArgumentHelp("Seconds between a successful wave and the next.", valueName: "seconds"))
    var pause: Double = 0

    @Option(name: .long, help: ArgumentHelp("Tolerate this many failed factories in all before halting (default 0: the first failure halts).", valueName: "k"))
    var maxFailures: Int = 0

    @Flag(name: .long, help: "When the rollout halts, send the factories that moved back to the commit each was on.")
    var rollbackOnHalt = false

    @Option(name: .long, help: ArgumentHelp("Seconds a wave may take (results and re-registration); with --max-in-flight, seconds one factory may take before its slot is released and it counts as failed.", valueName: "seconds"))
    var waveTimeout: Double = 600

    var isRollout: Bool { canary != nil || batch != nil || !canaryTarget.isEmpty || maxInFlight != nil }

    func validate() throws {
        if let canary, Rollout.Size(canary) == nil { throw ValidationError("--canary takes a number or a percentage, not '\(canary)'") }
        if let batch, Rollout.Size(batch) == nil { throw ValidationError("--batch takes a number or a percentage, not '\(batch)'") }
        if let maxInFlight, Rollout.Size(maxInFlight) == nil { throw ValidationError("--max-in-flight takes a number or a percentage, not '\(maxInFlight)'") }
        if maxInFlight != nil, batch != nil { throw ValidationError("--max-in-flight and --batch are two ways to pace a rollout: choose one") }
        if let maxFailureRate {
            guard Rollout.FailureRate(maxFailureRate) != nil else {
                throw ValidationError("--max-failure-rate takes K/SECONDS (e.g. 3/600: 0...100000 failures, 1...86400 seconds), not '\(maxFailureRate)'")
            }
            guard maxInFlight != nil else { throw ValidationError("--max-failure-rate goes with --max-in-flight") }
        }
        guard pause >= 0, pause <= 86_400 else { throw ValidationError("--pause must be 0...86400 seconds") }
        guard maxFailures >= 0 else { throw ValidationError("--max-failures must be 0 or more") }
        guard waveTimeout > 0 else { throw ValidationError("--wave-timeout must be positive") }
        for id in canaryTarget where !MissionID.isValid(id) { throw ValidationError("invalid factory id '\(id)'") }
    }

    /// The waves and their pacing, as these flags say.
    func apply(to start: inout RolloutStart) {
        start.canaryTargets = canaryTarget
        start.canary = canary.flatMap(Rollout.Size.init)
        start.batch = batch.flatMap(Rollout.Size.init)
        start.maxInFlight = maxInFlight.flatMap(Rollout.Size.init)
        start.maxFailureRate = maxFailureRate.flatMap(Rollout.FailureRate.init)
        start.pauseSeconds = pause
        start.maxFailures = maxFailures
        start.rollbackOnHalt = rollbackOnHalt
        start.waveTimeout = waveTimeout
    }
}

extension PublishCommand {
    /// Starts the rollout (`RolloutStart`, as the HTTP route does) and drives it here.
    func startRollout(_ session: PublishSession, target: MissionTarget) throws {
        guard let commit = try revision.commit ?? pinnedTip(session) else {
            throw CommandFailure(code: .usage, message: "a rollout moves every wave to one commit: pass --commit SHA, or set UA_FACTORY_REPO_URL (or --repo) to pin the branch's tip")
        }
        var start = RolloutStart(target: target, branch: revision.branch, commit: commit)
        rollout.apply(to: &start)
        start.missionTimeout = Int64(missionTimeout)
        start.splaySeconds = splay
        start.ignoreWindow = ignoreWindow
        start.force = force
        start.requireRegistered = !allowUnregistered
        let runner = session.rollout(runnerName: Self.runnerName)
        let plan: Rollout.Plan
        do {
            plan = try publishRefusals { try withRedis("read the fleet registry") { try start.plan(with: runner, now: session.context.now()) } }
            try withRedis("record the rollout") { try runner.create(plan) }
        } catch let none as RolloutStart.NoLiveFactory {
            throw CommandFailure(code: .timedOut, message: "\(none); nothing to roll out")
        } catch let conflict as Rollout.Conflict {
            throw CommandFailure(code: .refused, message: conflict.description)
        }
        if !json { session.context.say(plan.id) }
        let waves = plan.waves
        let window = plan.maxInFlight.map { ", at most \($0) in flight" } ?? ""
        session.context.stderr.write("rollout \(plan.id): \(waves.count) wave\(waves.count == 1 ? "" : "s") of \(waves.map { String($0.count) }.joined(separator: ", "))\(window) → \(commit.prefix(7))\n")
        try drive(runner, id: plan.id, session.context)
    }

    /// Names this process in a rollout's lease.
    static let runnerName = "factoryctl publish"

    func controlRollout(_ session: PublishSession, id: String) throws {
        let runner = session.rollout(runnerName: Self.runnerName)
        guard action == .abortRollout else { return try drive(runner, id: id, session.context) }
        let aborted = try withRedis("abort the rollout") { try runner.abort(id) }
        guard aborted else { throw CommandFailure(code: .failedUnchanged, message: "rollout \(id) is not running (unknown, finished or already aborted)") }
        let summary = try withRedis("read the rollout") { try runner.summary(id) }
        try RolloutText(summary: summary).write(to: session.context, json: json)
    }

    /// Runs the rollout to its end (or until SIGTERM/Ctrl-C: then it can be resumed).
    private func drive(_ runner: Rollout, id: String, _ context: CommandContext) throws {
        let stop = context.stopSignal()
        let stderr: CommandOutput? = json ? nil : context.stderr
        let summary: Rollout.Summary
        do {
            summary = try withRedis("run the rollout") {
                try runner.run(id, stop: stop) { line in stderr?.write(line + "\n") }
            }
        } catch let busy as RolloutLease.Busy {
            throw CommandFailure(code: .refused, message: busy.description)
        } catch let lost as RolloutLease.Lost {
            throw CommandFailure(code: .failedUnchanged, message: lost.description)
        } catch let error as FactoryError {
            throw CommandFailure(code: .failedUnchanged, message: "\(error)")
        }
        let (status, message) = Self.outcome(of: summary)
        try RolloutText(summary: summary).write(to: context, json: json, status: status, error: message)
        if let message { throw CommandFailure(code: status, message: message) }
    }

    /// How a rollout that stopped running ends the command.
    static func outcome(of summary: Rollout.Summary) -> (ExitStatus, String?) {
        let id = summary.id
        return switch summary.state {
        case .succeeded: (.success, nil)
        case .halted: (.failedUnchanged, "rollout \(id) halted at wave \(summary.wave + 1): \(summary.failures.map(\.factoryID).joined(separator: ", "))\(summary.haltReason.map { " (\($0))" } ?? "")")
        case .rolledBack: (.rolledBack, "rollout \(id) halted at wave \(summary.wave + 1) and rolled back")
        case .timedOut: (.timedOut, "rollout \(id) timed out in wave \(summary.wave + 1)")
        case .aborted: (.refused, "rollout \(id) was aborted")
        case .running: (.failedUnchanged, "stopped; the rollout is still running: factoryctl publish resume-rollout \(id)")
        }
    }
}

extension PublishSession {
    /// A rollout runner on this session's publisher, under the lease settings.
    func rollout(runnerName: String) -> Rollout {
        Rollout(publisher: publisher, logger: logger, leaseSeconds: leaseSeconds, runnerName: runnerName)
    }
}

/// A rollout for people: the state, then where every factory is.
struct RolloutText {
    let summary: Rollout.Summary

    /// The summary as one JSON object, or the text.
    func write(to context: CommandContext, json: Bool, status: ExitStatus = .success, error: String? = nil) throws {
        if json { try context.printJSON(summary, exit: status, error: error) } else { lines.forEach(context.say) }
    }

    var lines: [String] {
        var lines = ["Rollout \(summary.id): \(summary.state.rawValue), \(summary.branch) → \(summary.commit.prefix(7)), wave \(min(summary.wave + 1, summary.waves.count)) of \(summary.waves.count)\(summary.maxInFlight.map { ", at most \($0) in flight" } ?? "")"]
        if let reason = summary.haltReason { lines.append("Halted: \(reason)") }
        let rows = summary.members.map { m in
            [m.factoryID, String(m.wave + 1), m.status, m.commit.map { String($0.prefix(7)) } ?? "-",
             m.before.map { String($0.prefix(7)) } ?? "-", m.error ?? ""]
        }
        lines += render([["FACTORY", "WAVE", "RESULT", "NOW AT", "BEFORE", "ERROR"]] + rows)
        return lines
    }
}
