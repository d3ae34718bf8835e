import FoundationEssentials
import Dispatch
import FactoryBasics
import Glibc
import Logging
import RedisKit

/// One entry read from a stream.
public struct StreamEntry: Sendable, Equatable {
    public let id: String
    /// nil when the entry was trimmed from the stream while still pending.
    /// A field larger than `maxFieldBytes` is cut to its first KiB here (see `problems`).
    public let fields: [String: String]?
    /// Why the entry cannot be read as text at all (invalid UTF-8, oversized fields): such an
    /// entry is dead-lettered without parsing.
    public var problems: [String] = []

    public init(id: String, fields: [String: String]?, problems: [String] = []) {
        self.id = id
        self.fields = fields
        self.problems = problems
    }

    /// The largest field factoryctl reads; an envelope is a few hundred bytes.
    public static let maxFieldBytes = 64 * 1024

    /// Decodes raw field pairs strictly, noting what is wrong instead of guessing.
    init(id: String, raw: [RedisReply]) {
        var fields: [String: String] = [:]
        var problems: [String] = []
        for index in stride(from: 0, to: raw.count - 1, by: 2) {
            guard case .string(let nameData) = raw[index], case .string(let valueData) = raw[index + 1] else { continue }
            let name = String(validating: nameData.prefix(256), as: UTF8.self) ?? String(decoding: nameData.prefix(256), as: UTF8.self)
            if nameData.count > 256 || String(validating: nameData, as: UTF8.self) == nil {
                problems.append("a field name is not valid UTF-8 or longer than 256 bytes")
            }
            if valueData.count > Self.maxFieldBytes {
                problems.append("field \(name) is \(valueData.count) bytes (the limit is \(Self.maxFieldBytes))")
                fields[name] = String(decoding: valueData.prefix(1024), as: UTF8.self) + "… (\(valueData.count) bytes, cut)"
                continue
            }
            if let text = String(validating: valueData, as: UTF8.self) {
                fields[name] = text
            } else {
                problems.append("field \(name) is not valid UTF-8")
                fields[name] = String(decoding: valueData, as: UTF8.self)
            }
        }
        self.init(id: id, fields: fields, problems: problems)
    }
}

/// The Redis side of missions: the mission stream, its results and dead-letter streams, consumer
/// groups, and factoryctl's job records. Keys and fields follow DESIGN.md's wire format.
public final class MissionBus {
    public let redis: RedisClient
    public let stream: String
    public let deadLetterStream: String
    /// Approximate MAXLEN for XADD on every stream factoryctl writes.
    public var maxLength: Int
    /// `UA_FLEET_ID` (empty when unset): with the stream, what a mission's signature binds it to.
    public var fleetID: String
    /// Set on an enrolled factory: it reads its own inbox and writes only its own keys.
    public var own: FactoryKeys?
    /// Logs records ignored because they claim another identity than their key's.
    public var logger = Logger(label: "factoryctl.attribution")

    public var resultsStream: String { stream + ":results" }
    /// Where this factory reads missions: its own inbox when enrolled, else the shared stream.
    public var readStream: String { own?.inbox ?? stream }
    public static let keyPrefix = "factoryctl:"
    public static let jobRetention = 7 * 24 * 3600

    public init(redis: RedisClient, stream: String, deadLetterStream: String, maxLength: Int = 10_000, fleetID: String = "") {
        self.redis = redis
        self.stream = stream
        self.deadLetterStream = deadLetterStream
        self.maxLength = maxLength
        self.fleetID = fleetID
    }

    /// Where missions on this bus are published: what a signature covers besides the mission.
    public var binding: MissionSigning.Binding { MissionSigning.Binding(stream: stream, fleetID: fleetID) }

    public static func groupName(factoryID: String) -> String { "factoryctl:\(factoryID)" }
    /// The job's results from factories that are not enrolled (`result:<id>` fields; the shared
    /// factory user may write it, so HQ's own record of the job is not kept here).
    static func jobKey(_ jobID: String) -> String { keyPrefix + "job:" + jobID }
    /// HQ's record of the job (the `jobMeta` JSON): only HQ writes it.
    static func jobMetaKey(_ jobID: String) -> String { keyPrefix + "jobs:" + jobID }
    static let inflightKey = keyPrefix + "inflight"

    // MARK: Consumer groups

