import CSupport
import FoundationEssentials
import Dispatch
import FactoryBasics
import Glibc
import Logging
import RedisKit

/// The fleet as registered in Redis.
public struct FleetRegistry {
    public let redis: RedisClient
    public static let key = MissionBus.keyPrefix + "registry"
    /// A factory not seen for this long is stale (heartbeats come every 15 s by default).
    public static let staleAfter: Double = 90

    public init(redis: RedisClient) {
        self.redis = redis
    }

    public func register(_ registration: Registration) throws(RedisError) {
        try redis.command(Self.registerCommand(registration))
    }

    /// The command `register` sends (for sending it along with another one).
    public static func registerCommand(_ registration: Registration) -> [String] {
        ["HSET", key, registration.factoryID, registration.json.pythonJSON]
    }

    public func all() throws(RedisError) -> [Registration] {
        let map = try redis.command(["HGETALL", Self.key]).fieldMap ?? [:]
        return map.values.compactMap(Registration.init(text:))
            .sorted { $0.factoryID < $1.factoryID }
    }

    public func get(_ factoryID: String) throws(RedisError) -> Registration? {
        guard let text = try redis.command(["HGET", Self.key, factoryID]).text else { return nil }
        return Registration(text: text)
    }

    /// The fleet as the table shows it, read in one pass per registration (`FleetEntry`),
    /// sorted by factory id.
    public func entries(capabilities: Bool = true) throws(RedisError) -> [FleetEntry] {
        let reply = try redis.command(["HGETALL", Self.key])
        guard let items = reply.array else { return [] }
        var entries: [FleetEntry] = []
        entries.reserveCapacity(items.count / 2)
        var index = 1
        while index < items.count {
            if case .string(let data) = items[index],
               let entry = data.withUnsafeBytes({ FleetEntry.read($0.bindMemory(to: UInt8.self), capabilities: capabilities) }) {
                entries.append(entry)
            }
            index += 2
        }
        return entries.sorted { $0.factoryID < $1.factoryID }
    }

    /// Ids of registered factories that are not stale.
    public func liveFactoryIDs(now: Date = Date()) throws(RedisError) -> [String] {
        try entries(capabilities: false).filter { !$0.isStale(now: now, after: Self.staleAfter) }.map(\.factoryID)
    }
}
