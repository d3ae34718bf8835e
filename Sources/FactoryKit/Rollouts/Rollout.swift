import FactoryBasics
import FoundationEssentials
import Logging
import RedisKit

/// A staged rollout: one pinned commit, sent wave by wave (canaries first), each wave only after
/// the previous one succeeded — every factory reported SUCCESS, re-registered on the new commit
/// and passed its own health gate. The first wave that brings the failures past `maxFailures`
/// (0: the first failure) halts it for good; with `rollbackOnHalt`, factories that moved are sent back, each to the
/// commit it was on, with pinned `allow_rewind` missions.
///
/// The state lives in Redis (`factoryctl:rollout:<id>`: plan, state, wave, each wave's job, each
/// member's commit before), so `status --rollout ID` shows it live and a publisher that died is
/// resumed (`publish resume-rollout ID`) from the wave it was in. One runner at a time drives it
/// (`RolloutLease`).
public struct Rollout {
    public struct Plan: Codable, Sendable, Equatable {
        public var id: String
        public var branch: String
        public var commit: String
        public var waves: [[String]]
        public var pauseSeconds: Double
        public var maxFailures: Int
        public var rollbackOnHalt: Bool
        public var waveTimeout: Double
        public var missionTimeout: Int64
        public var createdAt: Double
        /// Each wave's missions carry this splay (nil in plans made before it existed: none).
        public var splaySeconds: Int?
        /// A sliding window inside each wave (`RolloutWindow`): at most this many members
        /// updating at once, the next sent as soon as one finishes. Nil: the wave is sent at once.
        public var maxInFlight: Int?
        /// Halt a windowed rollout when more failures than this fall within its seconds.
        public var maxFailureRate: FailureRate?
        /// Every mission (the rollback's too) runs at once even outside the factories'
        /// maintenance windows (nil in plans made before it existed: no).
        public var ignoreWindow: Bool?

        enum CodingKeys: String, CodingKey {
            case id, branch, commit, waves
            case pauseSeconds = "pause_seconds", maxFailures = "max_failures", rollbackOnHalt = "rollback_on_halt"
            case waveTimeout = "wave_timeout", missionTimeout = "mission_timeout", createdAt = "created_at"
            case splaySeconds = "splay_seconds", maxInFlight = "max_in_flight", maxFailureRate = "max_failure_rate"
            case ignoreWindow = "ignore_window"
        }

        public init(id: String, branch: String, commit: String, waves: [[String]], pauseSeconds: Double, maxFailures: Int,
                    rollbackOnHalt: Bool, waveTimeout: Double, missionTimeout: Int64, createdAt: Double, splaySeconds: Int? = nil,
                    maxInFlight: Int? = nil, maxFailureRate: FailureRate? = nil, ignoreWindow: Bool? = nil) {
            self.id = id
            self.branch = branch
            self.commit = commit
            self.waves = waves
            self.pauseSeconds = pauseSeconds
            self.maxFailures = maxFailures
            self.rollbackOnHalt = rollbackOnHalt
            self.waveTimeout = waveTimeout
            self.missionTimeout = missionTimeout
            self.createdAt = createdAt
            self.splaySeconds = splaySeconds
            self.maxInFlight = maxInFlight
            self.maxFailureRate = maxFailureRate
            self.ignoreWindow = ignoreWindow
        }

        public var members: [String] { waves.flatMap { $0 } }
    }

    public enum State: String, Codable, Sendable {
        case running, succeeded, halted, rolledBack = "rolled_back", timedOut = "timed_out", aborted
    }

    /// `K/SECONDS`: a windowed rollout tolerates at most K failures within any SECONDS; one more halts it.
    public struct FailureRate: Codable, Sendable, Equatable, CustomStringConvertible {
        public var failures: Int
        public var seconds: Double

        public init(failures: Int, seconds: Double) {
            self.failures = failures
            self.seconds = seconds
        }

