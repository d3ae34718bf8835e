import FactoryBasics
import FoundationEssentials
import Glibc

/// The fields of a registration that the fleet table, `status --fleet --json` and the live-factory
/// scan use, read in one pass over the stored JSON without building the whole document: keys
/// that are not needed (`metadata`, ...) are skipped without allocating. Every value it returns is
/// checked as strictly as `JSONValue.parse` would (the whole text must be UTF-8); only inside the
/// values it skips is it lenient about JSON details. A registration whose needed fields cannot
/// be read this way (an escape in one of them, an unexpected shape) is read with the strict
/// parser instead.
public struct FleetEntry: Sendable, Equatable {
    public var factoryID: String
    public var status: String
    public var branch: String?
    public var commit: String?
    public var version: String = ""
    public var host: String = ""
    public var pid: Int32 = 0
    public var lastSeenAt: Double = 0
    public var lastJobID: String?
    public var lastJobStatus: String?
    public var capabilities: [String] = []
    /// Read only with `progress` (what `Publisher.wait` and a rollout window follow): when the
    /// consumer started, and what its `metadata` says about the job it is working on.
    public var startedAt: Double = 0
    public var currentJobID: String?
    public var soakSecondsLeft: Double?
    public var splaySecondsLeft: Double?
    /// A mission it defers (maintenance window, app lock): the job, what it says, until when.
    public var deferredJobID: String?
    public var deferred: String?
    public var deferredUntil: Double?

    public init(_ registration: Registration) {
        factoryID = registration.factoryID
        status = registration.registrationStatus
        branch = registration.branch
        commit = registration.commit
        version = registration.version
        host = registration.host
        pid = registration.pid
        lastSeenAt = registration.lastSeenAt
        lastJobID = registration.lastJobID
        lastJobStatus = registration.lastJobStatus
        capabilities = registration.capabilities
    }

    /// The same, with the `progress` fields.
    public static func withProgress(_ registration: Registration) -> FleetEntry {
        var entry = FleetEntry(registration)
        entry.startedAt = registration.startedAt
        entry.currentJobID = registration.metadata["current_job_id"]?.string
        entry.soakSecondsLeft = registration.metadata["soak_seconds_left"]?.number
        entry.splaySecondsLeft = registration.metadata["splay_seconds_left"]?.number
        entry.deferredJobID = registration.metadata["deferred_job_id"]?.string
        entry.deferred = registration.metadata["deferred"]?.string
        entry.deferredUntil = registration.metadata["deferred_until"]?.number
        return entry
    }

    init(factoryID: String, status: String) {
        self.factoryID = factoryID
        self.status = status
    }

    public func isStale(now: Date = Date(), after seconds: Double) -> Bool {
        now.timeIntervalSince1970 - lastSeenAt > seconds
    }

    /// Reads a stored registration; nil when it is not one (the strict parser's verdict).
    /// Without `capabilities`, that list is skipped (the fleet table does not show it).
    public static func read(_ bytes: UnsafeBufferPointer<UInt8>, capabilities: Bool = true) -> FleetEntry? {
        read(bytes, capabilities: capabilities, shared: nil)
    }

    /// With `shared`: a capability list with the same bytes as the last one read shares its array
    /// (a fleet's factories mostly have one list: 10,000 reads make one array, not 10,000).
    /// With `progress`, `startedAt` and the job fields of `metadata` too (else left empty).
    static func read(_ bytes: UnsafeBufferPointer<UInt8>, capabilities: Bool, progress: Bool = false,
                     shared: CapabilityCache?) -> FleetEntry? {
        if isValidUTF8(bytes) {
            var scanner = FleetScanner(bytes: bytes, capabilities: capabilities, progress: progress, shared: shared)
            if let entry = scanner.scan() { return entry }
        }
        guard let value = try? JSONValue.parse(bytes: Array(bytes)), let registration = Registration(json: value) else { return nil }
        var entry = progress ? FleetEntry.withProgress(registration) : FleetEntry(registration)
        if !capabilities { entry.capabilities = [] }
        return entry
    }

    public static func read(_ bytes: [UInt8], capabilities: Bool = true, progress: Bool = false) -> FleetEntry? {
        bytes.withUnsafeBufferPointer { read($0, capabilities: capabilities, progress: progress, shared: nil) }
    }
}

/// The one-pass reader behind `FleetEntry.read`. Returns nil whenever it is not sure, and the
/// caller falls back to the strict parser.
/// The last capability list read: its bytes and the array made from them.
final class CapabilityCache {
    var bytes: [UInt8] = []
    var value: [String] = []
}

