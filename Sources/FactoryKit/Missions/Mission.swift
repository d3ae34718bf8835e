import FoundationEssentials
import Dispatch
import FactoryBasics
import Glibc

/// The mission envelope of the existing HQ (`universal_agent.delegation.schema.MissionEnvelope`):
/// `{"idempotency_key", "job_id", "max_retries", "payload": {"context", "task"}, "priority", "timeout_seconds"}`.
public struct MissionEnvelope: Sendable, Equatable {
    public var jobID: String
    public var idempotencyKey: String
    public var priority: Int64 = 1
    public var timeoutSeconds: Int64 = 3600
    public var maxRetries: Int64 = 3
    public var task: String
    public var context: [String: JSONValue] = [:]

    public init(jobID: String, idempotencyKey: String, task: String, context: [String: JSONValue] = [:]) {
        self.jobID = jobID
        self.idempotencyKey = idempotencyKey
        self.task = task
        self.context = context
    }

    public var json: JSONValue {
        .object([
            "job_id": .string(jobID),
            "idempotency_key": .string(idempotencyKey),
            "priority": .int(priority),
            "timeout_seconds": .int(timeoutSeconds),
            "max_retries": .int(maxRetries),
            "payload": .object(["task": .string(task), "context": .object(context)]),
        ])
    }

    /// Decodes strictly: right types, required fields present, schema bounds; unknown extra fields
    /// are tolerated (and dropped).
    public static func decode(_ text: String) throws(MissionRejection) -> MissionEnvelope {
        guard let value = JSONValue.parse(text) else { throw .malformed("envelope is not valid JSON") }
        guard let object = value.object else { throw .malformed("envelope is not a JSON object") }
        func requiredString(_ key: String, in object: [String: JSONValue], path: String = "") throws(MissionRejection) -> String {
            guard let field = object[key] else { throw .malformed("missing field \(path)\(key)") }
            guard let text = field.string else { throw .malformed("field \(path)\(key) must be a string") }
            guard !text.isEmpty else { throw .malformed("field \(path)\(key) must not be empty") }
            return text
        }
        func optionalInt(_ key: String, default value: Int64, minimum: Int64?) throws(MissionRejection) -> Int64 {
            guard let field = object[key], field != .null else { return value }
            guard let number = field.int else { throw .malformed("field \(key) must be an integer") }
            if let minimum, number < minimum { throw .malformed("field \(key) must be >= \(minimum)") }
            return number
        }
        var envelope = MissionEnvelope(
            jobID: try requiredString("job_id", in: object),
            idempotencyKey: try requiredString("idempotency_key", in: object),
            task: "")
        envelope.priority = try optionalInt("priority", default: 1, minimum: nil)
        envelope.timeoutSeconds = try optionalInt("timeout_seconds", default: 3600, minimum: 1)
        envelope.maxRetries = try optionalInt("max_retries", default: 3, minimum: 0)
        guard let payloadValue = object["payload"] else { throw .malformed("missing field payload") }
        guard let payload = payloadValue.object else { throw .malformed("field payload must be an object") }
        envelope.task = try requiredString("task", in: payload, path: "payload.")
        if let context = payload["context"] {
            guard let map = context.object else { throw .malformed("field payload.context must be an object") }
            envelope.context = map
        }
        guard MissionID.isValid(envelope.jobID) else {
            throw .malformed("job_id '\(envelope.jobID.prefix(80))' is not a valid id (1-128 of A-Z a-z 0-9 . _ : -)")
        }
        return envelope
    }
}

/// Job ids become Redis keys and file records: keep them to a safe alphabet.
public enum MissionID {
    public static func isValid(_ id: String) -> Bool {
        (1...128).contains(id.utf8.count) && id.utf8.allSatisfy {
            ($0 >= 48 && $0 <= 57) || ($0 >= 65 && $0 <= 90) || ($0 >= 97 && $0 <= 122) || $0 == 46 || $0 == 95 || $0 == 58 || $0 == 45
        }
    }

    /// `update-<12 hex>`, as the existing HQ makes them.
    public static func make(prefix: String) -> String {
        var bytes = [UInt8](repeating: 0, count: 6)
        for index in bytes.indices { bytes[index] = UInt8.random(in: 0...255) }
        return prefix + "-" + bytes.map(hex2).joined()
    }
}

