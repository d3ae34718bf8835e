import ArgumentParser
import FactoryKit
import FoundationEssentials
import Dispatch
import FactoryBasics
import Glibc
import GitKit
import Logging
import Synchronization

struct PublishCommand: FactoryctlCommand {
    static let configuration = CommandConfiguration(
        commandName: "publish",
        abstract: "Publish an update, pause or resume mission on the Redis mission stream (HQ only).",
        discussion: """
        Writes the mission exactly as the existing HQ does (stream ua:missions:delegation, fields \
        job_id, idempotency_key, envelope). Every factory's consumer sees it and acts if targeted. \
        Only FACTORY_ROLE=HEADQUARTERS may publish. An update for a target that already has one \
        in flight (not yet reported by every targeted factory, and within its timeout) is refused \
        unless --force. With UA_MISSION_SIGNING_KEY set (a key from `factoryctl keys generate`), \
        every mission is signed (Ed25519) for consumers that verify. An update is pinned to the \
        branch's tip at publish time (read from --repo, UA_FACTORY_REPO_URL or the origin of \
        UA_FACTORY_DIR's checkout), so every factory moves to the same commit; --commit pins \
        by hand, --no-pin leaves each factory to take the tip when it fetches. An id, or a glob, that matches no registered factory is refused (exit 8, \
        nothing written, the closest registered ids named) unless --allow-unregistered. With \
        --wait, progress goes to stderr as it happens: received, each result, each factory back \
        on its new commit, targeted factories that are stale or offline, and those that defer \
        the mission (outside their maintenance window, UA_FACTORY_UPDATE_WINDOW, or while their \
        app holds its update lock): deferred is neither a success nor a failure. \
        --ignore-window makes every factory run it at once. Rollouts wait for windows: a \
        deferred member does not use up --wave-timeout, which counts from the last time it \
        said it defers.

        Examples:
          factoryctl publish update                            # every factory, branch main
          factoryctl publish update --target eu-1 --target eu-2 --branch release
          factoryctl publish update --target 'eu-*' --wait --timeout 600
          factoryctl publish update --target 'eu-*' --dry-run     # who would get it
          factoryctl publish update --commit 3f1c2a9b7d10...      # pinned: every factory moves exactly there
          factoryctl publish update --commit <older sha> --allow-rewind   # a deliberate fleet rollback
          factoryctl publish pause --target eu-1
          factoryctl publish resume --target eu-1
          factoryctl publish rollback --target eu-1        # back to the commit before its last update
        """
    )

    enum Action: String, ExpressibleByArgument, CaseIterable {
        case update, pause, resume, rollback
        case resumeRollout = "resume-rollout", abortRollout = "abort-rollout"
    }

    @OptionGroup var global: GlobalOptions
    @OptionGroup var redis: RedisOptions

    @Argument(help: "update, pause, resume, rollback, resume-rollout or abort-rollout.")
    var action: Action

    @Argument(help: ArgumentHelp("With resume-rollout and abort-rollout: the rollout's id.", valueName: "rollout-id"))
    var rolloutID: String?

    @OptionGroup(title: "Staged rollout (update)") var rollout: RolloutOptions

    @Option(name: .long, help: ArgumentHelp("A factory id, or one glob such as 'eu-*' (repeatable; default: every factory).", valueName: "id"),
            completion: .custom(Completions.factoryIDs))
    var target: [String] = []

    @OptionGroup var revision: RevisionOptions

    @Option(name: .long, help: ArgumentHelp("The factories' repository, to pin an update to its branch tip now (env UA_FACTORY_REPO_URL; else the origin of UA_FACTORY_DIR's checkout).", valueName: "url"))
    var repo: String?

    @Flag(name: .long, help: "Do not pin: each factory takes the branch's tip when it fetches (the existing HQ's behaviour).")
    var noPin = false

    @Flag(name: .long, help: "Publish even if an update for these targets is in flight.")
    var force = false

    @Flag(name: .long, help: "Update missions: factories move even to a commit quarantined there (it failed on them before), this once.")
    var retryQuarantined = false

    @Option(name: .long, help: ArgumentHelp("Update missions and rollouts: each factory waits a random delay in [0, SECONDS) before it fetches, so the fleet does not hit the git host at once (at most 3600, and less than --mission-timeout).", valueName: "seconds"))
    var splay: Int = 0

    @Flag(name: .long, help: "Update and rollback missions, and rollouts: factories run it at once, even outside their maintenance window (UA_FACTORY_UPDATE_WINDOW).")
    var ignoreWindow = false