private struct FleetScanner {
    let bytes: UnsafeBufferPointer<UInt8>
    let capabilities: Bool
    let progress: Bool
    let shared: CapabilityCache?
    var index = 0

    init(bytes: UnsafeBufferPointer<UInt8>, capabilities: Bool, progress: Bool = false, shared: CapabilityCache? = nil) {
        self.bytes = bytes
        self.capabilities = capabilities
        self.progress = progress
        self.shared = shared
    }

    /// The capability list, shared with the last one read when its bytes are the same.
    private mutating func capabilityList() -> [String]? {
        let start = index
        guard let shared else { return stringArray() }
        guard skipStringArray() else { return nil }
        let raw = UnsafeBufferPointer(rebasing: bytes[start..<index])
        if raw.count == shared.bytes.count,
           raw.count == 0 || shared.bytes.withUnsafeBufferPointer({ memcmp($0.baseAddress!, raw.baseAddress!, raw.count) == 0 }) {
            return shared.value
        }
        index = start
        guard let value = stringArray() else { return nil }
        (shared.bytes, shared.value) = (Array(raw), value)
        return value
    }

    mutating func scan() -> FleetEntry? {
        skipSpace()
        guard take(UInt8(ascii: "{")) else { return nil }
        var id: String?, status: String?
        var entry = FleetEntry(factoryID: "", status: "")
        skipSpace()
        if take(UInt8(ascii: "}")) { return nil }
        while true {
            skipSpace()
            // Keys are compared as bytes: no String is made for a key, or for a value skipped.
            guard let key = plainRange() else { return nil }
            skipSpace()
            guard take(UInt8(ascii: ":")) else { return nil }
            skipSpace()
            guard readField(key, into: &entry, id: &id, status: &status) else { return nil }
            skipSpace()
            if take(UInt8(ascii: ",")) { continue }
            guard take(UInt8(ascii: "}")) else { return nil }
            skipSpace()
            guard index == bytes.count, let id, let status else { return nil }
            entry.factoryID = id
            entry.status = status
            return entry
        }
    }

    /// The value of `key` into `entry` (or `id`, `status`); any other key's value skipped.
    /// False when unsure (the strict parser decides then).
    private mutating func readField(_ key: Range<Int>, into entry: inout FleetEntry, id: inout String?, status: inout String?) -> Bool {
        if key.count < 2 || key.count > 19 {
            guard skipValue(depth: 0) else { return false }
        } else if isKey(key, "factory_id") {
            guard let v = plainString() else { return false }; id = v
        } else if isKey(key, "registration_status") {
            guard let v = plainString() else { return false }; status = v
        } else if isKey(key, "branch") {
            guard let v = optionalString() else { return false }; entry.branch = v
        } else if isKey(key, "commit") {
            guard let v = optionalString() else { return false }; entry.commit = v
        } else if isKey(key, "version") {
            guard let v = plainString() else { return false }; entry.version = v
        } else if isKey(key, "host") {
            guard let v = plainString() else { return false }; entry.host = v
        } else if isKey(key, "last_job_id") {
            guard let v = optionalString() else { return false }; entry.lastJobID = v
        } else if isKey(key, "last_job_status") {
            guard let v = optionalString() else { return false }; entry.lastJobStatus = v
        } else if isKey(key, "pid") {
            // As the strict reader: an integer literal is the pid, any other number is no pid.
            guard let (range, isInteger) = numberLiteral() else { return false }
            if isInteger {
                guard let pid = Int64(text(range)) else { return false }
                entry.pid = Int32(clamping: pid)
            } else {
                entry.pid = 0
            }
        } else if isKey(key, "last_seen_at") {
            guard let (range, _) = numberLiteral(), let v = Double(text(range)), v.isFinite else { return false }
            entry.lastSeenAt = plausibleTimestamp(v)
        } else if isKey(key, "capabilities") {
            if capabilities {
                guard let v = capabilityList() else { return false }; entry.capabilities = v
            } else {
                guard skipStringArray() else { return false }
            }
        } else if progress, isKey(key, "started_at") {
            guard let v = finiteNumber() else { return false }; entry.startedAt = v
        } else if progress, isKey(key, "metadata") {
            guard metadata(into: &entry) else { return false }
        } else {
            guard skipValue(depth: 0) else { return false }
        }
        return true
    }