    /// Creates this factory's group at the stream's end (`$`), once. Other groups are left alone.
    /// An inbox's group starts at its beginning: everything in it was sent to this factory.
    public func ensureGroup(_ group: String) throws(RedisError) {
        do {
            try redis.command(["XGROUP", "CREATE", readStream, group, own == nil ? "$" : "0", "MKSTREAM"])
        } catch {
            if error.replyCode != "BUSYGROUP" { throw error }
        }
    }

    /// This consumer's own pending entries (delivered, never acked): crash recovery.
    public func readPending(group: String, consumer: String, count: Int = 100) throws(RedisError) -> [StreamEntry] {
        try read(group: group, consumer: consumer, id: "0", count: count, blockMilliseconds: nil)
    }

    /// New entries, blocking up to `blockMilliseconds` (the socket timeout must be longer).
    /// `silently` are sent in the same write with their replies suppressed (a heartbeat riding
    /// on the read: one wake-up instead of two); only when `redis.canSkipReplies()`.
    public func readNew(group: String, consumer: String, count: Int = 10, blockMilliseconds: Int,
                        silently: [[String]] = []) throws(RedisError) -> [StreamEntry] {
        try read(group: group, consumer: consumer, id: ">", count: count, blockMilliseconds: blockMilliseconds, silently: silently)
    }

    private func read(group: String, consumer: String, id: String, count: Int, blockMilliseconds: Int?,
                      silently: [[String]] = []) throws(RedisError) -> [StreamEntry] {
        var command = ["XREADGROUP", "GROUP", group, consumer, "COUNT", String(count)]
        if let blockMilliseconds { command += ["BLOCK", String(blockMilliseconds)] }
        command += ["STREAMS", readStream, id]
        let reply = try redis.command(command.map { Data($0.utf8) }, after: silently.map { $0.map { Data($0.utf8) } })
        if reply.isNull { return [] }
        guard let streams = reply.array else { throw .unexpectedReply("XREADGROUP returned \(reply)") }
        var entries: [StreamEntry] = []
        for streamReply in streams {
            guard let pair = streamReply.array, pair.count == 2, let items = pair[1].array else { continue }
            for item in items {
                guard let parts = item.array, parts.count == 2, let entryID = parts[0].text else { continue }
                if parts[1].isNull {
                    entries.append(StreamEntry(id: entryID, fields: nil))
                } else {
                    entries.append(StreamEntry(id: entryID, raw: parts[1].array ?? []))
                }
            }
        }
        return entries
    }

    /// The id of the newest entry on the results stream ("0-0" when empty).
    public func lastResultID() throws(RedisError) -> String {
        let reply = try redis.command(["XREVRANGE", resultsStream, "+", "-", "COUNT", "1"])
        return reply.array?.first?.array?.first?.text ?? "0-0"
    }

    /// Blocks until results newer than `id` arrive on the shared results stream or
    /// `blockMilliseconds` pass; returns the newest entry id seen (`id` when none) and the
    /// factories that announced a result of `jobID` among the new entries. The entries are
    /// announcements, not evidence (every factory on the shared user may add to the stream): the
    /// caller reads each result from its factory's own record (`sharedResults`). Only new entries
    /// cross the wire, so a waiter's cost per round is what arrived, not the whole job.
    public func readResults(after id: String, jobID: String, blockMilliseconds: Int) throws(RedisError) -> (lastID: String, factories: [String]) {
        let reply = try redis.command(["XREAD", "COUNT", "1000", "BLOCK", String(blockMilliseconds), "STREAMS", resultsStream, id])
        var last = id
        var factories: [String] = []
        for entry in reply.array?.first?.array?.last?.array ?? [] {
            guard let pair = entry.array, let entryID = pair.first?.text else { continue }
            last = entryID
            guard let fields = pair.last?.fieldMap, fields["job_id"] == jobID,
                  let result = fields["envelope"].flatMap(JSONValue.parse).flatMap(MissionResult.init(json:)),
                  let factory = result.factoryID else { continue }
            factories.append(factory)
        }
        return (last, factories)
    }

    public func ack(group: String, _ ids: [String]) throws(RedisError) {
        guard !ids.isEmpty else { return }
        try redis.command(["XACK", readStream, group] + ids)
    }

    // MARK: Writing