    @Option(name: .long, help: ArgumentHelp("The mission's timeout_seconds (the consumer's deadline; a factory outside its maintenance window defers the mission only within it).", valueName: "seconds"))
    var missionTimeout: Int = 300

    @Option(name: .long, help: ArgumentHelp("Approximate MAXLEN for the stream (env UA_DELEGATION_STREAM_MAXLEN).", valueName: "n"))
    var maxLength: Int?

    @Flag(name: .long, help: "Follow the results until every targeted, registered factory has reported.")
    var wait = false

    @Option(name: .long, help: ArgumentHelp("With --wait: give up after this many seconds.", valueName: "seconds"))
    var timeout: Double = 600

    @Flag(name: [.customShort("n"), .long], help: "List the registered factories the target matches; publish nothing.")
    var dryRun = false

    @Flag(name: .long, help: "Publish for ids (or a glob) that match no registered factory (one that has not registered yet).")
    var allowUnregistered = false

    @Flag(name: .long, help: "Print one JSON object instead of text.")
    var json = false

    func validate() throws {
        if action == .resumeRollout || action == .abortRollout {
            guard let rolloutID, MissionID.isValid(rolloutID) else { throw ValidationError("\(action.rawValue) needs the rollout's id") }
            return
        }
        if rolloutID != nil { throw ValidationError("a rollout id goes with resume-rollout or abort-rollout") }
        if rollout.isRollout {
            guard action == .update else { throw ValidationError("--canary/--batch/--max-in-flight are for update") }
            if dryRun { throw ValidationError("a rollout has no --dry-run; use publish update --dry-run to see the targets") }
            if noPin { throw ValidationError("a rollout sends one pinned commit: drop --no-pin") }
        }
        if action != .update, target.isEmpty {
            throw ValidationError("\(action.rawValue) needs --target (use --target '*' for every factory)")
        }
        do { _ = try MissionTarget(arguments: target) } catch { throw ValidationError("\(error)") }
        guard (1...86_400).contains(missionTimeout) else { throw ValidationError("--mission-timeout must be 1...86400 seconds") }
        guard timeout > 0 else { throw ValidationError("--timeout must be positive") }
        if let maxLength, maxLength < FactoryEnvironment.minimumStreamMaxLength {
            throw ValidationError("--max-length must be at least \(FactoryEnvironment.minimumStreamMaxLength)")
        }
        if dryRun && wait { throw ValidationError("use --dry-run or --wait, not both") }
        if revision.commit != nil, action != .update, action != .rollback {
            throw ValidationError("--commit is for update and rollback missions")
        }
        if revision.allowRewind, revision.commit == nil { throw ValidationError("--allow-rewind needs --commit (the commit to roll the fleet back to)") }
        if noPin, revision.commit != nil || repo != nil { throw ValidationError("--no-pin cannot go with --commit or --repo") }
        guard (0...Mission.maximumSplaySeconds).contains(splay) else { throw ValidationError("--splay must be 0...\(Mission.maximumSplaySeconds) seconds") }
        if splay > 0, action != .update { throw ValidationError("--splay is for update missions and rollouts") }
        if splay > 0, splay >= missionTimeout { throw ValidationError("--splay must be shorter than --mission-timeout (\(missionTimeout) s): the wait counts against the mission's deadline") }
        if ignoreWindow, action != .update, action != .rollback { throw ValidationError("--ignore-window is for update and rollback missions and rollouts") }
        if retryQuarantined, action != .update || rollout.isRollout {
            throw ValidationError("--retry-quarantined is for update missions (a rollout halts on a quarantined commit instead)")
        }
    }

    func run(_ context: CommandContext) throws {
        let session = try PublishSession(self, context)
        if action == .resumeRollout || action == .abortRollout {
            return try controlRollout(session, id: rolloutID ?? "")
        }
        let target = try configured { try MissionTarget(arguments: self.target) }
        if rollout.isRollout { return try startRollout(session, target: target) }
        if dryRun { return try showPlan(session, target: target) }
        let outcome = try publish(session, target: target)
        if wait { return try waitForResults(session, outcome) }
        if json { try context.printJSON(outcome) } else { context.say(outcome.jobID) }
    }

    /// The mission's kind for the action (the rollout controls send no mission).
    var kind: Mission.Kind {
        switch action {
        case .update: .update
        case .pause: .pause
        case .resume: .resume
        case .rollback, .resumeRollout, .abortRollout: .rollback
        }
    }