/// Why an entry cannot be run: it goes to the dead-letter stream with this reason.
public enum MissionRejection: Error, Equatable, Sendable, CustomStringConvertible {
    case malformed(String)
    public var description: String {
        switch self { case .malformed(let text): text }
    }
}

/// Which factories a mission is for. On the wire: `target_factory_id` ("" = every factory);
/// factoryctl adds `target_factory_ids` / `target_factory_glob` for several ids or a glob, and then
/// sets `target_factory_id` to a value no factory has, so older consumers skip it rather than all run it.
public enum MissionTarget: Sendable, Equatable, CustomStringConvertible {
    case all
    case ids([String])
    case glob(String)

    public static let multiTargetMarker = "factoryctl:multi-target"

    public func matches(_ factoryID: String) -> Bool {
        switch self {
        case .all: true
        case .ids(let ids): ids.contains(factoryID)
        case .glob(let pattern): fnmatch(pattern, factoryID, 0) == 0
        }
    }

    /// Two targets that may name a common factory.
    public func overlaps(_ other: MissionTarget) -> Bool {
        switch (self, other) {
        case (.ids(let a), .ids(let b)): !Set(a).isDisjoint(with: b)
        case (.ids(let ids), .glob(let pattern)), (.glob(let pattern), .ids(let ids)):
            ids.contains { MissionTarget.glob(pattern).matches($0) }
        default: true
        }
    }

    public var description: String {
        switch self {
        case .all: "every factory"
        case .ids(let ids): ids.joined(separator: ", ")
        case .glob(let pattern): pattern
        }
    }

    /// The context keys for this target.
    public var contextFields: [String: JSONValue] {
        switch self {
        case .all: ["target_factory_id": .string("")]
        case .ids(let ids) where ids.count == 1: ["target_factory_id": .string(ids[0])]
        case .ids(let ids): ["target_factory_id": .string(Self.multiTargetMarker), "target_factory_ids": .array(ids.map(JSONValue.string))]
        case .glob(let pattern): ["target_factory_id": .string(Self.multiTargetMarker), "target_factory_glob": .string(pattern)]
        }
    }

    /// Reads the target from a mission context.
    public init(context: [String: JSONValue]) throws(MissionRejection) {
        if let ids = context["target_factory_ids"], ids != .null {
            guard let list = ids.array, !list.isEmpty, list.allSatisfy({ $0.string.map(MissionID.isValid) == true }) else {
                throw .malformed("target_factory_ids must be a non-empty list of ids")
            }
            self = .ids(list.compactMap(\.string))
            return
        }
        if let glob = context["target_factory_glob"], glob != .null {
            guard let pattern = glob.string, !pattern.isEmpty, pattern.utf8.count <= 128 else {
                throw .malformed("target_factory_glob must be a non-empty string")
            }
            self = .glob(pattern)
            return
        }
        switch context["target_factory_id"] {
        case nil, .null?: self = .all
        case .string(let id)?: self = id.isEmpty ? .all : .ids([id])
        default: throw .malformed("target_factory_id must be a string")
        }
    }

    /// Parses an operator's `--target` values: ids, or one glob.
    public init(arguments: [String]) throws(FactoryError) {
        if arguments.isEmpty || arguments == ["*"] || arguments == [""] { self = .all; return }
        if arguments.count == 1, arguments[0].contains(where: { "*?[".contains($0) }) {
            self = .glob(arguments[0])
            return
        }
        for id in arguments where !MissionID.isValid(id) {
            throw .invalidArgument("invalid factory id '\(id)': use 1-128 of A-Z a-z 0-9 . _ : - (or one glob such as 'eu-*')")
        }
        self = .ids(arguments)
    }

    /// JSON for job records.
    public var json: JSONValue {
        switch self {
        case .all: .object(["kind": .string("all")])
        case .ids(let ids): .object(["kind": .string("ids"), "ids": .array(ids.map(JSONValue.string))])
        case .glob(let pattern): .object(["kind": .string("glob"), "glob": .string(pattern)])
        }
    }

    public init?(json: JSONValue) {
        switch json["kind"]?.string {
        case "all": self = .all
        case "ids": self = .ids(json["ids"]?.array?.compactMap(\.string) ?? [])
        case "glob": self = .glob(json["glob"]?.string ?? "")
        default: return nil
        }
    }
}

