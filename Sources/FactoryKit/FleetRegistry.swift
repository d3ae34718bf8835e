import CSupport
import FoundationEssentials
import Dispatch
import FactoryBasics
import Glibc
import Logging
import RedisKit

/// What a factory says about itself; stored in the Redis hash `factoryctl:registry`.
/// The first six fields are those of the existing HQ's registration API.
public struct Registration: Codable, Sendable, Equatable {
    public var factoryID: String
    public var factoryRole: String
    public var deploymentProfile: String = "local_worker"
    /// online | paused | updating | offline
    public var registrationStatus: String
    public var capabilities: [String]
    public var metadata: [String: JSONValue] = [:]
    public var branch: String?
    public var commit: String?
    public var version: String
    public var pid: Int32
    public var host: String
    public var startedAt: Double
    public var lastSeenAt: Double
    public var lastJobID: String?
    public var lastJobStatus: String?

    enum CodingKeys: String, CodingKey {
        case factoryID = "factory_id", factoryRole = "factory_role", deploymentProfile = "deployment_profile"
        case registrationStatus = "registration_status", capabilities, metadata, branch, commit, version, pid, host
        case startedAt = "started_at", lastSeenAt = "last_seen_at", lastJobID = "last_job_id", lastJobStatus = "last_job_status"
    }

    public init(factoryID: String, factoryRole: String, deploymentProfile: String = "local_worker",
                registrationStatus: String, capabilities: [String], metadata: [String: JSONValue] = [:],
                branch: String? = nil, commit: String? = nil, version: String, pid: Int32, host: String,
                startedAt: Double, lastSeenAt: Double, lastJobID: String? = nil, lastJobStatus: String? = nil) {
        self.factoryID = factoryID
        self.factoryRole = factoryRole
        self.deploymentProfile = deploymentProfile
        self.registrationStatus = registrationStatus
        self.capabilities = capabilities
        self.metadata = metadata
        self.branch = branch
        self.commit = commit
        self.version = version
        self.pid = pid
        self.host = host
        self.startedAt = startedAt
        self.lastSeenAt = lastSeenAt
        self.lastJobID = lastJobID
        self.lastJobStatus = lastJobStatus
    }

    public func isStale(now: Date = Date(), after seconds: Double) -> Bool {
        now.timeIntervalSince1970 - lastSeenAt > seconds
    }

    /// The stored form. Written with the Python-exact writer and read with the strict parser, so
    /// `metadata` numbers come back exactly as they were sent (`1.0` stays `1.0`).
    public var json: JSONValue {
        var object: [String: JSONValue] = [
            "factory_id": .string(factoryID), "factory_role": .string(factoryRole),
            "deployment_profile": .string(deploymentProfile), "registration_status": .string(registrationStatus),
            "capabilities": .array(capabilities.map(JSONValue.string)), "metadata": .object(metadata),
            "version": .string(version), "pid": .int(Int64(pid)), "host": .string(host),
            "started_at": .double(startedAt), "last_seen_at": .double(lastSeenAt),
        ]
        for (key, value) in [("branch", branch), ("commit", commit), ("last_job_id", lastJobID), ("last_job_status", lastJobStatus)] {
            if let value { object[key] = .string(value) }
        }
        return .object(object)
    }

    public init?(json: JSONValue) {
        guard let factoryID = json["factory_id"]?.string, let role = json["factory_role"]?.string,
              let status = json["registration_status"]?.string else { return nil }
        self.init(factoryID: factoryID, factoryRole: role,
                  deploymentProfile: json["deployment_profile"]?.string ?? "local_worker",
                  registrationStatus: status,
                  capabilities: json["capabilities"]?.array?.compactMap(\.string) ?? [],
                  metadata: json["metadata"]?.object ?? [:],
                  branch: json["branch"]?.string, commit: json["commit"]?.string,
                  version: json["version"]?.string ?? "", pid: Int32(clamping: json["pid"]?.int ?? 0),
                  host: json["host"]?.string ?? "",
                  startedAt: json["started_at"]?.number ?? 0, lastSeenAt: json["last_seen_at"]?.number ?? 0,
                  lastJobID: json["last_job_id"]?.string, lastJobStatus: json["last_job_status"]?.string)
    }

    init?(text: String) {
        guard let value = JSONValue.parse(text) else { return nil }
        self.init(json: value)
    }
}

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

/// POSTs registrations to `{UA_HQ_BASE_URL}/api/v1/factory/registrations` with `x-ua-ops-token`,
/// as the existing fleet does. Failures are logged, never fatal; the token is never logged.
public struct HQRegistrationClient {
    public let baseURL: URL
    public let token: String?
    public let logger: Logger
    public var timeout: Double = 5

    public init?(baseURL: String?, token: String?, logger: Logger) {
        guard let baseURL, let url = URL(string: baseURL), let scheme = url.scheme, ["http", "https"].contains(scheme) else {
            return nil
        }
        self.baseURL = url
        self.token = token
        self.logger = logger
    }

    /// Sends the registration; returns the HTTP status, or nil when the request failed.
    ///
    /// libcurl is loaded on the first POST (not at start-up), so a consumer without HQ never maps it.
    @discardableResult
    public func post(_ registration: Registration) -> Int? {
        let url = baseURL.appendingPathComponent("api/v1/factory/registrations").absoluteString
        var headers = ["Content-Type: application/json", "Expect:"]
        if let token { headers.append("x-ua-ops-token: \(token)") }
        let body = Array(registration.json.pythonJSON.utf8)
        var status = 0
        var error = [CChar](repeating: 0, count: 512)
        let code = withCStrings(headers) { headerPointers in
            body.withUnsafeBufferPointer { bodyBytes in
                bodyBytes.baseAddress!.withMemoryRebound(to: CChar.self, capacity: body.count) { bodyPointer in
                    factoryctl_http_post(url, headerPointers, Int32(headers.count), bodyPointer, body.count,
                                         Int(timeout * 1000), &status, &error, Int32(error.count))
                }
            }
        }
        if code != 0 {
            let message = String(decoding: error.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            logger.warning("HQ registration POST to \(baseURL.host ?? "HQ") failed: \(message)")
            return nil
        }
        if (200..<300).contains(status) {
            logger.debug("registered with HQ (\(status))")
        } else {
            logger.warning("HQ registration POST failed: HTTP \(status)")
        }
        return status
    }
}

/// Calls `body` with a C array of NUL-terminated copies of `strings` (valid only during the call).
func withCStrings<R>(_ strings: [String], _ body: ([UnsafePointer<CChar>?]) -> R) -> R {
    let copies = strings.map { strdup($0) }
    defer { copies.forEach { free($0) } }
    return body(copies.map { UnsafePointer($0) })
}
