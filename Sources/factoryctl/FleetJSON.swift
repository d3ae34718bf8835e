import FactoryKit
import FoundationEssentials

/// `status --fleet --json` written straight into bytes: at 10,000 factories the generic path
/// (Encodable → JSONEncoder → parsed back into a JSONValue → JSONEncoder again) was 9× the raw
/// Redis read. The text is byte for byte what that path printed (JSONEncoder with sorted keys and
/// unescaped slashes: absent optionals left out, integral numbers without a fraction); a test
/// holds the two side by side.
struct FleetJSON {
    var bytes: [UInt8] = []

    /// The whole object: the rows under `factories` plus the contract's four keys, sorted.
    static func document(_ rows: [FleetRow]) -> [UInt8] {
        var out = FleetJSON()
        out.bytes.reserveCapacity(64 + rows.count * 512)
        out.raw(#"{"error":null,"exit_code":0,"factories":["#)
        for (index, row) in rows.enumerated() {
            if index > 0 { out.raw(",") }
            out.row(row)
        }
        out.raw(#"],"ok":true,"schema_version":\#(JSONOutput.schemaVersion)}"#)
        out.raw("\n")
        return out.bytes
    }

    /// One row, its keys in sorted order.
    private mutating func row(_ row: FleetRow) {
        raw("{")
        var first = true
        func key(_ name: StaticString) {
            if !first { bytes.append(UInt8(ascii: ",")) }
            first = false
            bytes.append(UInt8(ascii: "\""))
            name.withUTF8Buffer { bytes.append(contentsOf: $0) }
            bytes.append(contentsOf: [UInt8(ascii: "\""), UInt8(ascii: ":")])
        }
        if let branch = row.branch { key("branch"); string(branch) }
        key("capabilities")
        raw("[")
        for (index, capability) in row.capabilities.enumerated() {
            if index > 0 { raw(",") }
            string(capability)
        }
        raw("]")
        if let commit = row.commit { key("commit"); string(commit) }
        key("factory_id"); string(row.factoryID)
        key("host"); string(row.host)
        if let id = row.lastJobID { key("last_job_id"); string(id) }
        if let status = row.lastJobStatus { key("last_job_status"); string(status) }
        key("last_seen_at"); number(row.lastSeenAt)
        key("last_seen_seconds"); number(row.lastSeenSeconds)
        key("pid"); raw(String(row.pid))
        key("stale"); raw(row.stale ? "true" : "false")
        key("status"); string(row.status)
        key("version"); string(row.version)
        raw("}")
    }

    mutating func raw(_ text: String) {
        append(text.utf8)
    }

    /// One copy of the bytes (a native string's are contiguous).
    mutating func append(_ utf8: String.UTF8View) {
        if utf8.withContiguousStorageIfAvailable({ bytes.append(contentsOf: $0) }) == nil { bytes.append(contentsOf: utf8) }
    }

    /// As JSONEncoder writes a Double: integral values (within 2^53) as integers, others in
    /// Swift's shortest round-trip form.
    mutating func number(_ value: Double) {
        if value.isFinite, value == value.rounded(), abs(value) < 9_007_199_254_740_992 {
            raw(String(Int64(value)))
        } else {
            raw(value.isFinite ? "\(value)" : "0")
        }
    }

    /// A JSON string as JSONEncoder writes it: `"` and `\` escaped, control characters as
    /// `\b \f \n \r \t` or `\u00XX`, everything else (slashes, non-ASCII) as it is.
    mutating func string(_ text: String) {
        bytes.append(UInt8(ascii: "\""))
        // Most values need no escape: scanned and copied in one go from contiguous UTF-8.
        var text = text
        let copied = text.withUTF8 { utf8 in
            for byte in utf8 where byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") { return false }
            bytes.append(contentsOf: utf8)
            return true
        }
        if copied {
            bytes.append(UInt8(ascii: "\""))
            return
        }
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): raw("\\\"")
            case UInt8(ascii: "\\"): raw("\\\\")
            case 0x08: raw("\\b")
            case 0x0C: raw("\\f")
            case UInt8(ascii: "\n"): raw("\\n")
            case UInt8(ascii: "\r"): raw("\\r")
            case UInt8(ascii: "\t"): raw("\\t")
            case 0..<0x20: raw("\\u00" + (byte < 16 ? "0" : "") + String(byte, radix: 16))
            default: bytes.append(byte)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }
}