    /// `metadata`'s job fields (`current_job_id`, `soak_seconds_left`, `splay_seconds_left`, and
    /// a deferral's `deferred_job_id`, `deferred`, `deferred_until`),
    /// its other keys skipped. False when unsure (a value of another type than expected included).
    private mutating func metadata(into entry: inout FleetEntry) -> Bool {
        guard take(UInt8(ascii: "{")) else { return false }
        skipSpace()
        if take(UInt8(ascii: "}")) { return true }
        while true {
            skipSpace()
            guard let key = plainRange() else { return false }
            skipSpace()
            guard take(UInt8(ascii: ":")) else { return false }
            skipSpace()
            if isKey(key, "current_job_id") {
                guard let v = optionalString() else { return false }; entry.currentJobID = v
            } else if isKey(key, "soak_seconds_left") {
                guard let v = finiteNumber() else { return false }; entry.soakSecondsLeft = v
            } else if isKey(key, "splay_seconds_left") {
                guard let v = finiteNumber() else { return false }; entry.splaySecondsLeft = v
            } else if isKey(key, "deferred_job_id") {
                guard let v = optionalString() else { return false }; entry.deferredJobID = v
            } else if isKey(key, "deferred") {
                guard let v = optionalString() else { return false }; entry.deferred = v
            } else if isKey(key, "deferred_until") {
                guard let v = finiteNumber() else { return false }; entry.deferredUntil = v
            } else {
                guard skipValue(depth: 1) else { return false }
            }
            skipSpace()
            if take(UInt8(ascii: ",")) { continue }
            return take(UInt8(ascii: "}"))
        }
    }

    private mutating func finiteNumber() -> Double? {
        guard let (range, _) = numberLiteral(), let value = Double(text(range)), value.isFinite else { return nil }
        return value
    }

    private mutating func take(_ byte: UInt8) -> Bool {
        guard index < bytes.count, bytes[index] == byte else { return false }
        index += 1
        return true
    }

    private mutating func skipSpace() {
        while index < bytes.count, bytes[index] == 0x20 || bytes[index] == 0x0A || bytes[index] == 0x0D || bytes[index] == 0x09 {
            index += 1
        }
    }

