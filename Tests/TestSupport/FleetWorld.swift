import Foundation
import Testing

/// A world with factories, a real redis-server, and `factoryctl consume` processes.
public final class FleetWorld: @unchecked Sendable {
    public let world: GitWorld
    public let redis: RedisServer
    public var factories: [String: String] = [:]

    /// HQ's `UA_REDIS_URL` (default: the server's own URL).
    public var hqURL: String

    public init(factories ids: [String] = ["f-1"], redis: RedisServer? = nil, hqURL: String? = nil) throws {
        world = try GitWorld()
        let redis = try redis ?? RedisServer()
        self.redis = redis
        self.hqURL = hqURL ?? redis.url
        for (index, id) in ids.enumerated() {
            factories[id] = index == 0 ? world.factory : try world.addFactory("factory-\(id)")
        }
    }

    public var environment: [String: String] {
        var env = world.environment
        env["FACTORY_ROLE"] = "HEADQUARTERS"
        env["UA_REDIS_URL"] = hqURL
        return env
    }

    public func consumer(_ id: String, _ extra: [String] = [], environment: [String: String]? = nil) throws -> ConsumerProcess {
        try ConsumerProcess(binary: FactoryctlBinary.path, factoryID: id, factoryDirectory: factories[id]!,
                            redisURL: redis.url, environment: environment ?? self.environment,
                            extraArguments: ["--min-interval", "0", "--heartbeat", "1"] + extra,
                            log: world.directory.join("consume-\(id).log"))
    }

    /// `factoryctl enroll ID` at HQ: the factory's env lines as a dictionary.
    public func enroll(_ id: String, _ extra: [String] = [], redisURL: String? = nil) throws -> [String: String] {
        var env = environment
        if let redisURL { env["UA_REDIS_URL"] = redisURL }
        let result = try FactoryctlBinary.run(["enroll", id, "--log-level", "error"] + extra, environment: env)
        #expect(result.status == 0, "enroll failed: \(result.stderr)")
        var lines: [String: String] = [:]
        for line in result.stdout.split(separator: "\n") {
            guard let equals = line.firstIndex(of: "=") else { continue }
            lines[String(line[..<equals])] = String(line[line.index(after: equals)...])
        }
        return lines
    }

    /// The consumer of an enrolled factory, with nothing but its own credentials (no ops token).
    public func enrolledConsumer(_ id: String, credentials: [String: String], _ extra: [String] = [],
                                 environment more: [String: String] = [:]) throws -> ConsumerProcess {
        var env = world.environment
        env["FACTORY_ROLE"] = "LOCAL_WORKER"
        env["UA_OPS_TOKEN"] = nil
        env.merge(credentials) { $1 }
        env.merge(more) { $1 }
        return try ConsumerProcess(binary: FactoryctlBinary.path, factoryID: id, factoryDirectory: factories[id]!,
                                   redisURL: credentials["UA_REDIS_URL"]!, environment: env,
                                   extraArguments: ["--min-interval", "0", "--heartbeat", "1"] + extra,
                                   log: world.directory.join("consume-\(id).log"))
    }

    public func publish(_ arguments: [String]) throws -> String {
        let result = try FactoryctlBinary.run(["publish"] + arguments + ["--log-level", "error"], environment: environment)
        #expect(result.status == 0, "publish failed: \(result.stderr)")
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The registration as stored: an enrolled factory's own key, else the shared hash.
    public func registration(_ id: String) throws -> [String: Any]? {
        var text = try redis.cli(["GET", "factoryctl:f:{\(id)}:registration"])
        if text.isEmpty { text = try redis.cli(["HGET", "factoryctl:registry", id]) }
        return try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
    }

    public func results(_ jobID: String) throws -> [[String: Any]] {
        let result = try FactoryctlBinary.run(["status", "--job", jobID, "--json"], environment: environment)
        return try result.json()["results"] as? [[String: Any]] ?? []
    }

    public func waitUntilRegistered(_ id: String, status: String = "online") throws -> Bool {
        eventually { (try? registration(id))?["registration_status"] as? String == status }
    }

    /// Waits until `id` registered with `status` after `time` (seconds since 1970): a heartbeat
    /// that proves the consumer went back to its loop after whatever happened before `time`.
    public func heardFrom(_ id: String, after time: Double, status: String) -> Bool {
        eventually {
            let row = try? registration(id)
            return row?["registration_status"] as? String == status && (row?["last_seen_at"] as? Double ?? 0) > time
        }
    }

    public func pending(_ id: String) throws -> Int {
        let summary = try redis.cli(["XPENDING", "ua:missions:delegation", "factoryctl:\(id)"])
        return Int(summary.split(separator: "\n").first ?? "0") ?? 0
    }
}
