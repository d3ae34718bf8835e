import FoundationEssentials
import FactoryBasics

/// "Start a rollout": the live registered factories the target matches now, split into waves,
/// recorded in Redis as a running rollout that the caller then drives (`Rollout.run`). One
/// implementation for `publish update --canary/--batch` and `POST /api/v1/ops/factory/rollout`;
/// what differs between them is what their callers ask for here, not how it is done.
public struct RolloutStart: Sendable {
    public var target: MissionTarget
    public var branch: String
    /// The one commit every wave moves to: given, or the branch's tip (`BranchTip`); nil until then.
    public var commit: String?
    /// Factories for the first wave (canaries go first).
    public var canaryTargets: [String] = []
    public var canary: Rollout.Size?
    public var batch: Rollout.Size?
    public var pauseSeconds: Double = 0
    /// A sliding window in each wave instead of batches: at most this many updating at once.
    public var maxInFlight: Rollout.Size?
    /// With a window: halt when more failures than this fall within its seconds.
    public var maxFailureRate: Rollout.FailureRate?
    public var maxFailures = 0
    public var rollbackOnHalt = false
    public var waveTimeout: Double = 600
    public var missionTimeout: Int64 = 300
    /// Each wave's missions make the factories wait a random delay in [0, S) before they fetch.
    public var splaySeconds = 0
    /// Every mission runs at once, even outside the factories' maintenance windows.
    public var ignoreWindow = false
    /// Start even while an update for these targets is in flight.
    public var force = false
    /// Refuse ids (or a glob) that match no registered factory.
    public var requireRegistered = false

    public init(target: MissionTarget, branch: String, commit: String? = nil) {
        self.target = target
        self.branch = branch
        self.commit = commit
    }

    /// No live registered factory matches the target: there is nothing to roll out.
    public struct NoLiveFactory: Error, CustomStringConvertible, Sendable {
        public let target: MissionTarget
        public var description: String { "no live registered factory matches \(target)" }
    }

    /// Plans the waves and records the rollout with `rollout`'s connection: `plan`, then
    /// `Rollout.create`, which throws `Rollout.Conflict` when another running rollout shares a factory.
    public func start(with rollout: Rollout, now: Date = Date()) throws -> Rollout.Plan {
        let plan = try plan(with: rollout, now: now)
        try rollout.create(plan)
        return plan
    }

    /// The waves over the live factories the target matches, after the checks a publish makes:
    /// throws `Publisher.Refusal` (an update in flight, without `force`),
    /// `Publisher.UnregisteredTarget` (with `requireRegistered`), `NoLiveFactory`, or a Redis
    /// error. Writes nothing. A start without a commit is the caller's mistake.
    public func plan(with rollout: Rollout, now: Date = Date()) throws -> Rollout.Plan {
        guard let commit else { throw FactoryError.invalidArgument("a rollout moves every wave to one commit: none was given") }
        let matches = try rollout.publisher.plan(kind: .update, target: target, force: force, requireRegistered: requireRegistered, now: now)
        let live = matches.filter { !$0.stale }.map(\.factoryID)
        guard !live.isEmpty else { throw NoLiveFactory(target: target) }
        guard maxInFlight == nil || batch == nil else {
            throw FactoryError.invalidArgument("a sliding window (max in flight) and batches are two ways to pace one rollout: choose one")
        }
        guard maxFailureRate == nil || maxInFlight != nil else {
            throw FactoryError.invalidArgument("a failure rate halts a sliding window: give max in flight with it")
        }
        let plan = Rollout.Plan(id: MissionID.make(prefix: "rollout"), branch: branch, commit: commit,
                                waves: Rollout.waves(live: live, canaryTargets: canaryTargets, canary: canary, batch: batch),
                                pauseSeconds: pauseSeconds, maxFailures: maxFailures, rollbackOnHalt: rollbackOnHalt,
                                waveTimeout: waveTimeout, missionTimeout: missionTimeout, createdAt: now.timeIntervalSince1970,
                                splaySeconds: splaySeconds > 0 ? splaySeconds : nil,
                                maxInFlight: maxInFlight?.of(live.count), maxFailureRate: maxFailureRate,
                                ignoreWindow: ignoreWindow ? true : nil)
        try Self.checkSharedEnvelopes(plan, enrolled: try Enrollment(redis: rollout.redis).enrolled(among: live))
        return plan
    }

    /// Refuses, before anything is sent, a plan with a wave (or a window's batch) whose mission on
    /// the shared stream, naming the members that are not enrolled, would be over the consumers'
    /// field limit: every one of them would dead-letter it mid-rollout. Checked on the longest ids
    /// a mission of that wave can name; enrolled members cost nothing there (each inbox entry
    /// names only its factory).
    public static func checkSharedEnvelopes(_ plan: Rollout.Plan, enrolled: Set<String>) throws(OversizedMission) {
        for wave in plan.waves {
            let shared = wave.filter { !enrolled.contains($0) }
            let count = min(shared.count, plan.maxInFlight ?? shared.count)
            guard count > 1 else { continue }
            let longest = Array(shared.sorted { $0.utf8.count > $1.utf8.count }.prefix(count))
            let mission = Mission.make(kind: .update, target: .ids(longest), branch: plan.branch, timeoutSeconds: plan.missionTimeout,
                                       commit: plan.commit, splaySeconds: plan.splaySeconds ?? 0)
            let bytes = mission.envelope.json.pythonJSON.utf8.count
            if bytes > StreamEntry.maxFieldBytes { throw OversizedMission(jobID: plan.id, bytes: bytes, named: count) }
        }
    }
}