/// A mission factoryctl knows how to run.
public struct Mission: Sendable, Equatable {
    public enum Kind: String, Sendable {
        case update = "system:update_factory"
        case pause = "system:pause_factory"
        case resume = "system:resume_factory"
        /// Back to the commit before the last successful update (or the context's `commit`).
        case rollback = "system:rollback_factory"
    }

    public var envelope: MissionEnvelope
    public var kind: Kind
    public var target: MissionTarget
    /// Update missions: the branch to update to.
    public var branch: String
    /// Update missions: the exact commit to move to (`commit` in the context, a full lowercase
    /// hex id), instead of whatever the branch's tip is when the factory fetches.
    public var commit: String?
    /// Update missions: moving to older code (or past a force-push) is allowed (`allow_rewind`).
    public var allowRewind = false
    /// Update missions: move even to a commit quarantined on the factory, once (`retry_quarantined`).
    public var retryQuarantined = false
    /// Update missions: the factory waits a random delay in [0, S) before it fetches
    /// (`splay_seconds`), so a fleet does not hit the git host in the same second.
    public var splaySeconds = 0
    public static let maximumSplaySeconds = 3600
    /// Update and rollback missions: run now even outside the factory's maintenance window
    /// (`ignore_window`; `UA_FACTORY_UPDATE_WINDOW`).
    public var ignoreWindow = false

    public var jobID: String { envelope.jobID }

    /// A full commit id as missions carry it: 40 lowercase hex digits.
    public static func isCommitID(_ text: String) -> Bool {
        text.utf8.count == 40 && text.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }

    /// The envelope the existing HQ sends for an update (`update-<12 hex>`, priority 10, 300 s, no retries).
    public static func make(kind: Kind, target: MissionTarget, branch: String = "main", timeoutSeconds: Int64 = 300,
                            commit: String? = nil, allowRewind: Bool = false, retryQuarantined: Bool = false,
                            splaySeconds: Int = 0, ignoreWindow: Bool = false) -> Mission {
        let prefix = switch kind { case .update: "update"; case .pause: "pause"; case .resume: "resume"; case .rollback: "rollback" }
        let jobID = MissionID.make(prefix: prefix)
        var context: [String: JSONValue] = ["mission_kind": .string(kind.rawValue)]
        if kind == .update {
            context["branch"] = .string(branch)
            // Additive: consumers that do not know these keys ignore them.
            if let commit { context["commit"] = .string(commit) }
            if allowRewind { context["allow_rewind"] = .bool(true) }
            if retryQuarantined { context["retry_quarantined"] = .bool(true) }
            if splaySeconds > 0 { context["splay_seconds"] = .int(Int64(splaySeconds)) }
        } else if kind == .rollback, let commit {
            context["commit"] = .string(commit)
            context["branch"] = .string(branch)
        }
        if ignoreWindow, kind == .update || kind == .rollback { context["ignore_window"] = .bool(true) }
        context.merge(target.contextFields) { $1 }
        let task = switch kind {
        case .update: "Update factory to latest code"
        case .pause: "Pause factory"
        case .resume: "Resume factory"
        case .rollback: "Roll factory back"
        }
        var envelope = MissionEnvelope(jobID: jobID, idempotencyKey: jobID, task: task, context: context)
        envelope.priority = 10
        envelope.timeoutSeconds = timeoutSeconds
        envelope.maxRetries = 0
        var mission = Mission(envelope: envelope, kind: kind, target: target, branch: branch)
        if kind == .update || kind == .rollback {
            mission.commit = commit
            mission.allowRewind = allowRewind || kind == .rollback
            mission.retryQuarantined = retryQuarantined && kind == .update
            mission.splaySeconds = kind == .update ? splaySeconds : 0
            mission.ignoreWindow = ignoreWindow
        }
        return mission
    }

    /// The same mission (job id, idempotency key, kind, branch, pins) for `target` instead: the
    /// context's target keys are replaced, nothing else. What an enrolled factory's inbox gets
    /// (`.ids([its id])`), and what the shared stream gets when some of the targets read an inbox.
    public func retargeted(_ target: MissionTarget) -> Mission {
        var copy = self
        for key in ["target_factory_id", "target_factory_ids", "target_factory_glob"] { copy.envelope.context[key] = nil }
        copy.envelope.context.merge(target.contextFields) { $1 }
        copy.target = target
        return copy
    }