        /// "3/600": 0...100,000 failures, 1...86,400 seconds.
        public init?(_ text: String) {
            let parts = text.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count == 2, let failures = Int(parts[0]), (0...100_000).contains(failures),
                  let seconds = Double(parts[1]), seconds >= 1, seconds <= 86_400 else { return nil }
            self.init(failures: failures, seconds: seconds)
        }

        public var description: String { "\(failures)/\(secondsText)" }
        var secondsText: String { seconds == seconds.rounded() ? String(Int(seconds)) : String(seconds) }

        /// More than `failures` of `times` (seconds since the epoch) fall within one `seconds` span.
        public func exceeded(by times: [Double]) -> Bool {
            let sorted = times.sorted()
            guard sorted.count > failures else { return false }
            for end in failures..<sorted.count where sorted[end] - sorted[end - failures] <= seconds { return true }
            return false
        }
    }

    /// A size: a number of factories, or a percentage of them ("25%"; at least one).
    public enum Size: Sendable, Equatable {
        case count(Int)
        case percent(Double)

        public init?(_ text: String) {
            if text.hasSuffix("%"), let value = Double(text.dropLast()), value > 0, value <= 100 { self = .percent(value); return }
            if let value = Int(text), value > 0 { self = .count(value); return }
            return nil
        }

        func of(_ total: Int) -> Int {
            switch self {
            case .count(let n): min(n, total)
            case .percent(let p): max(1, min(total, Int((Double(total) * p / 100).rounded(.up))))
            }
        }
    }

    /// Waves over `live` (sorted by id), explicit canaries first.
    public static func waves(live: [String], canaryTargets: [String], canary: Size?, batch: Size?) -> [[String]] {
        let explicit = canaryTargets.filter(live.contains)
        var rest = live.sorted().filter { !explicit.contains($0) }
        var waves: [[String]] = []
        var first = explicit
        if let canary {
            let size = canary.of(live.count)
            while first.count < size, !rest.isEmpty { first.append(rest.removeFirst()) }
        }
        if !first.isEmpty { waves.append(first) }
        let batchSize = batch?.of(live.count) ?? max(1, rest.count)
        while !rest.isEmpty {
            let wave = Array(rest.prefix(batchSize))
            rest.removeFirst(wave.count)
            waves.append(wave)
        }
        return waves
    }

    public static func key(_ id: String) -> String { MissionBus.keyPrefix + "rollout:" + id }
    /// Rollouts in progress: id → their members (JSON), for the overlap check.
    public static let activeKey = MissionBus.keyPrefix + "rollouts:active"
    /// The newest rollouts: id → created_at (for the fleet page). A hash, not a list: HQ's Redis
    /// user (deploy/redis-users.acl) has hash commands, not list ones.
    public static let recentKey = MissionBus.keyPrefix + "rollouts:recent"
    static let recentLimit = 20

    /// Where a factory ended, for the summary.
    public struct Member: Codable, Sendable, Equatable {
        public let factoryID: String
        public let wave: Int
        public let status: String
        public let commit: String?
        public let before: String?
        public let error: String?

        enum CodingKeys: String, CodingKey {
            case wave, status, commit, before, error
            case factoryID = "factory_id"
        }
    }

    public struct Summary: Codable, Sendable {
        public let id: String
        public let state: State
        public let branch: String
        public let commit: String
        public let waves: [[String]]
        /// The wave being run, or the one that halted (0-based).
        public let wave: Int
        public let jobs: [String]
        public let members: [Member]
        public let failures: [Member]
        /// The sliding window's size, when the rollout has one.
        public var maxInFlight: Int?
        /// Why it halted (which limit), once it has.
        public var haltReason: String?

        enum CodingKeys: String, CodingKey {
            case id, state, branch, commit, waves, wave, jobs, members, failures
            case maxInFlight = "max_in_flight", haltReason = "halt_reason"
        }
    }