    /// Writes the mission (`MissionFanout`): the shared stream's entry in the existing HQ's
    /// fields, one entry in the inbox of every enrolled factory in `inboxes` naming only that
    /// factory, and the job's record, in one server-side script. The first XADD (the shared
    /// entry's, else the first inbox's) runs first, so when it fails (wrong key type, out of
    /// memory, ACL) nothing is recorded and no phantom job is left in flight; once it succeeds,
    /// the rest and the record follow in the same atomic step, so no reader sees one without the
    /// other, and a 10,000-factory broadcast is one round trip. A target list names only the
    /// factories that read the shared stream; when all of them are enrolled there is no shared
    /// entry. With a `signer`, every entry is signed over its own envelope (the signature binds the
    /// mission stream's name, not the key an entry sits in). `factories` are the ones the job
    /// targets now (its record's `factories`): only they count as pending or in flight for it. With
    /// a `fence` (a rollout's lease) nothing is written unless the fence still holds. Throws
    /// `OversizedMission`, writing nothing, when an envelope is over the consumers' field limit.
    /// Returns the shared entry's id (the first inbox entry's when there is none).
    @discardableResult
    public func publish(_ mission: Mission, publishedAt: Date = Date(), signer: MissionSigner? = nil,
                        factories: [String]? = nil, inboxes: [String] = [], fence: WriteFence? = nil) throws -> String {
        let envelope = mission.envelope
        let fanout = try MissionFanout(mission, inboxes: inboxes, signer: signer, binding: binding, issuedAt: publishedAt)
        let meta = Self.jobMeta(mission, publishedAt: publishedAt, factories: factories, inboxes: inboxes)
        let perInbox = fanout.inboxes.first?.extra.count ?? 0
        let sharedExtra: [String] = fanout.shared?.extra ?? []
        var keys: [String] = [stream, Self.jobMetaKey(mission.jobID), Self.inflightKey, fence?.key ?? stream]
        keys += fanout.inboxes.map { $0.key }
        let head: [String] = [
            String(maxLength), envelope.jobID, envelope.idempotencyKey, fanout.shared?.envelope ?? "",
            meta.pythonJSON, String(Self.jobRetention), mission.kind == .update ? "1" : "0", String(FactoryKeys.inboxMaxLength),
            fence?.value ?? "", String(sharedExtra.count), String(perInbox),
            fanout.template == nil ? "0" : "1", fanout.template?.prefix ?? "", fanout.template?.suffix ?? "",
        ]
        var arguments: [String] = ["EVAL", Self.publishScript, String(keys.count)]
        arguments.reserveCapacity(3 + keys.count + head.count + sharedExtra.count + fanout.inboxes.count * (1 + perInbox))
        arguments += keys
        arguments += head
        arguments += sharedExtra
        for inbox in fanout.inboxes {
            arguments.append(inbox.envelope)
            arguments += inbox.extra
        }
        let reply = try redis.command(arguments)
        guard let id = reply.text else { throw RedisError.unexpectedReply("publish returned \(reply)") }
        return id
    }

    /// KEYS: the stream, the job record, the in-flight hash, the fence's key, then the inboxes.
    /// ARGV: MAXLEN, job id, idempotency key, the shared envelope ('' for none), the record, its
    /// TTL, "1" for an update, the inboxes' MAXLEN, the fence's value, the number of the shared
    /// entry's extra arguments (n) and of each inbox entry's (k), "1" when the inbox envelopes are
    /// built from the template, its prefix and suffix, the n, then per inbox its envelope (with
    /// the template: its factory id) and its k.
    static let publishScript = WriteFence.check(keyIndex: 4, valueIndex: 9) + """

    local first = 15 + tonumber(ARGV[10])
    local per = 1 + tonumber(ARGV[11])
    local templated = ARGV[12] == '1'
    local id = false
    if ARGV[4] ~= '' then
      local fields = {'job_id', ARGV[2], 'idempotency_key', ARGV[3], 'envelope', ARGV[4]}
      for i = 15, first - 1 do fields[#fields + 1] = ARGV[i] end
      id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(fields))
    end
    for k = 5, #KEYS do
      local at = first + (k - 5) * per
      local envelope = ARGV[at]
      if templated then envelope = ARGV[13] .. envelope .. ARGV[14] end
      local fields = {'job_id', ARGV[2], 'idempotency_key', ARGV[3], 'envelope', envelope}
      for i = at + 1, at + per - 1 do fields[#fields + 1] = ARGV[i] end
      local added = redis.call('XADD', KEYS[k], 'MAXLEN', '~', ARGV[8], '*', unpack(fields))
      if not id then id = added end
    end
    redis.call('SET', KEYS[2], ARGV[5], 'EX', ARGV[6])
    if ARGV[7] == '1' then redis.call('HSET', KEYS[3], ARGV[2], ARGV[5]) end
    return id
    """