    /// What a stream entry is.
    public enum Parsed: Sendable, Equatable {
        case mission(Mission)
        /// Valid, but not a `system:` mission (agent work for other consumers): ack and ignore.
        case notForFactoryctl(jobID: String, kind: String)
    }

    /// Parses a stream entry's fields (`job_id`, `idempotency_key`, `envelope`).
    public static func parse(fields: [String: String]) throws(MissionRejection) -> Parsed {
        guard let text = fields["envelope"] else { throw .malformed("entry has no envelope field") }
        let envelope = try MissionEnvelope.decode(text)
        let kindValue = envelope.context["mission_kind"]
        guard kindValue == nil || kindValue?.string != nil else { throw .malformed("payload.context.mission_kind must be a string") }
        let kindName = kindValue?.string ?? ""
        guard kindName.hasPrefix("system:") else { return .notForFactoryctl(jobID: envelope.jobID, kind: kindName) }
        guard let kind = Kind(rawValue: kindName) else { throw .malformed("unknown system mission kind '\(kindName.prefix(80))'") }
        let target = try MissionTarget(context: envelope.context)
        var branch = "main"
        if kind == .update || kind == .rollback, let value = envelope.context["branch"], value != .null {
            guard let name = value.string else { throw .malformed("payload.context.branch must be a string") }
            do {
                try BranchName.validate(name)
            } catch {
                throw .malformed("\(error)")
            }
            branch = name
        }
        var mission = Mission(envelope: envelope, kind: kind, target: target, branch: branch)
        if kind == .rollback { mission.allowRewind = true }
        if kind == .update || kind == .rollback {
            if let value = envelope.context["commit"], value != .null {
                guard let commit = value.string, isCommitID(commit) else {
                    throw .malformed("payload.context.commit must be a full commit id (40 lowercase hex digits)")
                }
                mission.commit = commit
            }
            if let value = envelope.context["allow_rewind"], value != .null {
                guard let allow = value.bool else { throw .malformed("payload.context.allow_rewind must be true or false") }
                mission.allowRewind = allow
            }
            if let value = envelope.context["retry_quarantined"], value != .null {
                guard let retry = value.bool else { throw .malformed("payload.context.retry_quarantined must be true or false") }
                mission.retryQuarantined = retry
            }
            if let value = envelope.context["ignore_window"], value != .null {
                guard let ignore = value.bool else { throw .malformed("payload.context.ignore_window must be true or false") }
                mission.ignoreWindow = ignore
            }
        }
        if kind == .update, let value = envelope.context["splay_seconds"], value != .null {
            guard let seconds = value.number, seconds == seconds.rounded(), seconds >= 0, seconds <= Double(maximumSplaySeconds) else {
                throw .malformed("payload.context.splay_seconds must be a whole number of seconds from 0 to \(maximumSplaySeconds)")
            }
            mission.splaySeconds = Int(seconds)
        }
        return .mission(mission)
    }
}

/// `MissionResultEnvelope`: `{"error", "job_id", "result", "status"}` with status SUCCESS|FAILED.
public struct MissionResult: Sendable, Equatable {
    public var jobID: String
    public var succeeded: Bool
    public var result: [String: JSONValue]
    public var error: String?

    public init(jobID: String, succeeded: Bool, result: [String: JSONValue], error: String?) {
        self.jobID = jobID
        self.succeeded = succeeded
        self.result = result
        self.error = error
    }

    public var status: String { succeeded ? "SUCCESS" : "FAILED" }

    public var json: JSONValue {
        .object([
            "job_id": .string(jobID), "status": .string(status), "result": .object(result),
            "error": error.map(JSONValue.string) ?? .null,
        ])
    }

    public init?(json: JSONValue) {
        guard let jobID = json["job_id"]?.string, let status = json["status"]?.string,
              status == "SUCCESS" || status == "FAILED" else { return nil }
        self.jobID = jobID
        succeeded = status == "SUCCESS"
        result = json["result"]?.object ?? [:]
        error = json["error"]?.string
    }

    public var factoryID: String? { result["factory_id"]?.string }
}
