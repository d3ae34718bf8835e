import FactoryBasics
import FoundationEssentials
import Logging
import RedisKit
import Synchronization

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
    /// Keys already reported as not streams (each is logged once).
    private let brokenKeys = WarnedKeys()
    /// The positions as last read or written, between the rounds that re-read them from Redis.
    private let remembered = Remembered()

    public static let cursorKey = MissionBus.keyPrefix + "hq:watch"
    public static let lastSuccessKey = MissionBus.keyPrefix + "hq:last_success"
    /// Enrolled factories' result streams per `readScript` call.
    static let chunk = 500

    public init(bus: MissionBus, metrics: FleetMetrics?, outbox: WebhookOutbox?, logger: Logger) {
        self.bus = bus
        self.metrics = metrics
        self.outbox = outbox
        self.logger = logger
    }

    /// Rounds every `interval` seconds until `stop` is set; the fleet-wide checks (stale factories,
    /// rollouts) every `sweepEvery` rounds, whatever the results did, and so does the re-read of
    /// the positions (and after any failure). Redis errors are logged and
    /// retried with backoff.
    public func run(stop: StopSignal, interval: Double = 2, sweepEvery: Int = 5) {
        var backoff = Backoff(initial: 1, cap: 30)
        var round = 0
        var failed = false
        while !stop.isSet {
            let reread = failed || round % sweepEvery == 0
            failed = false
            do {
                try readResults(reread: reread)
            } catch {
                logger.warning("fleet watch: reading results: \(error); trying again")
                failed = true
            }
            if round % sweepEvery == 0 {
                do { try sweep() } catch {
                    logger.warning("fleet watch: sweep: \(error); trying again")
                    failed = true
                }
            }
            round += 1
            if failed {
                bus.redis.disconnect()
                _ = stop.sleep(backoff.next())
            } else {
                backoff.reset()
                _ = stop.sleep(interval)
            }
        }
    }

    // MARK: Results

    /// Entries read per stream per round.
    static let perStream = 100

    /// Reads what arrived on every result stream since the last round. Each chunk's positions
    /// are saved once it is handled, so a failure later in the round repeats nothing before it.
    /// With `reread` (and on the first round) the positions (`HGETALL` of the cursor hash, one
    /// field per enrolled factory) are read from Redis; else the ones this watcher last read and
    /// wrote are used. Another `serve` on the same Redis moves positions
    /// too: a position older than Redis's only reads entries again, and each counts once.
    public func readResults(reread: Bool = true) throws(RedisError) {
        var cursors: [String: String]
        if !reread, let known = remembered.state.withLock({ $0 }) {
            cursors = known
        } else {
            cursors = try bus.redis.command(["HGETALL", Self.cursorKey]).fieldMap ?? [:]
        }
        let origin = try startedAt(&cursors)
        remembered.state.withLock { $0 = cursors }
        // Read every round: a factory revoked a moment ago reports on the shared stream again,
        // and a stale set would pass over (and lose) those results as an enrolled factory's.
        let enrolled = try Enrollment(redis: bus.redis).enrolled()
        let shared = bus.resultsStream
        try readChunk([shared], cursors: cursors, origin: origin) { _, fields throws(RedisError) in
            try sharedResult(fields, enrolled: enrolled)
        }
        let owned = enrolled.sorted()
        for start in stride(from: 0, to: owned.count, by: Self.chunk) {
            let ids = Array(owned[start..<min(start + Self.chunk, owned.count)])
            let byKey = Dictionary(uniqueKeysWithValues: ids.map { (FactoryKeys($0).results, $0) })
            try readChunk(ids.map { FactoryKeys($0).results }, cursors: cursors, origin: origin) { key, fields throws(RedisError) in
                guard let id = byKey[key], let result = Self.attributed(fields, to: id, logger: logger) else { return }
                try observed(result, factory: id)
            }
        }
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

    /// Reads `keys` past their positions through `readScript` (a stream that is not a stream is
    /// skipped, logged; fields over 64 KiB never leave Redis), hands each entry to `handle`, then
    /// saves the new positions.
    private func readChunk(_ keys: [String], cursors: [String: String], origin: String,
                           _ handle: (String, [String: String]) throws(RedisError) -> Void) throws(RedisError) {
        let positions = keys.map { cursors[$0] ?? origin + "-0" }
        let reply = try bus.redis.command(["EVAL", Self.readScript, String(keys.count)] + keys + positions
                                          + [String(Self.perStream), String(StreamEntry.maxFieldBytes)])
        var moved: [String] = []
        for (index, key) in keys.enumerated() {
            guard let replies = reply.array, index < replies.count else { continue }
            let streamReply = replies[index]
            guard let items = streamReply.array else {
                if streamReply.isNull, brokenKeys.keys.withLock({ $0.insert(key).inserted }) {
                    logger.warning("fleet watch: \(key) is not a stream; skipped (its factory's results are not read until it is one)")
                }
                continue
            }
            for item in items {
                guard let parts = item.array, parts.count == 2, let id = parts[0].text else { continue }
                if let fields = StreamEntry(id: id, raw: parts[1].array ?? []).fields { try handle(key, fields) }
                moved += [key, id]
            }
        }
        guard !moved.isEmpty else { return }
        try bus.redis.command(["HSET", Self.cursorKey] + moved)
        remembered.state.withLock { state in
            for index in stride(from: 0, to: moved.count, by: 2) { state?[moved[index]] = moved[index + 1] }
        }
    }

    /// `XRANGE` of each key after its position, COUNT `ARGV[#KEYS+1]`, without fields longer than
    /// `ARGV[#KEYS+2]`; false (a nil reply) for a key that is not a stream.
    static let readScript = """
    local count, limit = ARGV[#KEYS + 1], tonumber(ARGV[#KEYS + 2])
    local out = {}
    for i, key in ipairs(KEYS) do
      local entries = redis.pcall('XRANGE', key, '(' .. ARGV[i], '+', 'COUNT', count)
      if type(entries) == 'table' and entries.err == nil then
        local kept = {}
        for _, entry in ipairs(entries) do
          local fields, small = entry[2], {}
          for j = 1, #fields - 1, 2 do
            if string.len(fields[j + 1]) <= limit then small[#small + 1] = fields[j]; small[#small + 1] = fields[j + 1] end
          end
          kept[#kept + 1] = {entry[1], small}
        end
        out[#out + 1] = kept
      else
        out[#out + 1] = false
      end
    end
    return out
    """

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

    /// A result attributed to `factory`: counted, recorded and announced only the first time HQ
    /// sees it for a job HQ published (`countScript`), so replayed entries and made-up job ids
    /// move nothing. A success is recorded at HQ's own time, never the factory's claim.
    private func observed(_ result: MissionResult, factory: String) throws(RedisError) {
        let first = try bus.redis.command(["EVAL", Self.countScript, "2", MissionBus.jobMetaKey(result.jobID), Self.seenKey(result.jobID),
                                           factory, String(MissionBus.jobRetention)])
        guard first.integer == 1 else { return }
        metrics?.recordResult(result)
        if result.succeeded {
            try bus.redis.command(["HSET", Self.lastSuccessKey, factory, String(Date().timeIntervalSince1970)])
        } else if let outbox {
            let reason = [result.result["failure"]?.string, result.error].compactMap { $0 }.joined(separator: ": ")
            let commit = [result.result["attempted_commit"]?.string, result.result["to_commit"]?.string]
                .compactMap { $0 }.first(where: ObjectIDText.isFull)
            try outbox.raise(WebhookEvent(
                event: .missionFailed, key: "failed:\(result.jobID):\(factory)", factory: factory, job: result.jobID, commit: commit,
                reason: reason.isEmpty ? nil : String(reason.prefix(500)),
                text: "factoryctl: mission \(result.jobID) FAILED on \(factory)\(reason.isEmpty ? "" : ": " + String(reason.prefix(200)))"))
        }
    }

    /// The factories HQ has seen a result of `jobID` from (expires with the job).
    static func seenKey(_ jobID: String) -> String { MissionBus.keyPrefix + "hq:seen:" + jobID }

    /// 1 when the job is HQ's (its record exists) and this is the first result of `ARGV[1]` for it.
    static let countScript = """
    if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
    if redis.call('HSETNX', KEYS[2], ARGV[1], '1') == 0 then return 0 end
    redis.call('EXPIRE', KEYS[2], ARGV[2])
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
            let seen = wholeNumber(entry.lastSeenAt)
            let minutes = wholeNumber(now.timeIntervalSince1970 - entry.lastSeenAt) / 60
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

/// Keys a watcher has already warned about (shared by its copies).
final class WarnedKeys: Sendable {
    let keys = Mutex<Set<String>>([])
}

/// What `FleetWatch` read and wrote last: the stream positions.
final class Remembered: Sendable {
    let state = Mutex<[String: String]?>(nil)
}