    /// Writes a result once per job and factory, in one server-side script: a consumer killed
    /// after reporting and before acking reports nothing twice when the mission is delivered
    /// again, and no reader sees the record without the stream entry (the record is written
    /// first, so a reader woken by the entry finds it). A factory that is not enrolled writes the
    /// job's `result:<id>` field and `<stream>:results`; an enrolled one its own job key and
    /// results stream. Returns false when this factory had already reported this job.
    @discardableResult
    public func publishResult(_ result: MissionResult) throws(RedisError) -> Bool {
        let json = result.json.pythonJSON
        if let own {
            let reply = try redis.command([
                "EVAL", Self.ownResultScript, "2", own.job(result.jobID), own.results,
                json, String(Self.jobRetention), String(FactoryKeys.inboxMaxLength), result.jobID, result.status,
            ])
            return reply.integer == 1
        }
        let reply = try redis.command([
            "EVAL", Self.resultScript, "2", Self.jobKey(result.jobID), resultsStream,
            result.factoryID.map { "result:" + $0 } ?? "", json, String(Self.jobRetention), String(maxLength),
            result.jobID, result.status,
        ])
        return reply.integer == 1
    }

    static let resultScript = """
    if ARGV[1] ~= '' then
      if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
      redis.call('EXPIRE', KEYS[1], ARGV[3])
    end
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'job_id', ARGV[5], 'status', ARGV[6], 'envelope', ARGV[2])
    return 1
    """

    static let ownResultScript = """
    if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return 0 end
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'job_id', ARGV[4], 'status', ARGV[5], 'envelope', ARGV[1])
    return 1
    """

    /// Copies an entry to the dead-letter stream with the reason. A valid envelope gets
    /// `failure_error` and `retry_count` added; anything else keeps its raw fields.
    public func deadLetter(_ entry: StreamEntry, reason: String, envelope: MissionEnvelope? = nil) throws(RedisError) {
        var fields: [String: String] = [:]
        var order: [String] = []
        if let envelope {
            var json = envelope.json.object!
            json["failure_error"] = .string(reason)
            json["retry_count"] = .int(0)
            fields = ["job_id": envelope.jobID, "envelope": JSONValue.object(json).pythonJSON]
            order = ["job_id", "envelope"]
        } else {
            for (key, value) in (entry.fields ?? [:]).sorted(by: { $0.key < $1.key }) {
                fields[key] = value
                order.append(key)
            }
            fields["job_id"] = fields["job_id"] ?? ""
            if !order.contains("job_id") { order.insert("job_id", at: 0) }
        }
        fields["failure_error"] = reason
        fields["source_stream"] = readStream
        fields["source_id"] = entry.id
        order += ["failure_error", "source_stream", "source_id"].filter { !order.contains($0) }
        try add(own?.deadLetters ?? deadLetterStream, fields, order: order)
    }

    @discardableResult
    private func add(_ key: String, _ fields: [String: String], order: [String]) throws(RedisError) -> String {
        var command = ["XADD", key, "MAXLEN", "~", String(maxLength), "*"]
        for name in order { command += [name, fields[name] ?? ""] }
        let reply = try redis.command(command)
        guard let id = reply.text else { throw .unexpectedReply("XADD returned \(reply)") }
        return id
    }

    // MARK: Job records

    /// A published job's record: targets, branch, deadline, and the factories it was sent to.
    static func jobMeta(_ mission: Mission, publishedAt: Date, factories: [String]? = nil, inboxes: [String] = []) -> JSONValue {
        var meta: [String: JSONValue] = [
            "job_id": .string(mission.jobID), "kind": .string(mission.kind.rawValue), "branch": .string(mission.branch),
            "target": mission.target.json, "published_at": .double(publishedAt.timeIntervalSince1970),
            "expires_at": .double(publishedAt.timeIntervalSince1970 + Double(mission.envelope.timeoutSeconds)),
        ]
        if let factories { meta["factories"] = .array(factories.sorted().map(JSONValue.string)) }
        if !inboxes.isEmpty { meta["inboxes"] = .array(inboxes.sorted().map(JSONValue.string)) }
        return .object(meta)
    }

    public struct JobRecord: Sendable {
        public let meta: JSONValue?
        public var results: [MissionResult]
        public let target: MissionTarget?
        /// The factories the job was sent to when it was published; nil for a record without the
        /// list (published by an older factoryctl).
        public let factories: [String]?
        /// The same, for lookups: a 10,000-factory job is asked about each of 10,000 factories.
        private let factorySet: Set<String>?
        /// The enrolled factories the job went to through their own inbox: their results count
        /// only from their own keys.
        public let inboxes: Set<String>

