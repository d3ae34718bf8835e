import CSupport
import FoundationEssentials
import Dispatch
import FactoryBasics
import Glibc
import Logging
import RedisKit

/// The fleet as registered in Redis: factories that are not enrolled register in the shared hash
/// `factoryctl:registry` (field = id), enrolled ones under their own key (`FactoryKeys`).
///
/// Reading attributes every registration by the key it was found under, never by the id inside
/// it: an enrolled factory is known only from its own key (the shared hash, which every factory
/// on the shared user can write, is not believed about it), and a record whose `factory_id` is
/// not the id of its key is ignored and logged. Every reader of the fleet goes through here.
public struct FleetRegistry {
    public let redis: RedisClient
    /// The writer's own keys when it is an enrolled factory: it registers there.
    public var own: FactoryKeys?
    public static let key = MissionBus.keyPrefix + "registry"
    /// A factory not seen for this long is stale (heartbeats come every 15 s by default).
    public static let staleAfter: Double = 90
    static let logger = Logger(label: "factoryctl.attribution")

    public init(redis: RedisClient, own: FactoryKeys? = nil) {
        self.redis = redis
        self.own = own
    }

    public func register(_ registration: Registration) throws(RedisError) {
        try redis.command(Self.registerCommand(registration, own: own))
    }

    /// The command `register` sends (for sending it along with another one).
    public static func registerCommand(_ registration: Registration, own: FactoryKeys? = nil) -> [String] {
        if let own { return ["SET", own.registration, registration.json.pythonJSON] }
        return ["HSET", key, registration.factoryID, registration.json.pythonJSON]
    }

    public func all() throws(RedisError) -> [Registration] {
        try rawRecords().compactMap { id, data in
            attributed(Registration(text: String(decoding: data, as: UTF8.self)), to: id, claimed: \.factoryID)
        }.sorted { $0.factoryID < $1.factoryID }
    }

    public func get(_ factoryID: String) throws(RedisError) -> Registration? {
        try registrations(of: [factoryID])[factoryID] ?? nil
    }

    /// The registrations of `ids` (nil for one that has none), each read where that factory writes
    /// it: two or three commands whatever the count.
    public func registrations(of ids: [String]) throws(RedisError) -> [String: Registration?] {
        var found: [String: Registration?] = Dictionary(uniqueKeysWithValues: ids.map { ($0, nil) })
        guard !ids.isEmpty else { return found }
        let enrolled = try Enrollment(redis: redis).enrolled(among: ids)
        let shared = ids.filter { !enrolled.contains($0) }
        let owned = ids.filter(enrolled.contains)
        if !shared.isEmpty {
            let reply = try redis.command(["HMGET", Self.key] + shared)
            for (id, value) in zip(shared, reply.array ?? []) {
                found[id] = attributed(value.text.flatMap(Registration.init(text:)), to: id, claimed: \.factoryID)
            }
        }
        if !owned.isEmpty {
            let reply = try redis.command(["MGET"] + owned.map { FactoryKeys($0).registration })
            for (id, value) in zip(owned, reply.array ?? []) {
                found[id] = attributed(value.text.flatMap(Registration.init(text:)), to: id, claimed: \.factoryID)
            }
        }
        return found
    }

    /// Keys per HMGET/MGET when a follower reads many registrations: bounded replies, so a
    /// 10,000-factory wait never holds the whole fleet's registrations at once.
    static let progressChunk = 500

    /// The registrations of `ids` as `Publisher.wait` and a rollout window follow them: read with
    /// the light reader (`FleetEntry` with `progress`), `enrolled` (read once by the caller)
    /// telling which are under their own key, `progressChunk` keys a command, nothing kept. nil for
    /// a factory with none, or whose record claims another id.
    public func progress(of ids: [String], enrolled: Set<String>) throws(RedisError) -> [(String, FleetEntry?)] {
        var found: [(String, FleetEntry?)] = []
        found.reserveCapacity(ids.count)
        let shared = ids.filter { !enrolled.contains($0) }
        let owned = ids.filter(enrolled.contains)
        for start in stride(from: 0, to: shared.count, by: Self.progressChunk) {
            let chunk = Array(shared[start..<min(start + Self.progressChunk, shared.count)])
            read(chunk, try redis.command(["HMGET", Self.key] + chunk), into: &found)
        }
        for start in stride(from: 0, to: owned.count, by: Self.progressChunk) {
            let chunk = Array(owned[start..<min(start + Self.progressChunk, owned.count)])
            read(chunk, try redis.command(["MGET"] + chunk.map { FactoryKeys($0).registration }), into: &found)
        }
        return found
    }