    /// Where a string without escapes or control characters is (inside its quotes); nil otherwise.
    private mutating func plainRange() -> Range<Int>? {
        guard take(UInt8(ascii: "\"")) else { return nil }
        let start = index
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                index += 1
                return start..<(index - 1)
            }
            if byte == UInt8(ascii: "\\") || byte < 0x20 { return nil }
            index += 1
        }
        return nil
    }

    /// A string without escapes or control characters, valid UTF-8; nil otherwise.
    private mutating func plainString() -> String? {
        // The whole text was validated as UTF-8 before the scan.
        plainRange().map(text)
    }

    private func text(_ range: Range<Int>) -> String {
        String(decoding: UnsafeBufferPointer(rebasing: bytes[range]), as: UTF8.self)
    }

    private func isKey(_ range: Range<Int>, _ name: StaticString) -> Bool {
        guard range.count == name.utf8CodeUnitCount else { return false }
        return memcmp(bytes.baseAddress! + range.lowerBound, name.utf8Start, range.count) == 0
    }

    /// `.some(nil)` for JSON null, `.some(text)` for a plain string, nil when unsure.
    private mutating func optionalString() -> String?? {
        if literal("null") { return .some(nil) }
        return plainString().map { .some($0) }
    }

    private mutating func literal(_ word: StaticString) -> Bool {
        let count = word.utf8CodeUnitCount
        guard index + count <= bytes.count else { return false }
        for offset in 0..<count where bytes[index + offset] != word.utf8Start[offset] { return false }
        index += count
        return true
    }

    /// A number in JSON's grammar, `-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?`; its text and
    /// whether it is an integer literal. nil for anything else ("+1", "01", "1.", ".5").
    private mutating func numberLiteral() -> (Range<Int>, Bool)? {
        let start = index
        func digits() -> Int {
            let from = index
            while index < bytes.count, bytes[index] >= UInt8(ascii: "0"), bytes[index] <= UInt8(ascii: "9") { index += 1 }
            return index - from
        }
        var isInteger = true
        _ = take(UInt8(ascii: "-"))
        if take(UInt8(ascii: "0")) {
            // a leading zero stands alone
        } else if digits() == 0 {
            return nil
        }
        if take(UInt8(ascii: ".")) {
            isInteger = false
            guard digits() > 0 else { return nil }
        }
        if take(UInt8(ascii: "e")) || take(UInt8(ascii: "E")) {
            isInteger = false
            if !take(UInt8(ascii: "+")) { _ = take(UInt8(ascii: "-")) }
            guard digits() > 0 else { return nil }
        }
        if index < bytes.count, bytes[index] >= UInt8(ascii: "0"), bytes[index] <= UInt8(ascii: "9") { return nil } // "01"
        return (start..<index, isInteger)
    }

    private mutating func stringArray() -> [String]? {
        guard take(UInt8(ascii: "[")) else { return nil }
        var items: [String] = []
        skipSpace()
        if take(UInt8(ascii: "]")) { return items }
        while true {
            skipSpace()
            guard let item = plainString() else { return nil }
            items.append(item)
            skipSpace()
            if take(UInt8(ascii: ",")) { continue }
            return take(UInt8(ascii: "]")) ? items : nil
        }
    }

    /// Skips an array of plain strings (what `stringArray` would accept) without building it.
    private mutating func skipStringArray() -> Bool {
        guard take(UInt8(ascii: "[")) else { return false }
        skipSpace()
        if take(UInt8(ascii: "]")) { return true }
        while true {
            skipSpace()
            guard take(UInt8(ascii: "\"")) else { return false }
            while index < bytes.count, bytes[index] != UInt8(ascii: "\"") {
                if bytes[index] == UInt8(ascii: "\\") || bytes[index] < 0x20 { return false }
                index += 1
            }
            guard take(UInt8(ascii: "\"")) else { return false }
            skipSpace()
            if take(UInt8(ascii: ",")) { continue }
            return take(UInt8(ascii: "]"))
        }
    }

    /// Skips any JSON value (nested up to the strict parser's depth); false when malformed.
    private mutating func skipValue(depth: Int) -> Bool {
        guard depth < 200, index < bytes.count else { return false }
        switch bytes[index] {
        case UInt8(ascii: "\""):
            index += 1
            while index < bytes.count {
                let byte = bytes[index]
                if byte == UInt8(ascii: "\\") { index += 2; continue }
                if byte < 0x20 { return false }
                index += 1
                if byte == UInt8(ascii: "\"") { return true }
            }
            return false
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            let close = bytes[index] == UInt8(ascii: "{") ? UInt8(ascii: "}") : UInt8(ascii: "]")
            let isObject = close == UInt8(ascii: "}")
            index += 1
            skipSpace()
            if take(close) { return true }
            while true {
                skipSpace()
                if isObject {
                    guard index < bytes.count, bytes[index] == UInt8(ascii: "\""), skipValue(depth: depth + 1) else { return false }
                    skipSpace()
                    guard take(UInt8(ascii: ":")) else { return false }
                    skipSpace()
                }
                guard skipValue(depth: depth + 1) else { return false }
                skipSpace()
                if take(UInt8(ascii: ",")) { continue }
                return take(close)
            }
        case UInt8(ascii: "t"): return literal("true")
        case UInt8(ascii: "f"): return literal("false")
        case UInt8(ascii: "n"): return literal("null")
        default: return numberLiteral() != nil
        }
    }
}

/// UTF-8 validity (the rules `String(validating:)` applies: no overlongs, no surrogates, nothing
/// above U+10FFFF) without building a String; ASCII runs are checked eight bytes at a time.
extension FleetEntry {
    public static func isValidUTF8(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool { FactoryKit.isValidUTF8(bytes) }
}

func isValidUTF8(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
    var index = 0
    let count = bytes.count
    guard let base = bytes.baseAddress else { return true }
    while index < count {
        if index + 8 <= count, UnsafeRawPointer(base + index).loadUnaligned(as: UInt64.self) & 0x8080_8080_8080_8080 == 0 {
            index += 8
            continue
        }
        let lead = bytes[index]
        if lead < 0x80 { index += 1; continue }
        let length: Int
        var lower: UInt8 = 0x80, upper: UInt8 = 0xBF
        switch lead {
        case 0xC2...0xDF: length = 2
        case 0xE0: length = 3; lower = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: length = 3
        case 0xED: length = 3; upper = 0x9F
        case 0xF0: length = 4; lower = 0x90
        case 0xF1...0xF3: length = 4
        case 0xF4: length = 4; upper = 0x8F
        default: return false
        }
        guard index + length <= count else { return false }
        let second = bytes[index + 1]
        guard second >= lower, second <= upper else { return false }
        for offset in 2..<max(2, length) where bytes[index + offset] & 0xC0 != 0x80 { return false }
        index += length
    }
    return true
}