        public init(meta: JSONValue?, results: [MissionResult]) {
            self.meta = meta
            self.results = results
            target = meta?["target"].flatMap(MissionTarget.init(json:))
            factories = meta?["factories"]?.array?.compactMap(\.string)
            factorySet = factories.map(Set.init)
            inboxes = Set(meta?["inboxes"]?.array?.compactMap(\.string) ?? [])
        }
        /// Published by factoryctl, or reported on by some factory.
        public var known: Bool { meta != nil || !results.isEmpty }

        /// Whether the job targets `factoryID`: one it was sent to, not one that registered since
        /// and matches its glob or broadcast (that one never acts on it).
        public func targets(_ factoryID: String) -> Bool {
            if let factorySet { return factorySet.contains(factoryID) }
            return target?.matches(factoryID) ?? false
        }

        /// Whether the job and a mission for `other` would both move some factory.
        func overlaps(_ other: MissionTarget) -> Bool {
            if let factories { return factories.contains(where: other.matches) }
            return target?.overlaps(other) ?? false
        }

        /// The factories among `live` that the job targets and that have not reported yet.
        public func pending(among live: [String]) -> [String] {
            pending(among: live, reported: Set(results.compactMap(\.factoryID)))
        }

        /// The same, with who reported read apart (`MissionBus.reporters`) rather than in `results`.
        func pending(among live: [String], reported: Set<String>) -> [String] {
            guard meta != nil else { return [] }
            return live.filter { targets($0) && !reported.contains($0) }
        }
    }

    /// The job as HQ recorded it, with every result attributed by the key it was written to:
    /// a factory the job reached through its inbox counts only from its own job key, the others
    /// from the job's `result:<id>` field; a result claiming another factory or job is ignored.
    public func job(_ jobID: String) throws(RedisError) -> JobRecord {
        let reply = try redis.command(["GET", Self.jobMetaKey(jobID)])
        let map = try redis.command(["HGETALL", Self.jobKey(jobID)]).fieldMap ?? [:]
        // A job published before HQ kept its record apart (older factoryctl): read where it was.
        let meta = (reply.text ?? map["meta"]).flatMap(JSONValue.parse)
        var record = JobRecord(meta: meta, results: [])
        let inboxes = record.inboxes
        let shared = map.keys.filter { $0.hasPrefix("result:") }.map { String($0.dropFirst(7)) }.filter { !inboxes.contains($0) }
        var results: [String: MissionResult] = [:]
        for id in shared {
            if let result = attributed(map["result:" + id], to: id, jobID: jobID) { results[id] = result }
        }
        for (id, result) in try ownResults(jobID, of: inboxes.sorted()) { results[id] = result }
        for id in map.keys where id.hasPrefix("result:") && inboxes.contains(String(id.dropFirst(7))) {
            logger.warning("ignored a result for \(jobID) in the shared job record for \(id.dropFirst(7)): the job went to its own inbox")
        }
        record.results = results.sorted { $0.key < $1.key }.map(\.value)
        return record
    }

    /// The results of `jobID` that `ids` (enrolled factories) wrote to their own keys.
    func ownResults(_ jobID: String, of ids: [String]) throws(RedisError) -> [String: MissionResult] {
        var found: [String: MissionResult] = [:]
        for start in stride(from: 0, to: ids.count, by: FleetRegistry.progressChunk) {
            let chunk = Array(ids[start..<min(start + FleetRegistry.progressChunk, ids.count)])
            let reply = try redis.command(["MGET"] + chunk.map { FactoryKeys($0).job(jobID) })
            for (id, value) in zip(chunk, reply.array ?? []) {
                if let result = attributed(value.text, to: id, jobID: jobID) { found[id] = result }
            }
        }
        return found
    }

