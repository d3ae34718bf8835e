import Crypto
import FactoryBasics
import FoundationEssentials
import GitKit

/// The signed-commit policy (`UA_ALLOWED_SIGNERS`): an update moves HEAD only to code whose commit
/// carries an SSH signature (git's `gpg.format=ssh`) that verifies against an Ed25519 key of git's
/// `allowed_signers` file, for the `git` namespace.
///
/// The `sshsig` armor is parsed and checked here (PROTOCOL.sshsig): the blob names the public
/// key, the namespace, the hash (sha512 or sha256) and an Ed25519 signature over
/// `"SSHSIG" || string(namespace) || string(reserved) || string(hash name) || string(H(commit data))`.
/// Lines of allowed_signers with `cert-authority`, `valid-after` or `valid-before` are not
/// supported and are skipped (an operator sees them in the refusal's count); keys other than
/// ssh-ed25519 are skipped too.
public struct CommitSignaturePolicy: Sendable {
    public struct Signer: Sendable, Equatable {
        public let principals: String
        public let key: [UInt8]
    }

    public let signers: [Signer]
    public let path: String
    /// Lines skipped because they use what this policy does not support.
    public let skipped: Int

    public struct Refusal: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    /// Reads `allowed_signers` at `path`.
    public static func load(path: String) throws(Refusal) -> CommitSignaturePolicy {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw Refusal(description: "cannot read UA_ALLOWED_SIGNERS (\(path))")
        }
        var signers: [Signer] = []
        var skipped = 0
        for raw in String(decoding: data, as: UTF8.self).split(separator: "\n") {
            let line = raw.trimmed
            if line.isEmpty || line.hasPrefix("#") { continue }
            let fields = tokens(line)
            guard fields.count >= 3 else { skipped += 1; continue }
            var index = 1
            var namespacesOK = true
            if !fields[1].hasPrefix("ssh-") && !fields[1].hasPrefix("ecdsa-") && !fields[1].hasPrefix("sk-") {
                let options = fields[1].lowercased()
                if options.contains("cert-authority") || options.contains("valid-after") || options.contains("valid-before") {
                    skipped += 1
                    continue
                }
                if let range = options.firstRange(of: "namespaces=") {
                    let list = options[range.upperBound...].trimmingCharacters(in: "\"").split(separator: ",")
                    namespacesOK = list.contains { $0.trimmingCharacters(in: "\"") == "git" }
                }
                index = 2
            }
            guard fields.count > index + 1, fields[index] == "ssh-ed25519", namespacesOK,
                  let blob = Data(base64Encoded: fields[index + 1]), let key = Self.ed25519Key(fromPublicBlob: Array(blob)) else {
                skipped += 1
                continue
            }
            signers.append(Signer(principals: fields[0], key: key))
        }
        guard !signers.isEmpty else {
            throw Refusal(description: "UA_ALLOWED_SIGNERS (\(path)) lists no usable ssh-ed25519 key (\(skipped) line(s) skipped)")
        }
        return CommitSignaturePolicy(signers: signers, path: path, skipped: skipped)
    }

    /// Throws when `commit` is not signed by an allowed signer; returns the signer's principals.
    public func check(_ commit: ObjectID, in repository: Repository) throws(Refusal) -> String {
        let signed: (signature: String, signedData: [UInt8])?
        do {
            signed = try repository.commitSignature(commit)
        } catch {
            throw Refusal(description: "commit \(commit.short): its signature could not be read (\(error))")
        }
        guard let signed else { throw Refusal(description: "commit \(commit.short) is not signed") }
        guard signed.signature.contains("-----BEGIN SSH SIGNATURE-----") else {
            throw Refusal(description: "commit \(commit.short) is signed, but not with an SSH key (gpg.format=ssh)")
        }
        let parsed: SSHSignature
        do {
            parsed = try SSHSignature(armored: signed.signature)
        } catch {
            throw Refusal(description: "commit \(commit.short) has an unreadable SSH signature (\(error.description))")
        }
        guard parsed.namespace == "git" else {
            throw Refusal(description: "commit \(commit.short) is signed for namespace '\(parsed.namespace.prefix(40))', not git")
        }
        guard let signer = signers.first(where: { $0.key == parsed.publicKey }) else {
            throw Refusal(description: "commit \(commit.short) is signed by a key that is not in UA_ALLOWED_SIGNERS (\(path))")
        }
        guard parsed.verifies(signed.signedData) else {
            throw Refusal(description: "commit \(commit.short) has a bad signature for \(signer.principals): the commit was altered, or the signature forged")
        }
        return signer.principals
    }

    /// Whitespace-separated fields; double quotes keep spaces inside one field.
    static func tokens(_ line: String) -> [String] {
        var fields: [String] = []
        var current = ""
        var quoted = false
        for character in line {
            if character == "\"" { quoted.toggle(); current.append(character); continue }
            if (character == " " || character == "\t") && !quoted {
                if !current.isEmpty { fields.append(current); current = "" }
                continue
            }
            current.append(character)
        }
        if !current.isEmpty { fields.append(current) }
        return fields
    }

    /// The 32 key bytes of an SSH wire-format `ssh-ed25519` public key blob.
    static func ed25519Key(fromPublicBlob blob: [UInt8]) -> [UInt8]? {
        var reader = SSHReader(blob)
        guard let type = reader.string(), type == Array("ssh-ed25519".utf8), let key = reader.string(), key.count == 32,
              reader.atEnd else { return nil }
        return key
    }
}