    private func publish(_ session: PublishSession, target: MissionTarget) throws -> Publisher.Outcome {
        let commit = try revision.commit ?? (kind == .update && !noPin ? pinnedTip(session) : nil)
        return try publishRefusals {
            try withRedis("publish") {
                try session.publisher.publish(kind: kind, target: target, branch: revision.branch,
                                              timeoutSeconds: Int64(missionTimeout), force: force, requireRegistered: !allowUnregistered,
                                              commit: commit, allowRewind: revision.allowRewind, retryQuarantined: retryQuarantined,
                                              splaySeconds: kind == .update ? splay : 0, ignoreWindow: ignoreWindow)
            }
        }
    }

    /// `--wait`: progress on stderr as results come, then the summary.
    private func waitForResults(_ session: PublishSession, _ outcome: Publisher.Outcome) throws {
        let context = session.context
        if !json { context.say(outcome.jobID) }
        let progress = WaitProgress(total: outcome.targeted.count, enabled: !json, stream: context.stderr)
        if !json {
            for id in outcome.skipped { context.stderr.write("  \(id): stale, not waited for\n") }
            context.stderr.write("  waiting for \(outcome.targeted.count) factor\(outcome.targeted.count == 1 ? "y" : "ies")\n")
        }
        let summary = try withRedis("wait for results") {
            try session.publisher.wait(for: outcome, timeout: timeout, stop: StopSignal(), onEvent: progress.show)
        }
        let (status, message): (ExitStatus, String?) =
            if summary.targeted.isEmpty { (.timedOut, "no live registered factory matches \(outcome.targets); nothing to wait for") }
            else if summary.timedOut { (.timedOut, "timed out waiting for \(summary.pending.joined(separator: ", "))") }
            else if !summary.allSucceeded { (.failedUnchanged, "some factories failed") }
            else { (.success, nil) }
        if json {
            FleetJSON.writeWaitDocument(summary, exit: status, error: message) { context.printJSON(bytes: $0) }
        } else {
            PublishSummaryText(summary: summary).lines.forEach(context.say)
        }
        if let message { throw CommandFailure(code: status, message: message) }
    }

    /// Pins an update to the branch's tip as it is now (`BranchTip`: --repo, else
    /// UA_FACTORY_REPO_URL, else the origin of UA_FACTORY_DIR's checkout), so every factory ends
    /// on the same commit however long the rollout takes. With no repository to ask, nil.
    func pinnedTip(_ session: PublishSession) throws(CommandFailure) -> String? {
        let branch = revision.branch
        let tip = try configured { try BranchTip(repository: repo, environment: session.context.environment) }
        do throws(BranchTip.Failure) {
            switch try tip.resolve(branch) {
            case .unpinned:
                session.logger.notice("not pinned: no repository to resolve \(branch) from (set UA_FACTORY_REPO_URL or --repo); each factory takes the branch's tip when it fetches")
                return nil
            case .pinned(let commit, let shownURL):
                session.logger.info("pinned to \(commit) (the tip of \(branch) at \(shownURL))")
                return commit
            }
        } catch {
            switch error.reason {
            case .noSuchBranch:
                throw CommandFailure(code: .failedUnchanged, message: "\(error); nothing was published")
            case .unreadable:
                throw CommandFailure(code: .remoteUnreachable, message: "\(error); nothing was published (pass --commit SHA to pin by hand, or --no-pin)")
            }
        }
    }

    private func showPlan(_ session: PublishSession, target: MissionTarget) throws {
        let context = session.context
        let matches = try publishRefusals {
            try withRedis("read the fleet registry") {
                try session.publisher.plan(kind: kind, target: target, force: force, requireRegistered: !allowUnregistered,
                                           now: context.now())
            }
        }
        let branch = revision.branch
        if json {
            try context.printJSON(PublishPlan(kind: kind.rawValue, branch: branch, targets: target.description, dryRun: true, matches: matches))
            return
        }
        let live = matches.filter { !$0.stale }.count
        context.say("Would publish \(kind.rawValue)\(kind == .update ? " of \(branch)" : "") for \(target): \(matches.count) registered factor\(matches.count == 1 ? "y matches" : "ies match") (\(live) live)")
        let rows = matches.map { match in
            [match.factoryID, match.stale ? "\(match.status) (stale)" : match.status, match.branch ?? "-",
             match.commit.map { String($0.prefix(7)) } ?? "-"]
        }
        if !rows.isEmpty { context.sayAll(render([["FACTORY", "STATUS", "BRANCH", "COMMIT"]] + rows)) }
        context.say("Dry run: nothing was published")
    }
}

