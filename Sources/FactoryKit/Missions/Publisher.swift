import FoundationEssentials
import Dispatch
import FactoryBasics
import Glibc
import CSupport
import Logging
import RedisKit

/// HQ's side of missions: publish (with the in-flight rule) and wait for results.
/// Shared by `factoryctl publish` and the HQ HTTP endpoint.
public struct Publisher {
    public let bus: MissionBus
    public let logger: Logger
    /// Signs every mission when set (`UA_MISSION_SIGNING_KEY`).
    public var signer: MissionSigner?

    public init(bus: MissionBus, logger: Logger, signer: MissionSigner? = nil) {
        self.bus = bus
        self.logger = logger
        self.signer = signer
    }

    public struct Outcome: Codable, Sendable {
        public let jobID: String
        public let kind: String
        public let branch: String
        /// The wire `target_factory_id` ("" = every factory).
        public let targetFactoryID: String
        public let targets: String
        public let entryID: String
        public let stream: String
        /// Live registered factories the mission targets, at publish time.
        public var targeted: [String]
        /// Registered factories the target matches that are stale: not waited for.
        public var skipped: [String] = []
        /// The commit the mission pins, if any.
        public var commit: String?
        public var allowRewind = false
        public let publishedAt: Double
        /// Replicas that confirmed holding the mission (WAIT) before the publish returned; nil
        /// when the primary has none.
        public var replicasAcked: Int?

        enum CodingKeys: String, CodingKey {
            case kind, branch, targets, stream, targeted, skipped, commit
            case replicasAcked = "replicas_acked"
            case allowRewind = "allow_rewind"
            case jobID = "job_id", targetFactoryID = "target_factory_id", entryID = "entry_id", publishedAt = "published_at"
        }

        /// The same mission, waited for on exactly `members` (live at publish time or not).
        public func waitingFor(_ members: [String]) -> Outcome {
            var copy = self
            copy.targeted = members
            return copy
        }

