import FactoryKit
import FoundationEssentials

/// `publish --wait --json` written straight into bytes, one result at a time: at 10,000 factories
/// the generic path (Encodable → JSONEncoder → parsed back → JSONEncoder again) held about 100 MB
/// to print a 10 MB summary. The text is byte for byte what that path printed (sorted keys, no
/// spaces, slashes unescaped, integral numbers without a fraction); a test holds the two side by side.
extension FleetJSON {
    /// The whole document in one buffer (tests compare it with the generic path's).
    static func waitDocument(_ summary: Publisher.WaitSummary, exit: ExitStatus, error: String?) -> [UInt8] {
        var whole: [UInt8] = []
        writeWaitDocument(summary, exit: exit, error: error) { whole += $0 }
        return whole
    }

    /// About this many bytes are handed on at once.
    static let waitPiece = 64 * 1024

    /// The document handed to `write` in pieces of about `waitPiece` bytes, in order: the 10 MB of
    /// a 10,000-factory summary is never whole in memory beside the results it is written from.
    static func writeWaitDocument(_ summary: Publisher.WaitSummary, exit: ExitStatus, error: String?,
                                  to write: ([UInt8]) -> Void) {
        var out = FleetJSON()
        out.bytes.reserveCapacity(waitPiece + 4096)
        out.raw(#"{"all_succeeded":"# + (summary.allSucceeded ? "true" : "false") + #","deferred":"#)
        out.value(.object(summary.deferred.mapValues(JSONValue.string)))
        out.raw(#","error":"#)
        if let error { out.string(error) } else { out.raw("null") }
        out.raw(#","exit_code":\#(exit.rawValue),"job_id":"#)
        out.string(summary.jobID)
        out.raw(#","ok":"# + (exit == .success || exit == .upToDate ? "true" : "false") + #","pending":"#)
        out.strings(summary.pending)
        out.raw(#","results":["#)
        var first = true
        for text in summary.resultTexts {
            guard let result = JSONValue.parse(text).flatMap(MissionResult.init(json:)) else { continue }
            if !first { out.raw(",") }
            first = false
            out.value(result.json)
            if out.bytes.count >= waitPiece {
                write(out.bytes)
                out.bytes.removeAll(keepingCapacity: true)
            }
        }
        out.raw(#"],"schema_version":\#(JSONOutput.schemaVersion),"targeted":"#)
        out.strings(summary.targeted)
        out.raw(#","timed_out":"# + (summary.timedOut ? "true" : "false") + #","unreachable":"#)
        out.value(.object(summary.unreachable.mapValues(JSONValue.string)))
        out.raw("}\n")
        write(out.bytes)
    }

    mutating func strings(_ items: [String]) {
        raw("[")
        for (index, item) in items.enumerated() {
            if index > 0 { raw(",") }
            string(item)
        }
        raw("]")
    }

    /// Any JSON value as JSONEncoder writes it (object keys sorted).
    mutating func value(_ value: JSONValue) {
        switch value {
        case .null: raw("null")
        case .bool(let flag): raw(flag ? "true" : "false")
        case .int(let number): raw(String(number))
        case .double(let number): self.number(number)
        case .string(let text): string(text)
        case .array(let items):
            raw("[")
            for (index, item) in items.enumerated() {
                if index > 0 { raw(",") }
                self.value(item)
            }
            raw("]")
        case .object(let object):
            raw("{")
            for (index, key) in object.keys.sorted().enumerated() {
                if index > 0 { raw(",") }
                string(key)
                raw(":")
                self.value(object[key]!)
            }
            raw("}")
        }
    }
}