    public struct Conflict: Error, CustomStringConvertible, Sendable {
        public let rolloutID: String
        public let overlap: [String]
        public var description: String {
            "rollout \(rolloutID) is in progress for \(overlap.prefix(5).joined(separator: ", "))\(overlap.count > 5 ? ", …" : ""); wait for it, or abort it (factoryctl publish abort-rollout \(rolloutID))"
        }
    }

    public let publisher: Publisher
    public let logger: Logger
    /// How long a runner's lease lasts without renewal (`FACTORYCTL_ROLLOUT_LEASE_SECONDS`).
    public var leaseSeconds: Double
    /// Names this runner in its lease, for the refusal another runner gets.
    public var runnerName: String

    public init(publisher: Publisher, logger: Logger, leaseSeconds: Double = RolloutLease.defaultSeconds,
                runnerName: String = "factoryctl") {
        self.publisher = publisher
        self.logger = logger
        self.leaseSeconds = leaseSeconds
        self.runnerName = runnerName
    }

    var redis: RedisClient { publisher.bus.redis }

    /// Records a new rollout (refused when another one in progress shares a factory).
    public func create(_ plan: Plan) throws {
        let active = try redis.command(["HGETALL", Self.activeKey]).fieldMap ?? [:]
        for (other, membersJSON) in active {
            let members = JSONValue.parse(membersJSON)?.array?.compactMap(\.string) ?? []
            let overlap = members.filter(plan.members.contains)
            guard overlap.isEmpty else {
                // A record whose rollout is no longer running does not block.
                let state = try redis.command(["HGET", Self.key(other), "state"]).text
                if state == State.running.rawValue { throw Conflict(rolloutID: other, overlap: overlap) }
                try redis.command(["HDEL", Self.activeKey, other])
                continue
            }
        }
        let planJSON = try JSONValue.from(plan).pythonJSON
        try redis.command(["HSET", Self.key(plan.id), "plan", planJSON, "state", State.running.rawValue, "wave", "0",
                           "updated_at", String(Date().timeIntervalSince1970)])
        try redis.command(["EXPIRE", Self.key(plan.id), String(30 * 86_400)])
        try redis.command(["HSET", Self.activeKey, plan.id, JSONValue.array(plan.members.map(JSONValue.string)).pythonJSON])
        try redis.command(["HSET", Self.recentKey, plan.id, String(plan.createdAt)])
        let recent = try redis.command(["HGETALL", Self.recentKey]).fieldMap ?? [:]
        if recent.count > Self.recentLimit {
            let oldest = recent.sorted { (Double($0.value) ?? 0) < (Double($1.value) ?? 0) }.prefix(recent.count - Self.recentLimit)
            try redis.command(["HDEL", Self.recentKey] + oldest.map(\.key))
        }
    }

    public func load(_ id: String) throws -> (plan: Plan, fields: [String: String])? {
        let fields = try redis.command(["HGETALL", Self.key(id)]).fieldMap ?? [:]
        guard let text = fields["plan"], let json = JSONValue.parse(text),
              let plan = try? JSONDecoder().decode(Plan.self, from: Data(json.pythonJSON.utf8)) else { return nil }
        return (plan, fields)
    }

    /// Records `pairs`; under a lease (`fence`) only while this runner still holds it.
    func set(_ id: String, _ pairs: [(String, String)], fence: WriteFence? = nil) throws {
        try redis.command(["HSET", Self.key(id)] + pairs.flatMap { [$0.0, $0.1] } + ["updated_at", String(Date().timeIntervalSince1970)],
                          on: Self.key(id), fence: fence)
    }

    func finish(_ id: String, _ state: State, fence: WriteFence? = nil) throws {
        try set(id, [("state", state.rawValue)], fence: fence)
        try redis.command(["HDEL", Self.activeKey, id])
    }

