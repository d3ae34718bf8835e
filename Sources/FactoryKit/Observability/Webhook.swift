import FactoryBasics
import FoundationEssentials
import Glibc
import HTTPKit
import Logging
import RedisKit

/// Something HQ tells a webhook about (`UA_HQ_WEBHOOK_URL`).
public struct WebhookEvent: Sendable, Equatable {
    public enum Kind: String, Sendable {
        case missionFailed = "mission_failed"
        case rolloutHalted = "rollout_halted"
        case rolloutRolledBack = "rollout_rolled_back"
        case factoryStale = "factory_stale"
    }

    public var event: Kind
    /// What makes it one event: (job, factory), (rollout, state), (factory, last seen).
    public var key: String
    public var factory: String?
    public var job: String?
    public var commit: String?
    public var reason: String?
    public var rollout: String?
    /// One line, for Slack and Mattermost (their incoming webhooks show `text`).
    public var text: String
    public var at: Double = Date().timeIntervalSince1970

    public init(event: Kind, key: String, factory: String?, job: String?, commit: String?, reason: String?,
                rollout: String? = nil, text: String) {
        self.event = event
        self.key = key
        self.factory = factory
        self.job = job
        self.commit = commit
        self.reason = reason
        self.rollout = rollout
        self.text = Self.plain(text)
    }

    /// `text` with Slack's and Mattermost's control characters escaped (`&`, `<`, `>`: so an error
    /// text a factory wrote cannot mention `<!channel>` or make a link) and line breaks folded.
    static func plain(_ text: String) -> String { escapingMarkup(text, quotes: false, foldingLines: true) }

    /// The POST body: `text`, the structured fields (null when they do not apply), and `id` (the
    /// event's key) so a receiver can drop the rare repeat (delivery is at least once).
    public var json: JSONValue {
        func value(_ text: String?) -> JSONValue { text.map(JSONValue.string) ?? .null }
        return .object([
            "text": .string(text), "event": .string(event.rawValue), "id": .string(key),
            "factory": value(factory), "job": value(job), "commit": value(commit), "reason": value(reason),
            "rollout": value(rollout), "at": .double(at),
        ])
    }
}

/// HQ's webhook outbox: a Redis stream (`factoryctl:hq:webhooks`) of events waiting to be POSTed,
/// and a hash of every event ever raised (`factoryctl:hq:events`, key → when), so each event is
/// raised once across restarts and across several `serve`s: the check and the append are one
/// server-side script. The deliverer (`WebhookDelivery`) reads the stream with a consumer group
/// and acknowledges an entry only once the receiver answered 2xx.
public struct WebhookOutbox {
    public let redis: RedisClient

    public static let streamKey = MissionBus.keyPrefix + "hq:webhooks"
    public static let eventsKey = MissionBus.keyPrefix + "hq:events"
    public static let group = "factoryctl-webhook"
    /// Events are remembered this long (then a repeat of the same key could be raised again).
    public static let memorySeconds = Double(MissionBus.jobRetention)

    public init(redis: RedisClient) {
        self.redis = redis
    }

    /// Appends `event` unless it was raised before. Returns whether it was new.
    @discardableResult
    public func raise(_ event: WebhookEvent) throws(RedisError) -> Bool {
        let reply = try redis.command(["EVAL", Self.raiseScript, "2", Self.eventsKey, Self.streamKey,
                                       event.key, String(event.at), event.json.pythonJSON])
        return reply.integer == 1
    }

    static let raiseScript = """
    if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', '100000', '*', 'event', ARGV[3])
    return 1
    """

    /// Entries not yet delivered (nil when the outbox does not exist yet).
    public static func backlog(_ redis: RedisClient) throws(RedisError) -> Int? {
        do {
            let groups = try redis.command(["XINFO", "GROUPS", streamKey]).array ?? []
            for group in groups {
                let fields = group.array ?? []
                var index = 0, name: String?, lag: Int?, pending: Int?
                while index + 1 < fields.count {
                    switch fields[index].text ?? "" {
                    case "name": name = fields[index + 1].text
                    case "lag": lag = fields[index + 1].integer.map(Int.init)
                    case "pending": pending = fields[index + 1].integer.map(Int.init)
                    default: break
                    }
                    index += 2
                }
                if name == Self.group { return (lag ?? 0) + (pending ?? 0) }
            }
            return try redis.command(["XLEN", streamKey]).integer.map(Int.init)
        } catch {
            if error.replyCode == "ERR" { return nil }
            throw error
        }
    }

