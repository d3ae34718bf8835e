import Crypto
import FoundationEssentials
import FactoryBasics
import Logging
import RedisKit

/// HQ's side of fleet identity: gives a factory its own Redis user (allowed only its own keys,
/// `FactoryKeys`) and its own HTTP registration token, replaces them (`rotate`) and revokes them.
/// HQ keeps, per enrolled factory, the user name and the SHA-256 of the token in
/// `factoryctl:enrolled`; the password and the token themselves are returned once and never stored
/// or logged.
public struct Enrollment {
    public let redis: RedisClient

    public init(redis: RedisClient) {
        self.redis = redis
    }

    /// What HQ remembers about one enrolled factory.
    public struct Record: Sendable, Equatable {
        public var factoryID: String
        public var user: String
        /// Hex SHA-256 of the factory's HTTP registration token.
        public var tokenSHA256: String
        public var enrolledAt: Double
        public var rotatedAt: Double?

        var json: JSONValue {
            var object: [String: JSONValue] = [
                "factory_id": .string(factoryID), "user": .string(user), "token_sha256": .string(tokenSHA256),
                "enrolled_at": .double(enrolledAt),
            ]
            if let rotatedAt { object["rotated_at"] = .double(rotatedAt) }
            return .object(object)
        }

        init(factoryID: String, user: String, tokenSHA256: String, enrolledAt: Double, rotatedAt: Double? = nil) {
            self.factoryID = factoryID
            self.user = user
            self.tokenSHA256 = tokenSHA256
            self.enrolledAt = enrolledAt
            self.rotatedAt = rotatedAt
        }

        init?(factoryID: String, text: String) {
            guard let json = JSONValue.parse(text), json["factory_id"]?.string == factoryID,
                  let user = json["user"]?.string, let hash = json["token_sha256"]?.string else { return nil }
            self.init(factoryID: factoryID, user: user, tokenSHA256: hash, enrolledAt: json["enrolled_at"]?.number ?? 0,
                      rotatedAt: json["rotated_at"]?.number)
        }
    }

    /// What the factory needs, shown once: its env lines.
    public struct Credentials: Sendable {
        public let factoryID: String
        public let user: String
        /// `UA_REDIS_URL` with the factory's own user and password.
        public let redisURL: String
        /// `UA_FACTORY_TOKEN`: registers this factory (and only it) over HTTP.
        public let token: String
        public let rotated: Bool
        /// Connections of the user that were closed (on a rotation).
        public var closedConnections = 0
        /// Why the new user is in Redis' memory only (a restart of Redis loses it); nil when
        /// `ACL SAVE` wrote it to the server's aclfile, or with `--acl-file`.
        public var unsaved: String?

        /// `NAME=value` pairs for `~/.config/factoryctl/env`, in order.
        public var environment: [(name: String, value: String)] {
            [("UA_FACTORY_ID", factoryID), ("UA_FACTORY_ENROLLED", "1"), ("UA_REDIS_URL", redisURL), ("UA_FACTORY_TOKEN", token)]
        }
    }

    public enum Failure: Error, CustomStringConvertible, Equatable {
        case alreadyEnrolled(String)
        case notEnrolled(String)
        case invalidID(String)

        public var description: String {
            switch self {
            case .alreadyEnrolled(let id): "factory '\(id)' is already enrolled; pass --rotate to replace its credentials (its current ones stop working at once)"
            case .notEnrolled(let id): "factory '\(id)' is not enrolled"
            case .invalidID(let id): "invalid factory id '\(id.prefix(80))' (letters, digits, '.', '_', ':', '-'; at most 128)"
            }
        }
    }

    /// A new password and token for `factoryID`. With `rotate` an existing enrollment is replaced;
    /// without it, an existing one is refused. `aclFile` set: the user's line is written there
    /// (for installations that keep ACLs in a file; load it with `ACL LOAD`) instead of being
    /// applied with `ACL SETUSER`. `factoryURL` is how the factory reaches Redis (its user and
    /// password are replaced).
    public func enroll(_ factoryID: String, rotate: Bool, factoryURL: RedisURL, aclFile: String? = nil,
                       now: Date = Date()) throws -> Credentials {
        guard MissionID.isValid(factoryID) else { throw Failure.invalidID(factoryID) }
        let keys = FactoryKeys(factoryID)
        let existing = try record(factoryID)
        if existing != nil, !rotate { throw Failure.alreadyEnrolled(factoryID) }
        let password = Self.randomHex(32)
        let token = "uaf_" + Self.randomHex(32)
        let rules = keys.aclRules
        if let aclFile {
            try ACLFile.setUser(keys.aclUser, line: ["user", keys.aclUser, "on", "#" + Self.sha256Hex(password)] + rules, in: aclFile)
        } else {
            // One command: the old password stops working as the new one starts to.
            try redis.command(["ACL", "SETUSER", keys.aclUser, "reset", "on", ">" + password] + rules)
        }
        let unsaved = aclFile == nil ? saveACL() : nil
        // The group exists before the first mission is put in the inbox, so none is missed
        // between enrolment and the factory's first start.
        do {
            try redis.command(["XGROUP", "CREATE", keys.inbox, MissionBus.groupName(factoryID: factoryID), "0", "MKSTREAM"])
        } catch {
            if error.replyCode != "BUSYGROUP" { throw error }
        }
        let record = Record(factoryID: factoryID, user: keys.aclUser, tokenSHA256: Self.sha256Hex(token),
                            enrolledAt: existing?.enrolledAt ?? now.timeIntervalSince1970,
                            rotatedAt: existing == nil ? nil : now.timeIntervalSince1970)
        try redis.command(["HSET", FactoryKeys.enrolledKey, factoryID, record.json.pythonJSON])
        var url = factoryURL
        url.username = keys.aclUser
        url.password = password
        var credentials = Credentials(factoryID: factoryID, user: keys.aclUser, redisURL: url.secretText, token: token,
                                      rotated: existing != nil)
        credentials.unsaved = unsaved
        if existing != nil, aclFile == nil { credentials.closedConnections = try closeConnections(of: keys.aclUser) }
        return credentials
    }