        /// Every key, `commit` as null when the mission is not pinned.
        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(jobID, forKey: .jobID)
            try c.encode(kind, forKey: .kind)
            try c.encode(branch, forKey: .branch)
            try c.encode(targetFactoryID, forKey: .targetFactoryID)
            try c.encode(targets, forKey: .targets)
            try c.encode(entryID, forKey: .entryID)
            try c.encode(stream, forKey: .stream)
            try c.encode(targeted, forKey: .targeted)
            try c.encode(skipped, forKey: .skipped)
            try c.encode(commit, forKey: .commit)
            try c.encode(allowRewind, forKey: .allowRewind)
            try c.encode(publishedAt, forKey: .publishedAt)
            try c.encode(replicasAcked, forKey: .replicasAcked)
        }
    }

    public struct Refusal: Error, CustomStringConvertible, Sendable {
        public let inflightJobID: String
        public var description: String {
            "an update for these targets is already in flight (job \(inflightJobID)); wait for it to finish or time out, or pass --force"
        }
    }

    /// A target that names no registered factory: almost always a typo, and a mission for it
    /// would wait in the stream for a factory that never comes.
    public struct UnregisteredTarget: Error, CustomStringConvertible, Sendable {
        public let target: MissionTarget
        /// The ids (or the glob) that match no registered factory.
        public let unmatched: [String]
        /// Registered ids closest to what was asked, closest first.
        public let suggestions: [String]
        public var description: String {
            let what = unmatched.count == 1 ? "'\(unmatched[0])' matches" : unmatched.map { "'\($0)'" }.joined(separator: ", ") + " match"
            let hint = suggestions.isEmpty ? "no factory has registered yet" : "registered: \(suggestions.joined(separator: ", "))"
            return "\(what) no registered factory (\(hint)); nothing was published. Check the id with `factoryctl status --fleet`, or pass --allow-unregistered for a factory that has not registered yet"
        }
    }

    /// A registered factory a target matches, as a dry run lists it.
    public struct Match: Codable, Sendable, Equatable {
        public let factoryID: String
        public let status: String
        public let stale: Bool
        public let branch: String?
        public let commit: String?
        public let lastSeenSeconds: Double

        enum CodingKeys: String, CodingKey {
            case status, stale, branch, commit
            case factoryID = "factory_id", lastSeenSeconds = "last_seen_seconds"
        }
    }

    /// What a publish would do: the registered factories the target matches (live and stale),
    /// after the same checks `publish` makes. Writes nothing.
    public func plan(kind: Mission.Kind, target: MissionTarget, force: Bool, requireRegistered: Bool,
                     now: Date = Date()) throws -> [Match] {
        let entries = try FleetRegistry(redis: bus.redis).entries(capabilities: false)
        if requireRegistered { try Self.checkRegistered(target, registered: entries.map(\.factoryID)) }
        let matches = entries.filter { target.matches($0.factoryID) }.map { entry in
            Match(factoryID: entry.factoryID, status: entry.status,
                  stale: entry.isStale(now: now, after: FleetRegistry.staleAfter), branch: entry.branch, commit: entry.commit,
                  lastSeenSeconds: max(0, now.timeIntervalSince1970 - entry.lastSeenAt))
        }
        if kind == .update, !force,
           let inflight = try bus.inflightUpdate(overlapping: target, liveFactories: matches.filter { !$0.stale }.map(\.factoryID)) {
            throw Refusal(inflightJobID: inflight)
        }
        return matches
    }

    /// Every id must be registered; a glob must match one registered id. "Every factory" is
    /// always allowed (the broadcast the existing HQ sends).
    public static func checkRegistered(_ target: MissionTarget, registered: [String]) throws(UnregisteredTarget) {
        let unmatched: [String]
        switch target {
        case .all: return
        case .ids(let ids): unmatched = ids.filter { !registered.contains($0) }
        case .glob(let pattern): unmatched = registered.contains(where: target.matches) ? [] : [pattern]
        }
        guard !unmatched.isEmpty else { return }
        let probe = unmatched[0]
        let wanted = probe.lowercased()
        let scored: [(id: String, distance: Int)] = registered.map { id in
            (id: id, distance: EditDistance.between(wanted, id.lowercased()))
        }
        let ranked = scored.sorted { a, b in a.distance != b.distance ? a.distance < b.distance : a.id < b.id }
        let suggestions: [String] = ranked.prefix(3).map { $0.id }
        throw UnregisteredTarget(target: target, unmatched: unmatched, suggestions: suggestions)
    }

    /// Publishes a mission: the registry check and in-flight rule (`plan`), then the entries and
    /// job record (`MissionBus.publish`). With `members` (a rollout's named, forced ids) the
    /// registry is not read: the outcome's `targeted` is empty, and the caller waits for them.
    public func publish(kind: Mission.Kind, target: MissionTarget, branch: String, timeoutSeconds: Int64 = 300,
                        force: Bool, requireRegistered: Bool = false, commit: String? = nil, allowRewind: Bool = false,
                        retryQuarantined: Bool = false, splaySeconds: Int = 0, ignoreWindow: Bool = false,
                        fence: WriteFence? = nil, members: Bool = false) throws -> Outcome {
        let now = Date()
        // A rollout's members (ids, forced): sent as named, without reading the whole registry
        // for each wave or window slot; the caller waits for them (`waitingFor`).
        let matches = members && force && { if case .ids = target { true } else { false } }()
            ? [] : try plan(kind: kind, target: target, force: force, requireRegistered: requireRegistered, now: now)
        let mission = Mission.make(kind: kind, target: target, branch: branch, timeoutSeconds: timeoutSeconds,
                                   commit: commit, allowRewind: allowRewind, retryQuarantined: retryQuarantined,
                                   splaySeconds: splaySeconds, ignoreWindow: ignoreWindow)
        let recipients = Self.recipients(of: target, registered: matches.map(\.factoryID))
        // Enrolled factories read only their own inbox: each gets its copy there.
        let inboxes = try Enrollment(redis: bus.redis).enrolled(among: recipients)
        let entryID = try bus.publish(mission, publishedAt: now, signer: signer, factories: recipients, inboxes: inboxes.sorted(),
                                      fence: fence)
        logger.info("published \(mission.jobID) (\(kind.rawValue), \(target), branch \(branch)) as \(entryID)\(inboxes.isEmpty ? "" : ", and to \(inboxes.count) enrolled factor\(inboxes.count == 1 ? "y's inbox" : "ies' inboxes")")")
        let replicas = waitForReplicas(jobID: mission.jobID)
        var outcome = Outcome(jobID: mission.jobID, kind: kind.rawValue, branch: branch,
                       targetFactoryID: mission.envelope.context["target_factory_id"]?.string ?? "",
                       targets: target.description, entryID: entryID, stream: bus.stream,
                       targeted: matches.filter { !$0.stale }.map(\.factoryID),
                       skipped: matches.filter(\.stale).map(\.factoryID), commit: mission.commit,
                       allowRewind: mission.allowRewind, publishedAt: now.timeIntervalSince1970)
        outcome.replicasAcked = replicas
        return outcome
    }

    /// Milliseconds `publish` waits for a replica to hold what it wrote (`UA_REDIS_WAIT_MS`,
    /// default 1000; 0: do not wait).
    public var replicaWaitMilliseconds = 1000

    /// When the primary has replicas online (ROLE lists a replica once its first sync is done):
    /// `WAIT 1 <ms>`, so a mission acknowledged to the operator
    /// survives a failover to that replica. Returns how many confirmed (nil: no replicas, or not
    /// asked). Replication stays asynchronous: a mission no replica confirmed in time is logged,
    /// and `publish --wait` (a factory never answering) is how it shows.
    func waitForReplicas(jobID: String) -> Int? {
        guard replicaWaitMilliseconds > 0 else { return nil }
        let role: [RedisReply]
        do {
            role = try bus.redis.command(["ROLE"]).array ?? []
        } catch {
            logger.debug("cannot ask the primary for its replicas (ROLE): \(error); not waiting for one")
            return nil
        }
        guard role.first?.text == "master", role.count > 2, let replicas = role[2].array?.count, replicas > 0 else {
            logger.debug("no replica to wait for (ROLE: \(role.first?.text ?? "?"), \(role.count > 2 ? role[2].array?.count ?? 0 : 0) replicas)")
            return nil
        }
        let acked = (try? bus.redis.command(["WAIT", "1", String(replicaWaitMilliseconds)]).integer).map(Int.init) ?? 0
        if acked == 0 {
            logger.warning("published \(jobID), but no replica confirmed it within \(replicaWaitMilliseconds) ms: a failover now could lose it (publish --wait shows a factory that never answers; publish again then)")
        }
        return acked
    }

    /// The factories a mission for `target` is sent to: the ids it names (registered or not: each
    /// runs it when it comes), or, for a glob or every factory, those registered now. A factory
    /// that registers later never acts on it (its consumer skips missions from before it joined),
    /// so it is never counted as pending or in flight for it.
    static func recipients(of target: MissionTarget, registered: [String]) -> [String] {
        if case .ids(let ids) = target { return ids }
        return registered.filter(target.matches)
    }

    /// `ids` in groups whose missions fit on the shared stream: the ids that are not enrolled
    /// packed so each group's list (4 bytes of quotes and separator an id) leaves 4 KiB of the
    /// consumers' field limit for the rest of the envelope; the enrolled ones, which cost the
    /// shared entry nothing, go with the first group. One group unless the list is that long.
    public static func fittingGroups(_ ids: [String], enrolled: Set<String>) -> [[String]] {
        let budget = StreamEntry.maxFieldBytes - 4096
        var groups: [[String]] = [ids.filter(enrolled.contains)]
        var used = 0
        for id in ids where !enrolled.contains(id) {
            if used + id.utf8.count + 4 > budget, used > 0 {
                groups.append([])
                used = 0
            }
            groups[groups.count - 1].append(id)
            used += id.utf8.count + 4
        }
        return groups.filter { !$0.isEmpty }
    }

    /// Removes a decommissioned factory: its registration, and, when it is enrolled, its Redis
    /// user (connections closed), token and keys. Returns its registration as it was (nil when it
    /// had none) and whether an enrolment was revoked.
    /// A factory whose consumer still runs registers again at its next heartbeat unless it was
    /// enrolled (its credentials no longer authenticate); the caller says so.
    public func forget(_ factoryID: String) throws -> (registration: Registration?, revoked: Bool) {
        let registry = FleetRegistry(redis: bus.redis)
        let existing = try registry.get(factoryID)
        // Only an enrolled factory has a user to delete (that takes the `enroll` Redis user).
        let enrollment = Enrollment(redis: bus.redis)
        let (revoked, unsaved) = try enrollment.record(factoryID) != nil ? try enrollment.revoke(factoryID) : (false, nil)
        if let unsaved { logger.warning("\(factoryID)'s Redis user is deleted, but \(unsaved): a restart of Redis before then brings it back") }
        let removed = try bus.redis.command(["HDEL", FleetRegistry.key, factoryID]).integer ?? 0
        guard removed > 0 || revoked || existing != nil else { return (nil, false) }
        logger.notice("forgot factory \(factoryID)\(revoked ? " (enrolment revoked: Redis user deleted, connections closed, token invalid)" : "")")
        return (existing ?? Registration(factoryID: factoryID, factoryRole: "", registrationStatus: "unknown", capabilities: [],
                                         version: "", pid: 0, host: "", startedAt: 0, lastSeenAt: 0), revoked)
    }

    /// What `wait` saw happen, as it happens.
    public enum WaitEvent: Sendable {
        /// The factory took the mission (its registration says it is updating this job).
        case updating(String)
        /// The factory's update is in its soak window (provisional), this long left.
        case soaking(String, secondsLeft: Int)
        /// The factory took the mission and waits its splay delay, this long left, before it fetches.
        case splaying(String, secondsLeft: Int)
        case result(MissionResult)
        /// Back after the restart, registered on the new commit.
        case reregistered(String, commit: String?)
        /// Registered but not heard from (stale) or shut down (offline) while still owed a result.
        case unreachable(String, reason: String)
        /// The factory took the mission but defers it (outside its maintenance window, or its
        /// app holds the update lock): neither a success nor a failure. `until`: when its window opens.
        case deferred(String, text: String, until: Double?)
    }

    public struct WaitSummary: Codable, Sendable {
        public let jobID: String
        public let targeted: [String]
        /// The results, in the order they came, as their JSON text (`MissionResult.json`): kept so
        /// rather than parsed, since at 10,000 factories the parsed documents are tens of MB.
        public let resultTexts: [String]
        /// How many of them did not succeed.
        public let failed: Int
        public let pending: [String]
        public let timedOut: Bool
        /// Factories still pending at the end that were stale, offline or gone, and why.
        public var unreachable: [String: String] = [:]
        /// Factories still pending at the end that defer the mission, and what they said
        /// ("deferred until …").
        public var deferred: [String: String] = [:]
        public var allSucceeded: Bool { !targeted.isEmpty && pending.isEmpty && failed == 0 }

        /// The results, parsed (each time: walk them once).
        public var results: [MissionResult] { resultTexts.compactMap { JSONValue.parse($0).flatMap(MissionResult.init(json:)) } }

        enum CodingKeys: String, CodingKey {
            case targeted, results, pending, unreachable, deferred
            case jobID = "job_id", timedOut = "timed_out", allSucceeded = "all_succeeded"
        }

        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(jobID, forKey: .jobID)
            try c.encode(targeted, forKey: .targeted)
            try c.encode(results.map(\.json), forKey: .results)
            try c.encode(pending, forKey: .pending)
            try c.encode(timedOut, forKey: .timedOut)
            try c.encode(unreachable, forKey: .unreachable)
            try c.encode(deferred, forKey: .deferred)
            try c.encode(allSucceeded, forKey: .allSucceeded)
        }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            jobID = try c.decode(String.self, forKey: .jobID)
            targeted = try c.decode([String].self, forKey: .targeted)
            let results = try c.decode([JSONValue].self, forKey: .results).compactMap(MissionResult.init(json:))
            resultTexts = results.map { $0.json.pythonJSON }
            failed = results.filter { !$0.succeeded }.count
            pending = try c.decode([String].self, forKey: .pending)
            timedOut = try c.decode(Bool.self, forKey: .timedOut)
            unreachable = try c.decodeIfPresent([String: String].self, forKey: .unreachable) ?? [:]
            deferred = try c.decodeIfPresent([String: String].self, forKey: .deferred) ?? [:]
        }

        init(jobID: String, targeted: [String], resultTexts: [String], failed: Int, pending: [String], timedOut: Bool,
             unreachable: [String: String] = [:], deferred: [String: String] = [:]) {
            self.unreachable = unreachable
            self.deferred = deferred
            self.jobID = jobID
            self.targeted = targeted
            self.resultTexts = resultTexts
            self.failed = failed
            self.pending = pending
            self.timedOut = timedOut
        }
    }

    /// Follows the job until every targeted factory has reported — and, where the update changed
    /// the checkout, re-registered on the new commit — or until `timeout`. `onEvent` hears what
    /// happens as it happens, including targeted factories that go stale or offline meanwhile.
    /// With `waitOutDeferrals` (a rollout's wave), a factory that defers the mission does not use
    /// up `timeout`: it counts from the last time a factory still owed a result said it defers.
    ///
    /// Cost per round is O(what changed): results come from the results stream after the last
    /// entry seen (the job record and the enrolled set are read once, at the start), and
    /// registrations are read, 500 keys a command, with the light reader (`FleetEntry`), only for
    /// the factories still owed something; nothing parsed is kept between rounds but each
    /// result's text.
    public func wait(for outcome: Outcome, timeout: Double, stop: StopSignal, waitOutDeferrals: Bool = false,
                     onEvent: (WaitEvent) -> Void = { _ in }) throws -> WaitSummary {
        var deadline = Date().addingTimeInterval(timeout)
        var lastEntry = try bus.lastResultID()
        var follower = try JobFollower(bus: bus, outcome: outcome, onEvent: onEvent)
        var trimmed = Date.distantPast
        while true {
            try follower.look(now: Date(), onEvent: onEvent)
            if waitOutDeferrals, let seen = follower.watch.lastDeferral { deadline = max(deadline, seen.addingTimeInterval(timeout)) }
            // What each round read is freed, the kept results interleave with it: give the
            // freed pages back every 2 s so the process holds what it keeps, not its history.
            if -trimmed.timeIntervalSinceNow >= 2 {
                _ = factoryctl_malloc_trim()
                trimmed = Date()
            }
            let timedOut = Date() >= deadline || stop.isSet
            if follower.watch.pending.isEmpty || timedOut {
                _ = factoryctl_malloc_trim()
                return follower.watch.summary(timedOut: timedOut)
            }
            // Wake on the next result on the shared stream (no polling); re-registrations,
            // "updating" and enrolled factories' results are not on it, so look again every 50 ms
            // while restarts are awaited, every 200 ms for enrolled results, else every 1 s.
            let block = !follower.watch.restarting.isEmpty ? 50 : follower.owedByInbox.isEmpty ? 1000 : 200
            let remaining = Int(deadline.timeIntervalSinceNow * 1000)
            let read = try bus.readResults(after: lastEntry, jobID: outcome.jobID, blockMilliseconds: max(1, min(block, remaining)))
            lastEntry = read.lastID
            try follower.takeShared(read.factories, onEvent: onEvent)
        }
    }
}