    /// The factories that reported `jobID`, each result attributed as `job` attributes it (an
    /// inbox factory's from its own key, the others' from the shared record), read
    /// `FleetRegistry.progressChunk` keys a command and parsed one at a time, nothing kept: the
    /// in-flight check asks who is still owed, not what they said.
    func reporters(_ jobID: String, inboxes: Set<String>) throws(RedisError) -> Set<String> {
        var found = Set<String>()
        var shared: [String] = []
        for field in try redis.command(["HKEYS", Self.jobKey(jobID)]).array?.compactMap(\.text) ?? [] where field.hasPrefix("result:") {
            let id = String(field.dropFirst(7))
            if inboxes.contains(id) {
                logger.warning("ignored a result for \(jobID) in the shared job record for \(id): the job went to its own inbox")
            } else {
                shared.append(id)
            }
        }
        func read(_ ids: [String], _ command: ([String]) -> [String]) throws(RedisError) {
            for start in stride(from: 0, to: ids.count, by: FleetRegistry.progressChunk) {
                let chunk = Array(ids[start..<min(start + FleetRegistry.progressChunk, ids.count)])
                for (id, value) in zip(chunk, try redis.command(command(chunk)).array ?? []) {
                    if attributed(value.text, to: id, jobID: jobID) != nil { found.insert(id) }
                }
            }
        }
        try read(shared) { ["HMGET", Self.jobKey(jobID)] + $0.map { "result:" + $0 } }
        try read(inboxes.sorted()) { ["MGET"] + $0.map { FactoryKeys($0).job(jobID) } }
        return found
    }

    /// The results several jobs' enrolled factories wrote to their own keys, by job: `pairs` are
    /// (job, factory), read `FleetRegistry.progressChunk` keys a command whatever the jobs.
    func ownResults(_ pairs: [(jobID: String, id: String)]) throws(RedisError) -> [String: [MissionResult]] {
        var found: [String: [MissionResult]] = [:]
        for start in stride(from: 0, to: pairs.count, by: FleetRegistry.progressChunk) {
            let chunk = pairs[start..<min(start + FleetRegistry.progressChunk, pairs.count)]
            let reply = try redis.command(["MGET"] + chunk.map { FactoryKeys($0.id).job($0.jobID) })
            for (pair, value) in zip(chunk, reply.array ?? []) {
                if let result = attributed(value.text, to: pair.id, jobID: pair.jobID) { found[pair.jobID, default: []].append(result) }
            }
        }
        return found
    }

    /// The shared job record's results of `ids` (factories that are not enrolled).
    func sharedResults(_ jobID: String, of ids: [String]) throws(RedisError) -> [String: MissionResult] {
        guard !ids.isEmpty else { return [:] }
        let reply = try redis.command(["HMGET", Self.jobKey(jobID)] + ids.map { "result:" + $0 })
        var found: [String: MissionResult] = [:]
        for (id, value) in zip(ids, reply.array ?? []) {
            if let result = attributed(value.text, to: id, jobID: jobID) { found[id] = result }
        }
        return found
    }

    /// The result in `text` when it is about `jobID` and claims to be from `id` (the key it was
    /// found under); else nil, logged.
    private func attributed(_ text: String?, to id: String, jobID: String) -> MissionResult? {
        guard let text, let result = JSONValue.parse(text).flatMap(MissionResult.init(json:)) else { return nil }
        guard result.factoryID == id, result.jobID == jobID else {
            logger.warning("ignored a result under \(id)'s key for \(jobID) that claims to be from \(String((result.factoryID ?? "nobody").prefix(128)).debugDescription) about \(String(result.jobID.prefix(128)).debugDescription)")
            return nil
        }
        return result
    }

    /// An update still in flight whose targets overlap `target`: not past its timeout, and not yet
    /// reported by every live registered factory it was sent to. Finished or expired ones are cleared.
    public func inflightUpdate(overlapping target: MissionTarget, liveFactories: [String], now: Date = Date()) throws(RedisError) -> String? {
        let all = try redis.command(["HGETALL", Self.inflightKey]).fieldMap ?? [:]
        var found: String?
        for (jobID, text) in all.sorted(by: { $0.key < $1.key }) {
            guard let meta = JSONValue.parse(text), meta["target"].flatMap(MissionTarget.init(json:)) != nil else {
                try redis.command(["HDEL", Self.inflightKey, jobID])
                continue
            }
            // Who reported, not what: a 10,000-factory job's results parsed are about 35 MB.
            let record = JobRecord(meta: meta, results: [])
            let expired = (meta["expires_at"]?.number ?? 0) <= now.timeIntervalSince1970
            var finished = false
            if liveFactories.contains(where: record.targets) {
                finished = record.pending(among: liveFactories, reported: try reporters(jobID, inboxes: record.inboxes)).isEmpty
            }
            if expired || finished {
                try redis.command(["HDEL", Self.inflightKey, jobID])
                continue
            }
            if found == nil, record.overlaps(target) { found = jobID }
        }
        return found
    }
}