    /// Deletes the factory's Redis user, closes its connections and forgets its token and inbox.
    /// The user goes first: without the right to delete it (not the `enroll` user) nothing
    /// changes, so a retry with the right user finds everything still to do. Returns false when
    /// there was nothing to revoke; `unsaved` says why the deletion is in Redis' memory only (a
    /// restart of Redis would bring the user back from its aclfile: run `ACL SAVE`).
    @discardableResult
    public func revoke(_ factoryID: String) throws -> (revoked: Bool, unsaved: String?) {
        let keys = FactoryKeys(factoryID)
        let deleted = try redis.command(["ACL", "DELUSER", keys.aclUser]).integer ?? 0
        let unsaved = deleted > 0 ? saveACL() : nil
        let forgotten = try redis.command(["HDEL", FactoryKeys.enrolledKey, factoryID]).integer ?? 0
        guard deleted > 0 || forgotten > 0 else { return (false, nil) }
        _ = try closeConnections(of: keys.aclUser)
        try redis.command(["DEL"] + keys.fixedKeys)
        return (true, unsaved)
    }

    /// Writes the server's users to its aclfile (`ACL SAVE`), so an enrolment or a revocation
    /// survives a restart of Redis. Returns why it could not (no aclfile: the users live in
    /// memory and in redis.conf after `CONFIG REWRITE`; no right to `ACL SAVE`), nil when saved.
    func saveACL() -> String? {
        do {
            try redis.command(["ACL", "SAVE"])
            return nil
        } catch {
            if error.description.contains("not configured to use an ACL file") {
                return "the Redis server has no aclfile, so the change lives in its memory only until `CONFIG REWRITE` writes it to redis.conf"
            }
            return "ACL SAVE failed (\(error)), so the change lives in Redis' memory only until an `ACL SAVE` succeeds"
        }
    }

    private func closeConnections(of user: String) throws -> Int {
        do {
            return Int(try redis.command(["CLIENT", "KILL", "USER", user]).integer ?? 0)
        } catch {
            // Redis says "No such user" when the user has no connection left to close.
            if error.description.contains("No such user") { return 0 }
            throw error
        }
    }

    public func record(_ factoryID: String) throws(RedisError) -> Record? {
        try redis.command(["HGET", FactoryKeys.enrolledKey, factoryID]).text.flatMap { Record(factoryID: factoryID, text: $0) }
    }

    /// The enrolled ids among `ids` (all of them when nil).
    public func enrolled(among ids: [String]? = nil) throws(RedisError) -> Set<String> {
        guard let ids else { return Set((try redis.command(["HKEYS", FactoryKeys.enrolledKey]).array ?? []).compactMap(\.text)) }
        guard !ids.isEmpty else { return [] }
        let reply = try redis.command(["HMGET", FactoryKeys.enrolledKey] + ids)
        return Set(zip(ids, reply.array ?? []).filter { !$0.1.isNull }.map(\.0))
    }

    /// Whether `token` is the registration token of `factoryID` (compared as hashes, in constant time).
    public func accepts(token: String, for factoryID: String) throws(RedisError) -> Bool {
        guard let record = try record(factoryID) else { return false }
        return Self.constantTimeEqual(Array(Self.sha256Hex(token).utf8), Array(record.tokenSHA256.utf8))
    }

    static func sha256Hex(_ text: String) -> String {
        SHA256.hash(data: Data(text.utf8)).map { String($0, radix: 16).leftPadded(to: 2) }.joined()
    }

    static func randomHex(_ bytes: Int) -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<bytes).map { _ in String(UInt8.random(in: 0...255, using: &generator), radix: 16).leftPadded(to: 2) }.joined()
    }

    /// Time that depends only on the lengths, not on where the two differ.
    public static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var difference = UInt8(a.count == b.count ? 0 : 1)
        for index in 0..<max(a.count, b.count) {
            difference |= (index < a.count ? a[index] : 0) ^ (index < b.count ? b[index] : 0)
        }
        return difference == 0
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}

/// A Redis ACL file (`aclfile` in redis.conf): one `user NAME …` line per user.
enum ACLFile {
    /// Replaces (or appends) `name`'s line, keeping every other line as it was; written to a
    /// temporary file and renamed, mode 0600 (the file holds password hashes).
    static func setUser(_ name: String, line: [String], in path: String) throws {
        let existing = FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) } ?? ""
        var lines = existing.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if lines.last == "" { lines.removeLast() }
        let text = line.joined(separator: " ")
        if let index = lines.firstIndex(where: { $0.split(separator: " ").prefix(2).elementsEqual(["user", name[...]]) }) {
            lines[index] = text
        } else {
            lines.append(text)
        }
        try FileWriting.replace(path, with: Array((lines.joined(separator: "\n") + "\n").utf8), mode: 0o600)
    }
}
