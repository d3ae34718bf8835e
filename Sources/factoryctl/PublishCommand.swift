import ArgumentParser
import FactoryKit
import FoundationEssentials
import Dispatch
import FactoryBasics
import Glibc

struct PublishCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "publish",
        abstract: "Publish an update, pause or resume mission on the Redis mission stream (HQ only).",
        discussion: """
        Writes the mission exactly as the existing HQ does (stream ua:missions:delegation, fields \
        job_id, idempotency_key, envelope). Every factory's consumer sees it and acts if targeted. \
        Only FACTORY_ROLE=HEADQUARTERS may publish. An update for a target that already has one \
        in flight (not yet reported by every targeted factory, and within its timeout) is refused \
        unless --force.

        Examples:
          factoryctl publish update                            # every factory, branch main
          factoryctl publish update --target eu-1 --target eu-2 --branch release
          factoryctl publish update --target 'eu-*' --wait --timeout 600
          factoryctl publish pause --target eu-1
          factoryctl publish resume --target eu-1
        """
    )

    enum Action: String, ExpressibleByArgument, CaseIterable {
        case update, pause, resume
    }

    @OptionGroup var global: GlobalOptions
    @OptionGroup var redis: RedisOptions

    @Argument(help: "update, pause or resume.")
    var action: Action

    @Option(name: .long, help: ArgumentHelp("A factory id, or one glob such as 'eu-*' (repeatable; default: every factory).", valueName: "id"))
    var target: [String] = []

    @Option(name: [.short, .long], help: ArgumentHelp("Branch for an update.", valueName: "name"))
    var branch = "main"

    @Flag(name: .long, help: "Publish even if an update for these targets is in flight.")
    var force = false

    @Option(name: .long, help: ArgumentHelp("The mission's timeout_seconds (the consumer's deadline).", valueName: "seconds"))
    var missionTimeout: Int = 300

    @Option(name: .long, help: ArgumentHelp("Approximate MAXLEN for the stream (env UA_DELEGATION_STREAM_MAXLEN).", valueName: "n"))
    var maxLength: Int?

    @Flag(name: .long, help: "Follow the results until every targeted, registered factory has reported.")
    var wait = false

    @Option(name: .long, help: ArgumentHelp("With --wait: give up after this many seconds.", valueName: "seconds"))
    var timeout: Double = 600

    @Flag(name: .long, help: "Print JSON instead of text.")
    var json = false

    func validate() throws {
        if action == .update {
            do { try BranchName.validate(branch) } catch { throw ValidationError("\(error)") }
        }
        if action != .update, target.isEmpty {
            throw ValidationError("\(action.rawValue) needs --target (use --target '*' for every factory)")
        }
        do { _ = try MissionTarget(arguments: target) } catch { throw ValidationError("\(error)") }
        guard (1...86_400).contains(missionTimeout) else { throw ValidationError("--mission-timeout must be 1...86400 seconds") }
        guard timeout > 0 else { throw ValidationError("--timeout must be positive") }
        if let maxLength, maxLength < 100 { throw ValidationError("--max-length must be at least 100") }
    }

    func run() throws {
        let environment = FactoryEnvironment.current
        guard environment.role == "HEADQUARTERS" else {
            throw CommandFailure(code: .refused,
                                 message: "delegation publish not allowed on this machine (FACTORY_ROLE=\(environment.role)); publish from HQ, where FACTORY_ROLE=HEADQUARTERS")
        }
        let logger = global.logger("factoryctl.publish")
        let maxLength = self.maxLength ?? environment["UA_DELEGATION_STREAM_MAXLEN"].flatMap(Int.init) ?? 10_000
        let bus = try redis.bus(environment, maxLength: maxLength)
        let publisher = Publisher(bus: bus, logger: logger)
        let kind: Mission.Kind = switch action { case .update: .update; case .pause: .pause; case .resume: .resume }
        let outcome: Publisher.Outcome
        do {
            let target = try MissionTarget(arguments: target)
            outcome = try withRedis("publish") {
                try publisher.publish(kind: kind, target: target, branch: branch,
                                      timeoutSeconds: Int64(missionTimeout), force: force)
            }
        } catch let refusal as Publisher.Refusal {
            throw CommandFailure(code: .refused, message: refusal.description)
        }
        if !wait {
            if json { try printJSON(outcome) } else { say(outcome.jobID) }
            return
        }
        if !json { say(outcome.jobID) }
        let progress: (MissionResult) -> Void = { result in
            guard !json else { return }
            let r = result.result
            let commits = "\(r["from_commit"]?.string?.prefix(7) ?? "?") → \(r["to_commit"]?.string?.prefix(7) ?? "?")"
            StandardStream.error("  \(result.factoryID ?? "?"): \(result.status) \(commits)\(result.error.map { " (\($0))" } ?? "")\n")
        }
        let summary = try withRedis("wait for results") {
            try publisher.wait(for: outcome, timeout: timeout, stop: StopSignal(), onResult: progress)
        }
        if json { try printJSON(summary) } else { PublishSummaryText(summary: summary).lines.forEach(say) }
        if summary.targeted.isEmpty {
            throw CommandFailure(code: .timedOut, message: json ? "" : "no live registered factory matches \(outcome.targets); nothing to wait for")
        }
        if summary.timedOut { throw CommandFailure(code: .timedOut, message: json ? "" : "timed out waiting for \(summary.pending.joined(separator: ", "))") }
        if !summary.allSucceeded { throw CommandFailure(code: .failedUnchanged, message: json ? "" : "some factories failed") }
    }
}

struct PublishSummaryText {
    let summary: Publisher.WaitSummary

    var lines: [String] {
        var lines: [String] = []
        for result in summary.results {
            let r = result.result
            let to = r["to_commit"]?.string?.prefix(7) ?? "?"
            lines.append("\(result.factoryID ?? "?"): \(result.status) at \(to)\(result.error.map { " — \($0)" } ?? "")")
        }
        for id in summary.pending { lines.append("\(id): no result") }
        if summary.targeted.isEmpty { lines.append("No live registered factory matches the target.") }
        lines.append(summary.allSucceeded && !summary.timedOut ? "All \(summary.targeted.count) targeted factories succeeded" : "Not every targeted factory succeeded")
        return lines
    }
}