    /// Stops a rollout: no later wave is sent (the wave in flight finishes on its own).
    public func abort(_ id: String) throws -> Bool {
        guard let loaded = try load(id), loaded.fields["state"] == State.running.rawValue else { return false }
        try finish(id, .aborted)
        return true
    }

    /// Runs (or resumes) the rollout from its recorded wave until it succeeds or halts. Refused
    /// (`RolloutLease.Busy`, naming the holder) while another runner drives it.
    public func run(_ id: String, stop: StopSignal, onEvent: @escaping (String) -> Void = { _ in }) throws -> Summary {
        guard let (plan, fields) = try load(id) else { throw FactoryError.failed("no rollout \(id) (unknown, or older than 30 days)") }
        guard fields["state"] == State.running.rawValue else { return try summary(id) }
        let lease = try RolloutLease.acquire(redis: redis, rolloutID: id, runner: runnerName, seconds: leaseSeconds, logger: logger)
        defer { lease.release(redis) }
        // The wave's wait and the pause end when asked to stop, or at once when the lease is lost.
        let halt = StopSignal()
        stop.onSet { halt.set() }
        lease.lost.onSet { halt.set() }
        // Read again under the lease: a runner before this one may have moved it on meanwhile.
        guard let current = try load(id)?.fields, current["state"] == State.running.rawValue else { return try summary(id) }
        do {
            return try drive(id, plan: plan, fields: current, lease: lease, stop: halt, onEvent: onEvent)
        } catch let error as RedisError where error.replyCode == WriteFence.replyCode {
            // A write found the lease another runner's (this one stalled past it): nothing of it happened.
            lease.lost.set()
            throw RolloutLease.Lost(rolloutID: id)
        }
    }

    /// The waves from the recorded one on, under `lease`.
    private func drive(_ id: String, plan: Plan, fields: [String: String], lease: RolloutLease, stop: StopSignal,
                       onEvent: @escaping (String) -> Void) throws -> Summary {
        var wave = Int(fields["wave"] ?? "0") ?? 0
        var failures = try failuresBefore(wave, plan: plan, fields: fields)
        while wave < plan.waves.count {
            // Aborted from elsewhere: no later wave.
            if try redis.command(["HGET", Self.key(id), "state"]).text != State.running.rawValue { return try summary(id) }
            let end = plan.maxInFlight == nil
                ? try runAtOnce(id, plan: plan, wave: wave, failuresBefore: failures, lease: lease, stop: stop, onEvent: onEvent)
                : try runWindow(id, plan: plan, wave: wave, failuresBefore: failures, lease: lease, stop: stop, onEvent: onEvent)
            // Throws when the lease was lost: the runner that has it counts this wave.
            try lease.confirm(redis)
            switch end {
            case .stopped:
                if try redis.command(["HGET", Self.key(id), "state"]).text == State.running.rawValue {
                    onEvent("stopped while wave \(wave + 1) was in flight; resume with: factoryctl publish resume-rollout \(id)")
                }
                return try summary(id)
            case .halted(let state, let reason):
                return try halt(id, plan: plan, wave: wave, state: state, reason: reason, lease: lease, stop: stop, onEvent: onEvent)
            case .passed(let failed):
                failures += failed
            }
            wave += 1
            try set(id, [("wave", String(wave))], fence: lease.fence)
            if wave < plan.waves.count, plan.pauseSeconds > 0 {
                onEvent("pausing \(plan.pauseSeconds) s before wave \(wave + 1)")
                if !stop.sleep(plan.pauseSeconds) {
                    try lease.confirm(redis)
                    return try summary(id)
                }
            }
            try lease.confirm(redis)
        }
        try finish(id, .succeeded, fence: lease.fence)
        return try summary(id)
    }