/// An `sshsig` signature (PROTOCOL.sshsig), Ed25519 only.
struct SSHSignature {
    let publicKey: [UInt8]
    let namespace: String
    let hashAlgorithm: String
    let signature: [UInt8]

    struct ParseError: Error, CustomStringConvertible {
        let description: String
    }

    init(armored: String) throws(ParseError) {
        let lines = armored.split(whereSeparator: \.isNewline).map { $0.trimmed }
        guard let begin = lines.firstIndex(of: "-----BEGIN SSH SIGNATURE-----"),
              let end = lines.firstIndex(of: "-----END SSH SIGNATURE-----"), begin < end else {
            throw ParseError(description: "no SSH SIGNATURE armor")
        }
        guard let blob = Data(base64Encoded: lines[(begin + 1)..<end].joined()) else { throw ParseError(description: "bad base64") }
        var reader = SSHReader(Array(blob))
        guard reader.bytes(6) == Array("SSHSIG".utf8) else { throw ParseError(description: "not an SSHSIG blob") }
        guard reader.uint32() == 1 else { throw ParseError(description: "unsupported SSHSIG version") }
        guard let keyBlob = reader.string(), let key = CommitSignaturePolicy.ed25519Key(fromPublicBlob: keyBlob) else {
            throw ParseError(description: "not an ssh-ed25519 key")
        }
        guard let namespace = reader.string(), reader.string() != nil, let hash = reader.string(), let sigBlob = reader.string(),
              reader.atEnd else { throw ParseError(description: "truncated") }
        var sigReader = SSHReader(sigBlob)
        guard sigReader.string() == Array("ssh-ed25519".utf8), let raw = sigReader.string(), raw.count == 64, sigReader.atEnd else {
            throw ParseError(description: "not an ssh-ed25519 signature")
        }
        publicKey = key
        self.namespace = String(decoding: namespace, as: UTF8.self)
        hashAlgorithm = String(decoding: hash, as: UTF8.self)
        signature = raw
    }

    /// Whether the signature covers `message` (the commit's data).
    func verifies(_ message: [UInt8]) -> Bool {
        let digest: [UInt8]
        switch hashAlgorithm {
        case "sha512": digest = Array(SHA512.hash(data: message))
        case "sha256": digest = Array(SHA256.hash(data: message))
        default: return false
        }
        var signed = Array("SSHSIG".utf8)
        for field in [Array(namespace.utf8), [], Array(hashAlgorithm.utf8), digest] {
            withUnsafeBytes(of: UInt32(field.count).bigEndian) { signed.append(contentsOf: $0) }
            signed += field
        }
        guard let key = try? Curve25519.Signing.PublicKey(rawRepresentation: publicKey) else { return false }
        return key.isValidSignature(signature, for: signed)
    }
}

/// Reads SSH wire-format fields (uint32 lengths, big-endian).
struct SSHReader {
    let bytes: [UInt8]
    var offset = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var atEnd: Bool { offset == bytes.count }

    mutating func bytes(_ count: Int) -> [UInt8]? {
        guard count >= 0, bytes.count - offset >= count else { return nil }
        defer { offset += count }
        return Array(bytes[offset..<(offset + count)])
    }

    mutating func uint32() -> UInt32? {
        guard let raw = bytes(4) else { return nil }
        return raw.reduce(0) { $0 << 8 | UInt32($1) }
    }

    mutating func string() -> [UInt8]? {
        guard let length = uint32(), length <= 1 << 20 else { return nil }
        return bytes(Int(length))
    }
}

private extension Substring {
    func trimmingCharacters(in quote: Character) -> String {
        var text = String(self)
        while text.first == quote { text.removeFirst() }
        while text.last == quote { text.removeLast() }
        return text
    }
}