    /// Forgets events older than `memorySeconds` (so the hash does not grow without end).
    public func prune(now: Date = Date()) throws(RedisError) {
        let map = try redis.command(["HGETALL", Self.eventsKey]).fieldMap ?? [:]
        let old = map.filter { (Double($0.value) ?? 0) < now.timeIntervalSince1970 - Self.memorySeconds }.map(\.key)
        for start in stride(from: 0, to: old.count, by: 1000) {
            try redis.command(["HDEL", Self.eventsKey] + old[start..<min(start + 1000, old.count)])
        }
    }
}

/// Delivers the outbox to `url` (on a thread and connection of its own, never on a route's):
/// one POST at a time, in order; a non-2xx answer or no answer within `timeout` is retried with
/// capped exponential backoff and jitter (1 s … 5 min); an event still undelivered after
/// `giveUpAfter` seconds is dropped with a log line. A `serve` killed between the POST and the
/// acknowledgement sends that one event again when it starts: receivers may drop repeats by `id`.
public struct WebhookDelivery {
    public let outbox: WebhookOutbox
    public let url: String
    public let logger: Logger
    public var metrics: FleetMetrics?
    public var timeout: Double = 10
    public var giveUpAfter: Double = 24 * 3600
    public var backoff = Backoff(initial: 1, cap: 300)
    let consumer: String

    public init(outbox: WebhookOutbox, url: String, logger: Logger, metrics: FleetMetrics?) {
        self.outbox = outbox
        self.url = url
        self.logger = logger
        self.metrics = metrics
        // One consumer per host: a restarted serve takes back what it had not acknowledged, and
        // two HQ hosts never read each other's pending events.
        var name = [CChar](repeating: 0, count: 256)
        consumer = "serve@" + (gethostname(&name, name.count) == 0 ? String(cString: name) : "localhost")
    }

    public func run(stop: StopSignal) {
        var backoff = self.backoff
        var readPending = true
        var pruned = Date.distantPast
        while !stop.isSet {
            do {
                if Date().timeIntervalSince(pruned) > 3600 {
                    try outbox.prune()
                    pruned = Date()
                }
                let entries = try read(pending: readPending)
                readPending = false
                for entry in entries where !stop.isSet {
                    try deliver(entry, backoff: &backoff, stop: stop)
                }
            } catch {
                logger.warning("webhook outbox: \(error); trying again")
                outbox.redis.disconnect()
                readPending = true
                _ = stop.sleep(backoff.next())
            }
        }
    }

    private func read(pending: Bool) throws(RedisError) -> [(id: String, body: String?)] {
        do {
            try outbox.redis.command(["XGROUP", "CREATE", WebhookOutbox.streamKey, WebhookOutbox.group, "0", "MKSTREAM"])
        } catch {
            if error.replyCode != "BUSYGROUP" { throw error }
        }
        var command = ["XREADGROUP", "GROUP", WebhookOutbox.group, consumer, "COUNT", "10"]
        if !pending { command += ["BLOCK", "1000"] }
        let reply = try outbox.redis.command(command + ["STREAMS", WebhookOutbox.streamKey, pending ? "0" : ">"])
        var entries: [(id: String, body: String?)] = []
        for stream in reply.array ?? [] {
            for item in stream.array?.last?.array ?? [] {
                guard let parts = item.array, parts.count == 2, let id = parts[0].text else { continue }
                entries.append((id, StreamEntry(id: id, raw: parts[1].array ?? []).fields?["event"]))
            }
        }
        return entries
    }

    /// POSTs one entry until the receiver takes it (or it is too old), then acknowledges it.
    private func deliver(_ entry: (id: String, body: String?), backoff: inout Backoff, stop: StopSignal) throws(RedisError) {
        let raisedMs = Double(entry.id.split(separator: "-").first.flatMap { Int64($0) } ?? 0)
        while let body = entry.body, !stop.isSet {
            var answer = "no answer"
            do {
                let status = try HTTPClient.post(url, headers: ["Content-Type: application/json"], body: Array(body.utf8), timeout: timeout)
                if (200..<300).contains(status) {
                    metrics?.recordDelivery(delivered: true)
                    backoff.reset()
                    break
                }
                answer = "HTTP \(status)"
            } catch {
                answer = error.message
            }
            if Date().timeIntervalSince1970 - raisedMs / 1000 > giveUpAfter {
                logger.error("webhook: dropped event \(entry.id) after trying for \(Int(giveUpAfter)) s (last: \(answer))")
                metrics?.recordDelivery(delivered: false)
                break
            }
            let delay = backoff.next()
            logger.warning("webhook: \(answer) for event \(entry.id); retrying in \(delay.fixed(1)) s")
            _ = stop.sleep(delay)
        }
        guard !stop.isSet else { return }
        try outbox.redis.command(["XACK", WebhookOutbox.streamKey, WebhookOutbox.group, entry.id])
    }
}