    /// Sends wave `wave` to all its members at once and waits for it (`waveTimeout`).
    private func runAtOnce(_ id: String, plan: Plan, wave: Int, failuresBefore: Int, lease: RolloutLease, stop: StopSignal,
                           onEvent: @escaping (String) -> Void) throws -> WaveEnd {
        let outcome = try sendOrFollow(id, plan: plan, wave: wave, lease: lease, onEvent: onEvent)
        // A member that defers the mission (its window is closed) is neither a success nor a
        // failure: the wave timeout counts from the last time one said so.
        let result = try publisher.wait(for: outcome, timeout: plan.waveTimeout, stop: stop, waitOutDeferrals: true) { event in
            Self.report(event, onEvent)
        }
        if stop.isSet && !result.pending.isEmpty { return .stopped }
        let failed = result.failed + result.pending.count
        // A wave fails when the failures so far exceed what the rollout tolerates
        // (`maxFailures`, 0 by default: the first failure halts).
        guard failuresBefore + failed > plan.maxFailures else { return .passed(failed: failed) }
        let state: State = result.timedOut && result.failed == 0 ? .timedOut : .halted
        return .halted(state: state, reason: "\(failed) factor\(failed == 1 ? "y" : "ies") failed or did not report")
    }

    /// A wave's event worth a line: a result, or a member that defers its mission.
    static func report(_ event: Publisher.WaitEvent, _ onEvent: (String) -> Void) {
        switch event {
        case .result(let r): onEvent("  \(r.factoryID ?? "?"): \(r.status)\(r.error.map { " (\($0))" } ?? "")")
        case .deferred(let id, let text, _): onEvent("  \(id): \(text)")
        default: break
        }
    }

    /// Resumed: the failures the finished waves already used of the budget.
    private func failuresBefore(_ wave: Int, plan: Plan, fields: [String: String]) throws -> Int {
        var failures = 0
        let window = WindowState(fields: fields, members: [])
        for finished in 0..<min(wave, plan.waves.count) {
            if plan.maxInFlight != nil {
                failures += window.failed(among: plan.waves[finished])
                continue
            }
            guard let job = fields["wave:\(finished):job"] else { continue }
            let reported = try publisher.bus.job(job).results
            let succeeded = Set(reported.filter(\.succeeded).compactMap(\.factoryID))
            failures += plan.waves[finished].filter { !succeeded.contains($0) }.count
        }
        return failures
    }

    /// The wave's mission: the one already sent (resumed), else a new one, sent under the lease.
    private func sendOrFollow(_ id: String, plan: Plan, wave: Int, lease: RolloutLease,
                              onEvent: (String) -> Void) throws -> Publisher.Outcome {
        let members = plan.waves[wave]
        if let job = try redis.command(["HGET", Self.key(id), "wave:\(wave):job"]).text {
            onEvent("wave \(wave + 1)/\(plan.waves.count): following \(job) (resumed)")
            return Publisher.Outcome(jobID: job, kind: Mission.Kind.update.rawValue, branch: plan.branch, targetFactoryID: "",
                                     targets: members.joined(separator: ", "), entryID: "", stream: publisher.bus.stream,
                                     targeted: members, commit: plan.commit, publishedAt: Date().timeIntervalSince1970)
        }
        try recordBefore(id, members, lease: lease)
        let outcome = try publisher.publish(kind: .update, target: .ids(members), branch: plan.branch,
                                            timeoutSeconds: plan.missionTimeout, force: true, commit: plan.commit,
                                            splaySeconds: plan.splaySeconds ?? 0, ignoreWindow: plan.ignoreWindow ?? false,
                                            fence: lease.fence, members: true)
        try set(id, [("wave:\(wave):job", outcome.jobID)], fence: lease.fence)
        onEvent("wave \(wave + 1)/\(plan.waves.count): \(members.joined(separator: ", ")) → \(String(plan.commit.prefix(7))) (\(outcome.jobID))")
        // Every member is waited for, live at publish time or not.
        return outcome.waitingFor(members)
    }

