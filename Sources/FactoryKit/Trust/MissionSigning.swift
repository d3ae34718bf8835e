import Crypto
import FactoryBasics
import FoundationEssentials
import Glibc

/// Ed25519-signed missions.
///
/// Key files are one line of text each:
///
///     mission.key  factoryctl-mission-private-key-v1 <key-id> <base64 of the 32-byte seed>
///     mission.pub  factoryctl-mission-public-key-v1 <key-id> <base64 of the 32-byte public key>
///
/// The key id is the first 8 bytes of SHA-256 of the public key, in hex (16 characters).
///
/// A signature covers, each preceded by its length as 8 bytes big-endian (so no field can run
/// into the next): the domain `factoryctl-mission-v2`, the mission stream's name, the fleet id
/// (`UA_FLEET_ID`, empty when unset), the stream entry's `job_id` and `idempotency_key`,
/// `issued_at` and `expires_at` (decimal epoch seconds), and the exact bytes of the `envelope`
/// field. So a signed entry copied into another stream, or into another fleet's Redis under the
/// same HQ key, no longer verifies. It travels in the extra stream field `signature_v2` (base64),
/// with `key_id`, `issued_at` and `expires_at`.
///
/// For consumers of an older factoryctl, HQ also sends `signature`: the same bytes without the
/// stream and the fleet id, under the domain `factoryctl-mission-v1`. This factoryctl never accepts
/// that one (it is what a copied entry would still carry); consumers that do not verify ignore both.
public enum MissionSigning {
    public static let privateHeader = "factoryctl-mission-private-key-v1"
    public static let publicHeader = "factoryctl-mission-public-key-v1"
    /// The signed bytes' domain strings: v2 binds the stream and the fleet; v1 is sent only for
    /// older consumers.
    static let domain = "factoryctl-mission-v2"
    static let legacyDomain = "factoryctl-mission-v1"
    /// Clock skew tolerated, in seconds, for `issued_at`: between HQ and a factory (a mission
    /// issued further in the future is refused), and between HQ and Redis (a stream entry's id,
    /// Redis's clock when it was added, must be this close to `issued_at`, since HQ adds the
    /// entry as it signs it). Five minutes: NTP keeps real clocks far closer, and a copy of a
    /// signed entry under a new id is refused once the original is older than this.
    public static let allowedSkew: Double = 300

    public struct KeyError: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    public static func keyID(of publicKey: Curve25519.Signing.PublicKey) -> String {
        SHA256.hash(data: publicKey.rawRepresentation).prefix(8).map(hex2).joined()
    }

    /// Where a mission was published: the signed bytes include both.
    public struct Binding: Sendable, Equatable, CustomStringConvertible {
        public var stream: String
        /// `UA_FLEET_ID`; empty when unset.
        public var fleetID: String

        public init(stream: String, fleetID: String) {
            self.stream = stream
            self.fleetID = fleetID
        }

        public var description: String { "stream \(stream), fleet '\(fleetID)'" }
    }

    /// The bytes a `signature_v2` covers.
    static func message(binding: Binding, jobID: String, idempotencyKey: String, issuedAt: Int64, expiresAt: Int64,
                        envelope: String) -> [UInt8] {
        framed([domain, binding.stream, binding.fleetID, jobID, idempotencyKey, String(issuedAt), String(expiresAt), envelope])
    }

    /// The bytes the legacy `signature` covers (read by consumers of factoryctl before v2).
    static func legacyMessage(jobID: String, idempotencyKey: String, issuedAt: Int64, expiresAt: Int64, envelope: String) -> [UInt8] {
        framed([legacyDomain, jobID, idempotencyKey, String(issuedAt), String(expiresAt), envelope])
    }

    private static func framed(_ fields: [String]) -> [UInt8] {
        var bytes: [UInt8] = []
        for field in fields {
            let utf8 = Array(field.utf8)
            withUnsafeBytes(of: UInt64(utf8.count).bigEndian) { bytes.append(contentsOf: $0) }
            bytes += utf8
        }
        return bytes
    }
}

/// HQ's private key: signs missions (`UA_MISSION_SIGNING_KEY`).
public struct MissionSigner: Sendable {
    public let key: Curve25519.Signing.PrivateKey
    public let keyID: String

    public init(key: Curve25519.Signing.PrivateKey) {
        self.key = key
        keyID = MissionSigning.keyID(of: key.publicKey)
    }

    /// A new key pair.
    public static func generate() -> MissionSigner { MissionSigner(key: Curve25519.Signing.PrivateKey()) }

