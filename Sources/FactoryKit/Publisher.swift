import FoundationEssentials
import Dispatch
import FactoryBasics
import Glibc
import Logging
import RedisKit

/// HQ's side of missions: publish (with the in-flight rule) and wait for results.
/// Shared by `factoryctl publish` and the HQ HTTP endpoint.
public struct Publisher {
    public let bus: MissionBus
    public let logger: Logger

    public init(bus: MissionBus, logger: Logger) {
        self.bus = bus
        self.logger = logger
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
        public let targeted: [String]
        public let publishedAt: Double

        enum CodingKeys: String, CodingKey {
            case kind, branch, targets, stream, targeted
            case jobID = "job_id", targetFactoryID = "target_factory_id", entryID = "entry_id", publishedAt = "published_at"
        }
    }

    public struct Refusal: Error, CustomStringConvertible, Sendable {
        public let inflightJobID: String
        public var description: String {
            "an update for these targets is already in flight (job \(inflightJobID)); wait for it to finish or time out, or pass --force"
        }
    }

    public func publish(kind: Mission.Kind, target: MissionTarget, branch: String, timeoutSeconds: Int64 = 300,
                        force: Bool) throws -> Outcome {
        let live = try FleetRegistry(redis: bus.redis).liveFactoryIDs()
        if kind == .update, !force, let inflight = try bus.inflightUpdate(overlapping: target, liveFactories: live) {
            throw Refusal(inflightJobID: inflight)
        }
        let mission = Mission.make(kind: kind, target: target, branch: branch, timeoutSeconds: timeoutSeconds)
        let now = Date()
        let entryID = try bus.publish(mission, publishedAt: now)
        logger.info("published \(mission.jobID) (\(kind.rawValue), \(target), branch \(branch)) as \(entryID)")
        return Outcome(jobID: mission.jobID, kind: kind.rawValue, branch: branch,
                       targetFactoryID: mission.envelope.context["target_factory_id"]?.string ?? "",
                       targets: target.description, entryID: entryID, stream: bus.stream,
                       targeted: live.filter(target.matches), publishedAt: now.timeIntervalSince1970)
    }

    public struct WaitSummary: Codable, Sendable {
        public let jobID: String
        public let targeted: [String]
        public let results: [MissionResult]
        public let pending: [String]
        public let timedOut: Bool
        public var allSucceeded: Bool { !targeted.isEmpty && pending.isEmpty && results.allSatisfy(\.succeeded) }

        enum CodingKeys: String, CodingKey {
            case targeted, results, pending
            case jobID = "job_id", timedOut = "timed_out", allSucceeded = "all_succeeded"
        }

        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(jobID, forKey: .jobID)
            try c.encode(targeted, forKey: .targeted)
            try c.encode(results.map(\.json), forKey: .results)
            try c.encode(pending, forKey: .pending)
            try c.encode(timedOut, forKey: .timedOut)
            try c.encode(allSucceeded, forKey: .allSucceeded)
        }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            jobID = try c.decode(String.self, forKey: .jobID)
            targeted = try c.decode([String].self, forKey: .targeted)
            results = try c.decode([JSONValue].self, forKey: .results).compactMap(MissionResult.init(json:))
            pending = try c.decode([String].self, forKey: .pending)
            timedOut = try c.decode(Bool.self, forKey: .timedOut)
        }

        init(jobID: String, targeted: [String], results: [MissionResult], pending: [String], timedOut: Bool) {
            self.jobID = jobID
            self.targeted = targeted
            self.results = results
            self.pending = pending
            self.timedOut = timedOut
        }
    }

    /// Follows the job until every targeted factory has reported — and, where the update changed
    /// the checkout, re-registered on the new commit — or until `timeout`.
    ///
    /// Cost per round is O(what changed): results come from the results stream after the last
    /// entry seen (the job record is read once, at the start), and re-registrations are checked
    /// with one HMGET of just the factories still restarting.
    public func wait(for outcome: Outcome, timeout: Double, stop: StopSignal,
                     onResult: (MissionResult) -> Void = { _ in }) throws -> WaitSummary {
        let deadline = Date().addingTimeInterval(timeout)
        let targeted = Set(outcome.targeted)
        var lastEntry = try bus.lastResultID()
        var results: [String: MissionResult] = [:]
        var order: [String] = []
        /// Reported a changed checkout; waiting for its consumer to come back on the new commit.
        var restarting: [String: (commit: String?, finishedAt: Double)] = [:]
        var awaiting = targeted

        func take(_ incoming: [MissionResult]) {
            for result in incoming {
                guard let id = result.factoryID, targeted.contains(id), results[id] == nil else { continue }
                results[id] = result
                order.append(id)
                onResult(result)
                awaiting.remove(id)
                if result.succeeded, result.result["restart_requested"]?.bool == true {
                    restarting[id] = (result.result["to_commit"]?.string, result.result["finished_at"]?.number ?? 0)
                }
            }
        }

        take(try bus.job(outcome.jobID).results)
        while true {
            if !restarting.isEmpty {
                let ids = restarting.keys.sorted()
                let reply = try bus.redis.command(["HMGET", FleetRegistry.key] + ids)
                for (id, value) in zip(ids, reply.array ?? []) {
                    guard let registration = value.text.flatMap(Registration.init(text:)),
                          let expected = restarting[id] else { continue }
                    if registration.commit == expected.commit, registration.startedAt >= expected.finishedAt {
                        restarting[id] = nil
                    }
                }
            }
            let pending = outcome.targeted.filter { awaiting.contains($0) || restarting[$0] != nil }
            let timedOut = Date() >= deadline || stop.isSet
            if pending.isEmpty || timedOut {
                return WaitSummary(jobID: outcome.jobID, targeted: outcome.targeted, results: order.compactMap { results[$0] },
                                   pending: pending, timedOut: !pending.isEmpty && timedOut)
            }
            // Wake on the next result (no polling); re-registrations are not on that stream, so
            // while only those are awaited, look again every 50 ms.
            let block = awaiting.isEmpty ? 50 : 1000
            let remaining = Int(deadline.timeIntervalSinceNow * 1000)
            let read = try bus.readResults(after: lastEntry, jobID: outcome.jobID, blockMilliseconds: max(1, min(block, remaining)))
            lastEntry = read.lastID
            take(read.results)
        }
    }
}