    /// Where each of `members` is now, for a rollback: what it said about itself (an enrolled
    /// factory's own registration key; `FleetRegistry` believes nothing else about it).
    func recordBefore(_ id: String, _ members: [String], lease: RolloutLease) throws {
        let now = try FleetRegistry(redis: redis).registrations(of: members)
        var before: [(String, String)] = []
        for member in members {
            if let commit = (now[member] ?? nil)?.commit { before.append(("before:\(member)", commit)) }
        }
        // HSETNX: a publisher that died after sending this wave but before recording its
        // job sends it again on resume, by when members may already be on the new commit.
        for (field, commit) in before {
            try redis.command(["HSETNX", Self.key(id), field, commit], on: Self.key(id), fence: lease.fence)
        }
        try lease.confirm(redis)
    }

    /// The failures passed what the rollout tolerates: halted for good (rolled back if asked).
    private func halt(_ id: String, plan: Plan, wave: Int, state: State, reason: String, lease: RolloutLease,
                      stop: StopSignal, onEvent: @escaping (String) -> Void) throws -> Summary {
        onEvent("halted at wave \(wave + 1): \(reason)")
        try set(id, [("halt_reason", reason)], fence: lease.fence)
        try set(id, [("wave", String(wave))], fence: lease.fence)
        if plan.rollbackOnHalt {
            try rollBack(id, plan: plan, upTo: wave, lease: lease, stop: stop, onEvent: onEvent)
            try lease.confirm(redis)
            try finish(id, .rolledBack, fence: lease.fence)
        } else {
            try finish(id, state, fence: lease.fence)
        }
        return try summary(id)
    }

    /// Sends every member of waves 0...`upTo` that moved back to the commit it was on before.
    func rollBack(_ id: String, plan: Plan, upTo: Int, lease: RolloutLease, stop: StopSignal, onEvent: (String) -> Void) throws {
        let fields = try redis.command(["HGETALL", Self.key(id)]).fieldMap ?? [:]
        let members = plan.waves.prefix(upTo + 1).flatMap { $0 }
        let registered = try FleetRegistry(redis: redis).registrations(of: members)
        var groups: [String: [String]] = [:]
        for member in members {
            guard let before = fields["before:\(member)"], Mission.isCommitID(before) else { continue }
            let now = (registered[member] ?? nil)?.commit
            if now != before { groups[before, default: []].append(member) }
        }
        // A long list is sent as several missions, each within the consumers' field limit on the
        // shared stream; all are sent, then all are waited for.
        let enrolled = try Enrollment(redis: redis).enrolled(among: members)
        var sent: [(Publisher.Outcome, [String])] = []
        for (commit, ids) in groups.sorted(by: { $0.key < $1.key }) {
            var jobs: [String] = []
            for chunk in Publisher.fittingGroups(ids.sorted(), enrolled: enrolled) {
                try lease.confirm(redis)
                let outcome = try publisher.publish(kind: .update, target: .ids(chunk), branch: plan.branch,
                                                    timeoutSeconds: plan.missionTimeout, force: true, commit: commit, allowRewind: true,
                                                    ignoreWindow: plan.ignoreWindow ?? false, fence: lease.fence, members: true)
                onEvent("rolling back \(chunk.joined(separator: ", ")) to \(String(commit.prefix(7))) (\(outcome.jobID))")
                jobs.append(outcome.jobID)
                sent.append((outcome, chunk))
            }
            try set(id, [("rollback:\(commit)", jobs.joined(separator: " "))], fence: lease.fence)
        }
        let deadline = Date().addingTimeInterval(plan.waveTimeout)
        for (outcome, chunk) in sent {
            _ = try publisher.wait(for: outcome.waitingFor(chunk), timeout: max(1, deadline.timeIntervalSinceNow), stop: stop,
                                   waitOutDeferrals: true)
        }
    }