    public var privateKeyText: String {
        "\(MissionSigning.privateHeader) \(keyID) \(Data(key.rawRepresentation).base64EncodedString())\n"
    }

    public var publicKeyText: String {
        "\(MissionSigning.publicHeader) \(keyID) \(Data(key.publicKey.rawRepresentation).base64EncodedString())\n"
    }

    /// Reads a `mission.key` file; refuses one that others can read.
    public static func load(path: String) throws(MissionSigning.KeyError) -> MissionSigner {
        var info = stat()
        guard stat(path, &info) == 0 else { throw .init(description: "cannot read the signing key \(path): \(String(cString: strerror(errno)))") }
        guard info.st_mode & 0o077 == 0 else {
            throw .init(description: "the signing key \(path) is readable by others (mode \(String(info.st_mode & 0o777, radix: 8))); chmod 600 it")
        }
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw .init(description: "cannot read the signing key \(path)")
        }
        let parts = text.trimmed.split(separator: " ")
        guard parts.count == 3, parts[0] == MissionSigning.privateHeader, let seed = Data(base64Encoded: String(parts[2])),
              let key = try? Curve25519.Signing.PrivateKey(rawRepresentation: seed) else {
            throw .init(description: "\(path) is not a factoryctl mission signing key (expected '\(MissionSigning.privateHeader) <key-id> <base64>')")
        }
        let signer = MissionSigner(key: key)
        guard signer.keyID == parts[1] else { throw .init(description: "\(path): the key id does not match the key") }
        return signer
    }

    /// The extra stream fields for one mission entry published where `binding` says. Without
    /// `legacy`, only `signature_v2` and its fields (an enrolled factory's inbox entry: every
    /// consumer that reads an inbox verifies v2 and never accepts the legacy `signature`).
    public func sign(jobID: String, idempotencyKey: String, envelope: String, binding: MissionSigning.Binding,
                     issuedAt: Date, lifetime: Double, legacy: Bool = true) throws -> [(String, String)] {
        let issued = Int64(issuedAt.timeIntervalSince1970)
        let expires = issued + Int64(max(1, lifetime))
        let bound = MissionSigning.message(binding: binding, jobID: jobID, idempotencyKey: idempotencyKey,
                                           issuedAt: issued, expiresAt: expires, envelope: envelope)
        var fields = [("signature_v2", Data(try key.signature(for: bound)).base64EncodedString()),
                      ("key_id", keyID), ("issued_at", String(issued)), ("expires_at", String(expires))]
        if legacy {
            let message = MissionSigning.legacyMessage(jobID: jobID, idempotencyKey: idempotencyKey, issuedAt: issued,
                                                       expiresAt: expires, envelope: envelope)
            fields.insert(("signature", Data(try key.signature(for: message)).base64EncodedString()), at: 0)
        }
        return fields
    }
}

/// The public keys a factory accepts missions from (`UA_MISSION_VERIFY_KEYS`; several allow rotation).
public struct MissionVerifier: Sendable {
    public let keys: [String: Curve25519.Signing.PublicKey]

    public init(keys: [Curve25519.Signing.PublicKey]) {
        var byID: [String: Curve25519.Signing.PublicKey] = [:]
        for key in keys { byID[MissionSigning.keyID(of: key)] = key }
        self.keys = byID
    }

