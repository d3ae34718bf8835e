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
                  startedAt: plausibleTimestamp(json["started_at"]?.number ?? 0), lastSeenAt: plausibleTimestamp(json["last_seen_at"]?.number ?? 0),
                  lastJobID: json["last_job_id"]?.string, lastJobStatus: json["last_job_status"]?.string)
    }

    init?(text: String) {
        guard let value = JSONValue.parse(text) else { return nil }
        self.init(json: value)
    }
}