    private func read(_ chunk: [String], _ reply: RedisReply, into found: inout [(String, FleetEntry?)]) {
        let values = reply.array ?? []
        for (index, id) in chunk.enumerated() {
            var entry: FleetEntry?
            if index < values.count, case .string(let data) = values[index] {
                entry = data.withUnsafeBytes { FleetEntry.read($0.bindMemory(to: UInt8.self), capabilities: false, progress: true, shared: nil) }
            }
            found.append((id, attributed(entry, to: id, claimed: \.factoryID)))
        }
    }

    /// The fleet as the table shows it, read in one pass per registration (`FleetEntry`),
    /// sorted by factory id. Each registration is scanned where hiredis put it (no copy): the
    /// shared hash without the enrolled ids, then each enrolled factory's own key.
    public func entries(capabilities: Bool = true) throws(RedisError) -> [FleetEntry] {
        let enrolled = try Enrollment(redis: redis).enrolled()
        var entries: [FleetEntry] = []
        let shared = CapabilityCache()
        func scan(_ id: String, _ value: RedisRawReply) throws(RedisError) {
            let entry = try value.withBytes { bytes throws(RedisError) in FleetEntry.read(bytes, capabilities: capabilities, shared: shared) }
            if let entry = attributed(entry ?? nil, to: id, claimed: \.factoryID) { entries.append(entry) }
        }
        try redis.withRawReply(["HGETALL", Self.key]) { items throws(RedisError) in
            entries.reserveCapacity(items.count / 2 + enrolled.count)
            var index = 1
            while index < items.count {
                if let key = items[index - 1]?.text, let value = items[index] {
                    if enrolled.contains(key) {
                        Self.logger.warning("ignored the shared registry's record for enrolled factory \(key): it registers under its own key")
                    } else {
                        try scan(key, value)
                    }
                }
                index += 2
            }
        }
        let owned = enrolled.sorted()
        for start in stride(from: 0, to: owned.count, by: 1000) {
            let chunk = Array(owned[start..<min(start + 1000, owned.count)])
            try redis.withRawReply(["MGET"] + chunk.map { FactoryKeys($0).registration }) { values throws(RedisError) in
                for (offset, id) in chunk.enumerated() {
                    if let value = values[offset], !value.isNull { try scan(id, value) }
                }
            }
        }
        entries.sort { $0.factoryID < $1.factoryID }
        return entries
    }

    /// Every registration as stored, with the id of the key (or hash field) it was found under:
    /// the shared hash without the enrolled ids, then each enrolled factory's own key.
    private func rawRecords() throws(RedisError) -> [(id: String, data: Data)] {
        let enrolled = try Enrollment(redis: redis).enrolled()
        var records: [(id: String, data: Data)] = []
        let items = try redis.command(["HGETALL", Self.key]).array ?? []
        records.reserveCapacity(items.count / 2 + enrolled.count)
        var index = 1
        while index < items.count {
            if let id = items[index - 1].text, case .string(let data) = items[index] {
                if enrolled.contains(id) {
                    Self.logger.warning("ignored the shared registry's record for enrolled factory \(id): it registers under its own key")
                } else {
                    records.append((id, data))
                }
            }
            index += 2
        }
        let owned = enrolled.sorted()
        for start in stride(from: 0, to: owned.count, by: 1000) {
            let chunk = Array(owned[start..<min(start + 1000, owned.count)])
            let reply = try redis.command(["MGET"] + chunk.map { FactoryKeys($0).registration })
            for (id, value) in zip(chunk, reply.array ?? []) {
                if case .string(let data) = value { records.append((id, data)) }
            }
        }
        return records
    }

    /// `record` when it claims to be `id` (the key it was found under); else nil, logged.
    private func attributed<Record>(_ record: Record?, to id: String, claimed: KeyPath<Record, String>) -> Record? {
        guard let record else { return nil }
        guard record[keyPath: claimed] == id else {
            Self.logger.warning("ignored a registration under \(id)'s key that claims to be \(String(record[keyPath: claimed].prefix(128)).debugDescription)")
            return nil
        }
        return record
    }

    /// Ids of registered factories that are not stale.
    public func liveFactoryIDs(now: Date = Date()) throws(RedisError) -> [String] {
        try entries(capabilities: false).filter { !$0.isStale(now: now, after: Self.staleAfter) }.map(\.factoryID)
    }
}