/// What every publish runs with: the HEADQUARTERS rule passed, the configuration read (a bad
/// value is refused before anything is published, as update refuses it), the publisher on its bus.
struct PublishSession {
    let context: CommandContext
    let publisher: Publisher
    let logger: Logger
    /// `FACTORYCTL_ROLLOUT_LEASE_SECONDS`.
    let leaseSeconds: Double

    init(_ command: PublishCommand, _ context: CommandContext) throws(CommandFailure) {
        let environment = context.environment
        try environment.role.require(.publish)
        _ = try configured { try environment.fetchTimeout() }
        leaseSeconds = try configured { try environment.rolloutLeaseSeconds() }
        logger = command.global.logger("factoryctl.publish", context)
        let maxLength = try configured { try environment.missionStreamMaxLength(flag: command.maxLength) }
        let bus = try command.redis.bus(context, maxLength: maxLength)
        let signer = try configured { try environment.missionSigner() }
        var publisher = Publisher(bus: bus, logger: logger, signer: signer)
        publisher.replicaWaitMilliseconds = try configured { try environment.redisWaitMilliseconds() }
        self.publisher = publisher
        self.context = context
    }
}

/// A publish the fleet refuses (an update in flight, a target nobody registered, a target list
/// too long for the shared stream): exit 8.
func publishRefusals<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let refusal as Publisher.Refusal {
        throw CommandFailure(code: .refused, message: refusal.description)
    } catch let refusal as Publisher.UnregisteredTarget {
        throw CommandFailure(code: .refused, message: refusal.description)
    } catch let refusal as OversizedMission {
        throw CommandFailure(code: .refused, message: refusal.description)
    }
}

/// `publish --dry-run --json`.
struct PublishPlan: Encodable {
    let kind: String
    let branch: String
    let targets: String
    let dryRun: Bool
    let matches: [Publisher.Match]

    enum CodingKeys: String, CodingKey {
        case kind, branch, targets, matches
        case dryRun = "dry_run"
    }
}

/// `publish --wait` progress on stderr, one line per event, with what is still pending.
final class WaitProgress: Sendable {
    let total: Int
    let enabled: Bool
    let stream: CommandOutput
    private let done = Mutex(Set<String>())

    init(total: Int, enabled: Bool, stream: CommandOutput) {
        self.total = total
        self.enabled = enabled
        self.stream = stream
    }

    func show(_ event: Publisher.WaitEvent) {
        guard enabled else { return }
        let line: String
        switch event {
        case .updating(let id):
            line = "\(id): received, updating"
        case .soaking(let id, let left):
            line = "\(id): soaking, \(left) s left"
        case .splaying(let id, let left):
            line = "\(id): waiting \(left) s (splay)"
        case .result(let result):
            let r = result.result
            let commits = "\(r["from_commit"]?.string?.prefix(7) ?? "?") → \(r["to_commit"]?.string?.prefix(7) ?? "?")"
            let restarting = result.succeeded && r["restart_requested"]?.bool == true
            if !restarting { done.withLock { _ = $0.insert(result.factoryID ?? "?") } }
            line = "\(result.factoryID ?? "?"): \(result.status) \(commits)\(result.error.map { " (\($0))" } ?? "")\(restarting ? ", restarting" : "")"
        case .reregistered(let id, let commit):
            done.withLock { _ = $0.insert(id) }
            line = "\(id): back, registered on \(commit.map { String($0.prefix(7)) } ?? "?")"
        case .unreachable(let id, let reason):
            line = "\(id): \(reason)"
        case .deferred(let id, let text, _):
            line = "\(id): \(text)"
        }
        let pending = total - done.withLock { $0.count }
        stream.write("  \(line) (\(pending) pending)\n")
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
        for id in summary.pending {
            if let deferred = summary.deferred[id] {
                lines.append("\(id): \(deferred)")
            } else {
                lines.append("\(id): no result\(summary.unreachable[id].map { " (\($0))" } ?? "")")
            }
        }
        if summary.targeted.isEmpty { lines.append("No live registered factory matches the target.") }
        lines.append(summary.allSucceeded && !summary.timedOut ? "All \(summary.targeted.count) targeted factories succeeded" : "Not every targeted factory succeeded")
        return lines
    }
}