    /// Reads `mission.pub` files (paths separated by commas or colons).
    public static func load(paths: String) throws(MissionSigning.KeyError) -> MissionVerifier {
        var keys: [Curve25519.Signing.PublicKey] = []
        for path in paths.split(whereSeparator: { $0 == "," || $0 == ":" }).map({ String($0).trimmed }) where !path.isEmpty {
            guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
                throw .init(description: "cannot read the mission verify key \(path)")
            }
            let parts = text.trimmed.split(separator: " ")
            guard parts.count == 3, parts[0] == MissionSigning.publicHeader, let raw = Data(base64Encoded: String(parts[2])),
                  let key = try? Curve25519.Signing.PublicKey(rawRepresentation: raw) else {
                throw .init(description: "\(path) is not a factoryctl mission public key (expected '\(MissionSigning.publicHeader) <key-id> <base64>')")
            }
            guard MissionSigning.keyID(of: key) == parts[1] else { throw .init(description: "\(path): the key id does not match the key") }
            keys.append(key)
        }
        guard !keys.isEmpty else { throw .init(description: "UA_MISSION_VERIFY_KEYS names no key file") }
        return MissionVerifier(keys: keys)
    }

    /// Why an entry's signature is not acceptable.
    public enum Failure: Error, Equatable, Sendable, CustomStringConvertible {
        case unsigned
        case malformed(String)
        case unknownKey(String)
        case badSignature(String)
        /// Only the legacy `signature` (factoryctl-mission-v1, not bound to a stream or fleet).
        case unbound(String)
        case expired(Int64)
        case notYetValid(Int64)
        /// The stream entry's id time is further than `allowedSkew` from `issued_at`: the signed
        /// fields were added again under a new id (a stream writer controls ids, not signatures).
        case entryTimeMismatch(entryID: String, issuedAt: Int64)
        /// A broadcast or glob mission signed before this factory joined the fleet (its join floor).
        case issuedBeforeJoining(issuedAt: Int64, floor: StreamID)

        public var description: String {
            switch self {
            case .unsigned: "unsigned: this factory only runs missions signed by a key in UA_MISSION_VERIFY_KEYS"
            case .malformed(let what): "malformed signature fields: \(what)"
            case .unknownKey(let id): "signed by unknown key \(id.prefix(32)) (not in UA_MISSION_VERIFY_KEYS)"
            case .badSignature(let id):
                "bad signature for key \(id): forged, altered after signing, or published for another stream or fleet (UA_FLEET_ID) than this factory reads"
            case .unbound(let id):
                "signed by key \(id) without a stream binding (factoryctl-mission-v1 only): HQ's factoryctl predates signature_v2; upgrade HQ, then publish again"
            case .expired(let at): "expired: valid until \(at) (epoch seconds)"
            case .notYetValid(let at): "issued in the future (\(at), epoch seconds): check HQ's clock"
            case .entryTimeMismatch(let entryID, let issued):
                "stream entry \(entryID.prefix(40)) was added more than \(Int(MissionSigning.allowedSkew)) s away from when the mission was signed (issued_at \(issued), epoch seconds): a signed mission copied to a new entry id (or HQ's and Redis's clocks disagree)"
            case .issuedBeforeJoining(let issued, let floor):
                "signed at \(issued) (epoch seconds), before this factory joined the fleet at stream position \(floor): a broadcast from before it joined, copied to a new entry id. Publish it again, or name this factory, to have it run here"
            }
        }
    }

    /// Checks the entry's `signature_v2` against its own `job_id`, `idempotency_key` and
    /// `envelope`, and against where this factory read it (`binding`). Returns the key id it
    /// verified with.
    ///
    /// Then, since the entry id is the one thing about an entry a stream writer chooses, the
    /// signed `issued_at` stands in for it: with `entryID`, the id's time must be within
    /// `allowedSkew` of `issued_at`; with `joinedAt` (the join floor, for a broadcast or glob
    /// mission), `issued_at` must not be before it (`JoinFloor.admits(issuedAt:floor:)`).
    public func verify(fields: [String: String], binding: MissionSigning.Binding, entryID: String? = nil,
                       joinedAt floor: StreamID? = nil, now: Date = Date()) throws(Failure) -> String {
        guard fields["signature"] != nil || fields["signature_v2"] != nil else { throw .unsigned }
        guard let keyID = fields["key_id"], let issuedText = fields["issued_at"], let expiresText = fields["expires_at"] else {
            throw .malformed("signature without key_id, issued_at and expires_at")
        }
        guard let issued = Int64(issuedText), let expires = Int64(expiresText), expires > issued else {
            throw .malformed("issued_at and expires_at must be epoch seconds, expires_at after issued_at")
        }
        guard let key = keys[keyID] else { throw .unknownKey(keyID) }
        guard let signature = fields["signature_v2"] else { throw .unbound(keyID) }
        guard let raw = Data(base64Encoded: signature), raw.count == 64 else { throw .badSignature(keyID) }
        let message = MissionSigning.message(binding: binding, jobID: fields["job_id"] ?? "", idempotencyKey: fields["idempotency_key"] ?? "",
                                             issuedAt: issued, expiresAt: expires, envelope: fields["envelope"] ?? "")
        guard key.isValidSignature(raw, for: message) else { throw .badSignature(keyID) }
        let seconds = now.timeIntervalSince1970
        if Double(issued) > seconds + MissionSigning.allowedSkew { throw .notYetValid(issued) }
        if Double(expires) < seconds { throw .expired(expires) }
        if let entryID, let id = StreamID(entryID),
           abs(Double(id.milliseconds) / 1000 - Double(issued)) > MissionSigning.allowedSkew {
            throw .entryTimeMismatch(entryID: entryID, issuedAt: issued)
        }
        if let floor, !JoinFloor.admits(issuedAt: issued, floor: floor) { throw .issuedBeforeJoining(issuedAt: issued, floor: floor) }
        return keyID
    }
}
