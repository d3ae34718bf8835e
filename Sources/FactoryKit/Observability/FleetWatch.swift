import FactoryBasics
import FoundationEssentials
import Logging
import RedisKit

/// HQ's watcher (run by `serve` on a thread and connection of its own): follows every result
/// stream — the shared `<stream>:results` for factories that are not enrolled, each enrolled
/// factory's own `results` — and attributes each result by the key it was written to, as `--wait`
/// does (a claim about another factory is ignored and logged). Each result feeds the metrics
/// (`FleetMetrics`), HQ's own record of each factory's last success, and, when it failed, a
/// webhook event. It also notices factories that went stale and rollouts that halted or rolled
/// back.
///
/// Where it has read to is kept in Redis (`factoryctl:hq:watch`), so a restarted `serve` carries on
/// where it stopped: results that arrived while it was down still raise their events, and the
/// outbox (`WebhookOutbox`) raises each event once, whoever noticed it and however often.
/// A stream it has no position for is read from the moment watching first began.
public struct FleetWatch {
    public let bus: MissionBus
    public let metrics: FleetMetrics?
    /// Nil: no webhook configured (events are not recorded).
    public let outbox: WebhookOutbox?
    public let logger: Logger

    public static let cursorKey = MissionBus.keyPrefix + "hq:watch"
    public static let lastSuccessKey = MissionBus.keyPrefix + "hq:last_success"
    /// Keys per XREAD of enrolled factories' result streams.
    static let chunk = 500

    public init(bus: MissionBus, metrics: FleetMetrics?, outbox: WebhookOutbox?, logger: Logger) {
        self.bus = bus
        self.metrics = metrics
        self.outbox = outbox
        self.logger = logger
    }

    /// Rounds every `interval` seconds until `stop` is set; the fleet-wide checks (stale factories,
    /// rollouts) every `sweepEvery` rounds. Redis errors are logged and retried with backoff.
    public func run(stop: StopSignal, interval: Double = 2, sweepEvery: Int = 5) {
        var backoff = Backoff(initial: 1, cap: 30)
        var round = 0
        while !stop.isSet {
            do {
                try readResults()
                if round % sweepEvery == 0 { try sweep() }
                round += 1
                backoff.reset()
                _ = stop.sleep(interval)
            } catch {
                logger.warning("fleet watch: \(error); trying again")
                bus.redis.disconnect()
                _ = stop.sleep(backoff.next())
            }
        }
    }

    // MARK: Results

    /// Reads what arrived on every result stream since the last round.
    public func readResults() throws(RedisError) {
        var cursors = try bus.redis.command(["HGETALL", Self.cursorKey]).fieldMap ?? [:]
        let origin = try startedAt(&cursors)
        let enrolled = try Enrollment(redis: bus.redis).enrolled()
        var moved: [String: String] = [:]
        let shared = bus.resultsStream
        let sharedEntries = try read([shared], cursors: cursors, origin: origin, moved: &moved)
        for (_, entry) in sharedEntries[shared] ?? [] { try sharedResult(entry, enrolled: enrolled) }
        let owned = enrolled.sorted()
        for start in stride(from: 0, to: owned.count, by: Self.chunk) {
            let ids = owned[start..<min(start + Self.chunk, owned.count)]
            let entries = try read(ids.map { FactoryKeys($0).results }, cursors: cursors, origin: origin, moved: &moved)
            for id in ids {
                for (_, entry) in entries[FactoryKeys(id).results] ?? [] {
                    if let result = Self.attributed(entry, to: id, logger: logger) { try observed(result, factory: id) }
                }
            }
        }
        if !moved.isEmpty { try bus.redis.command(["HSET", Self.cursorKey] + moved.flatMap { [$0.key, $0.value] }) }
    }

    /// When watching first began (ms), recorded once: the start of every stream without a position.
    private func startedAt(_ cursors: inout [String: String]) throws(RedisError) -> String {
        if let started = cursors["started_ms"] { return started }
        let now = String(Int64(Date().timeIntervalSince1970 * 1000))
        try bus.redis.command(["HSETNX", Self.cursorKey, "started_ms", now])
        let started = try bus.redis.command(["HGET", Self.cursorKey, "started_ms"]).text ?? now
        cursors["started_ms"] = started
        return started
    }

    /// XREAD of `keys` from their positions; the newest id read per stream goes into `moved`.
    private func read(_ keys: [String], cursors: [String: String], origin: String,
                      moved: inout [String: String]) throws(RedisError) -> [String: [(String, [String: String])]] {
        let positions = keys.map { cursors[$0] ?? origin + "-0" }
        let reply = try bus.redis.command(["XREAD", "COUNT", "1000", "STREAMS"] + keys + positions)
        var found: [String: [(String, [String: String])]] = [:]
        for stream in reply.array ?? [] {
            guard let pair = stream.array, pair.count == 2, let key = pair[0].text else { continue }
            var entries: [(String, [String: String])] = []
            for item in pair[1].array ?? [] {
                guard let parts = item.array, parts.count == 2, let id = parts[0].text else { continue }
                let entry = StreamEntry(id: id, raw: parts[1].array ?? [])
                if let fields = entry.fields { entries.append((id, fields)) }
                moved[key] = id
            }
            found[key] = entries
        }
        return found
    }