    /// The rollout as it stands: state, waves, and where every member is now.
    public func summary(_ id: String) throws -> Summary {
        guard let (plan, fields) = try load(id) else { throw FactoryError.failed("no rollout \(id) (unknown, or older than 30 days)") }
        let state = State(rawValue: fields["state"] ?? "") ?? .running
        let wave = Int(fields["wave"] ?? "0") ?? 0
        let window = plan.maxInFlight == nil ? nil : WindowState(fields: fields, members: plan.members)
        var jobs = plan.waves.indices.compactMap { fields["wave:\($0):job"] }
        if window != nil { jobs = Self.windowJobs(fields) }
        var results: [String: MissionResult] = [:]
        for job in jobs {
            for result in try publisher.bus.job(job).results { if let f = result.factoryID { results[f] = result } }
        }
        let registered = try FleetRegistry(redis: redis).registrations(of: plan.members).compactMapValues { $0 }
        var members: [Member] = []
        for (index, ids) in plan.waves.enumerated() {
            for member in ids {
                let result = results[member]
                var status = result?.status ?? (index < wave || (index == wave && jobs.count > index) ? "PENDING" : "NOT_SENT")
                if let window {
                    status = window.done[member]?.status == "TIMED_OUT" ? "TIMED_OUT"
                        : result?.status ?? (fields["slot:\(member)"] != nil ? "PENDING" : "NOT_SENT")
                }
                members.append(Member(factoryID: member, wave: index, status: status, commit: registered[member]?.commit,
                                      before: fields["before:\(member)"], error: result?.error))
            }
        }
        let failures = members.filter { ["FAILED", "TIMED_OUT"].contains($0.status) || (state != .running && $0.status == "PENDING") }
        return Summary(id: id, state: state, branch: plan.branch, commit: plan.commit, waves: plan.waves, wave: wave,
                       jobs: jobs, members: members, failures: failures, maxInFlight: plan.maxInFlight,
                       haltReason: fields["halt_reason"])
    }

    /// A windowed rollout's jobs, in the order they were sent.
    static func windowJobs(_ fields: [String: String]) -> [String] {
        var sent: [String: Double] = [:]
        for (field, value) in fields where field.hasPrefix("slot:") {
            let parts = value.split(separator: " ")
            guard parts.count == 2, let at = Double(parts[1]) else { continue }
            sent[String(parts[0])] = min(sent[String(parts[0])] ?? at, at)
        }
        return sent.sorted { ($0.value, $0.key) < ($1.value, $1.key) }.map(\.key)
    }
}

/// One rollout as the fleet page lists it.
public struct RolloutLine: Sendable, Equatable {
    public let id: String
    public let state: String
    public let branch: String
    public let commit: String
    /// The wave running (or halted), 1-based, and how many there are.
    public let wave: Int
    public let waves: Int
    public let factories: Int

    /// The newest `limit` rollouts.
    public static func recent(_ redis: RedisClient, limit: Int = 5) throws(RedisError) -> [RolloutLine] {
        let recent = try redis.command(["HGETALL", Rollout.recentKey]).fieldMap ?? [:]
        let ids = recent.sorted { (Double($0.value) ?? 0, $0.key) > (Double($1.value) ?? 0, $1.key) }.prefix(limit).map(\.key)
        var lines: [RolloutLine] = []
        for id in ids where MissionID.isValid(id) {
            let fields = try redis.command(["HGETALL", Rollout.key(id)]).fieldMap ?? [:]
            guard let plan = fields["plan"].flatMap(JSONValue.parse) else { continue }
            let waves = plan["waves"]?.array ?? []
            let wave = Int(fields["wave"] ?? "0") ?? 0
            lines.append(RolloutLine(id: id, state: fields["state"] ?? "?", branch: plan["branch"]?.string ?? "?",
                                     commit: plan["commit"]?.string ?? "?", wave: min(wave + 1, max(1, waves.count)), waves: waves.count,
                                     factories: waves.reduce(0) { $0 + ($1.array?.count ?? 0) }))
        }
        return lines
    }
}