    /// An announcement on the shared stream: believed only from the job record's field of the
    /// factory it names, and never for an enrolled factory (which reports under its own keys).
    private func sharedResult(_ fields: [String: String], enrolled: Set<String>) throws(RedisError) {
        guard let jobID = fields["job_id"], MissionID.isValid(jobID),
              let claimed = fields["envelope"].flatMap(JSONValue.parse).flatMap(MissionResult.init(json:)),
              let factory = claimed.factoryID, MissionID.isValid(factory) else { return }
        if enrolled.contains(factory) {
            logger.warning("ignored a result for \(jobID) on the shared stream for enrolled factory \(factory): it reports under its own keys")
            return
        }
        guard let result = try bus.sharedResults(jobID, of: [factory])[factory] else { return }
        try observed(result, factory: factory)
    }

    /// An entry of `id`'s own results stream, when it is about `id` and its job.
    static func attributed(_ fields: [String: String], to id: String, logger: Logger) -> MissionResult? {
        guard let result = fields["envelope"].flatMap(JSONValue.parse).flatMap(MissionResult.init(json:)) else { return nil }
        guard result.factoryID == id, fields["job_id"] == result.jobID, MissionID.isValid(result.jobID) else {
            logger.warning("ignored a result in \(id)'s own stream that claims to be from \(String((result.factoryID ?? "nobody").prefix(128)).debugDescription)")
            return nil
        }
        return result
    }

    private func observed(_ result: MissionResult, factory: String) throws(RedisError) {
        metrics?.recordResult(result)
        let finished = result.result["finished_at"]?.number ?? Date().timeIntervalSince1970
        if result.succeeded {
            try bus.redis.command(["EVAL", Self.newerScript, "1", Self.lastSuccessKey, factory, String(finished)])
        } else if let outbox {
            let reason = [result.result["failure"]?.string, result.error].compactMap { $0 }.joined(separator: ": ")
            let commit = result.result["attempted_commit"]?.string ?? result.result["to_commit"]?.string
            try outbox.raise(WebhookEvent(
                event: .missionFailed, key: "failed:\(result.jobID):\(factory)", factory: factory, job: result.jobID, commit: commit,
                reason: reason.isEmpty ? nil : String(reason.prefix(500)),
                text: "factoryctl: mission \(result.jobID) FAILED on \(factory)\(reason.isEmpty ? "" : ": " + String(reason.prefix(200)))"))
        }
    }

    /// HSET only when the value is newer than what is there.
    static let newerScript = """
    local old = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0') or 0
    if tonumber(ARGV[2]) > old then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
    return 1
    """

    /// Factory id → when HQ last saw it succeed (Unix time).
    public static func lastSuccesses(_ redis: RedisClient) throws(RedisError) -> [String: Double] {
        let map = try redis.command(["HGETALL", lastSuccessKey]).fieldMap ?? [:]
        return map.compactMapValues(Double.init)
    }

    // MARK: Sweeps

    /// Stale factories and rollouts that halted or rolled back, as events (each once).
    public func sweep(now: Date = Date()) throws(RedisError) {
        guard let outbox else { return }
        for entry in try FleetRegistry(redis: bus.redis).entries(capabilities: false)
        where entry.isStale(now: now, after: FleetRegistry.staleAfter) {
            let seen = Int(entry.lastSeenAt)
            let minutes = Int(now.timeIntervalSince1970 - entry.lastSeenAt) / 60
            try outbox.raise(WebhookEvent(
                event: .factoryStale, key: "stale:\(entry.factoryID):\(seen)", factory: entry.factoryID, job: entry.lastJobID,
                commit: entry.commit, reason: "not heard from since \(seen) (\(minutes) min)",
                text: "factoryctl: factory \(entry.factoryID) is stale: not heard from in \(minutes) min"))
        }
        for line in try RolloutLine.recent(bus.redis, limit: Rollout.recentLimit) where line.state == Rollout.State.halted.rawValue
            || line.state == Rollout.State.rolledBack.rawValue {
            let reason = try bus.redis.command(["HGET", Rollout.key(line.id), "halt_reason"]).text
            let verb = line.state == Rollout.State.halted.rawValue ? "halted" : "rolled back"
            try outbox.raise(WebhookEvent(
                event: line.state == Rollout.State.halted.rawValue ? .rolloutHalted : .rolloutRolledBack, key: "rollout:\(line.id):\(line.state)",
                factory: nil, job: nil, commit: line.commit, reason: reason, rollout: line.id,
                text: "factoryctl: rollout \(line.id) of \(line.branch)@\(String(line.commit.prefix(12))) \(verb) at wave \(line.wave)/\(line.waves)\(reason.map { ": " + $0 } ?? "")"))
        }
    }
}
