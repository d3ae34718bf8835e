import FactoryKit
import Foundation
import Testing

/// The one-pass registration reader used by `status --fleet` agrees with the strict parser.
@Suite struct FleetEntryTests {
    static let base: [String: JSONValue] = [
        "factory_id": .string("eu-1"), "factory_role": .string("LOCAL_WORKER"), "registration_status": .string("online"),
        "capabilities": .array([.string("factoryctl"), .string("commit:0123456")]),
        "metadata": .object(["factory_dir": .string("/srv/f"), "nested": .array([.object(["a": .null]), .bool(true), .double(1.5)])]),
        "branch": .string("main"), "commit": .string("0123456789abcdef0123456789abcdef01234567"),
        "version": .string("0.2.0"), "pid": .int(4242), "host": .string("h"), "started_at": .double(1.0),
        "last_seen_at": .double(1_700_000_000.25), "last_job_id": .string("update-0123456789ab"),
    ]

    static func strict(_ bytes: [UInt8]) -> FleetEntry? {
        (try? JSONValue.parse(bytes: bytes)).flatMap(Registration.init(json:)).map(FleetEntry.init)
    }

    static var documents: [[UInt8]] {
        var docs: [String] = [JSONValue.object(base).pythonJSON]
        var escaped = base
        escaped["host"] = .string("tab\there \u{1F600} \"quoted\"")
        docs.append(JSONValue.object(escaped).pythonJSON)               // escapes: the strict path
        var nulls = base
        nulls["branch"] = .null
        nulls["commit"] = .null
        docs.append(JSONValue.object(nulls).pythonJSON)
        var missing = base
        missing["factory_id"] = nil
        docs.append(JSONValue.object(missing).pythonJSON)               // not a registration
        var wrongType = base
        wrongType["registration_status"] = .int(1)
        docs.append(JSONValue.object(wrongType).pythonJSON)
        // Numbers the strict reader treats in its own way: the scanner must agree or step aside.
        let plain = JSONValue.object(base).pythonJSON
        for (from, to) in [("\"pid\": 4242", "\"pid\": 12.5"), ("\"pid\": 4242", "\"pid\": +5"), ("\"pid\": 4242", "\"pid\": 04"),
                           ("\"pid\": 4242", "\"pid\": 99999999999999999999"), ("\"pid\": 4242", "\"pid\": 1e3"),
                           ("\"pid\": 4242", "\"pid\": -0"), ("\"last_seen_at\": 1700000000.25", "\"last_seen_at\": 1."),
                           ("\"last_seen_at\": 1700000000.25", "\"last_seen_at\": .5"), ("\"last_seen_at\": 1700000000.25", "\"last_seen_at\": 1E2"),
                           ("\"last_seen_at\": 1700000000.25", "\"last_seen_at\": 1e999")] {
            #expect(plain.contains(from), "fixture changed: \(from) not in \(plain)")
            docs.append(plain.replacingOccurrences(of: from, with: to))
        }
        docs += ["", "{}", "[]", "null", "{\"factory_id\": \"x\"", "{\"factory_id\": \"x\", \"registration_status\": \"online\"} trailing",
                 String(repeating: "[", count: 300), "{\"factory_id\": \"a\", \"registration_status\": \"online\", \"metadata\": "
                    + String(repeating: "[", count: 300) + String(repeating: "]", count: 300) + "}"]
        return docs.map { Array($0.utf8) }
    }

    @Test func agreesWithTheStrictParser() {
        for doc in Self.documents {
            #expect(FleetEntry.read(doc) == Self.strict(doc), "\(String(decoding: doc.prefix(120), as: UTF8.self))")
        }
        #expect(FleetEntry.read(Array(JSONValue.object(Self.base).pythonJSON.utf8))?.lastSeenAt == 1_700_000_000.25)
        // Without capabilities (the table's read): everything else the same.
        for doc in Self.documents {
            var expected = Self.strict(doc)
            expected?.capabilities = []
            #expect(FleetEntry.read(doc, capabilities: false) == expected)
        }
    }

    /// With `progress` (what `publish --wait` reads each round): `started_at` and the job fields of
    /// `metadata` too, as the strict parser reads them, and the scanner steps aside when unsure.
    @Test func theProgressReadAgreesWithTheStrictParser() {
        var working = Self.base
        working["metadata"] = .object(["current_job_id": .string("update-0123456789ab"), "soak_seconds_left": .int(12),
                                       "splay_seconds_left": .double(3.5), "other": .array([.null])])
        var docs = Self.documents + [Array(JSONValue.object(working).pythonJSON.utf8)]
        for odd: JSONValue in [.object(["current_job_id": .int(3)]), .object(["soak_seconds_left": .string("x")]), .string("m"),
                               .object(["current_job_id": .null, "splay_seconds_left": .double(1e300)])] {
            working["metadata"] = odd
            docs.append(Array(JSONValue.object(working).pythonJSON.utf8))
        }
        let strict = { (doc: [UInt8]) in (try? JSONValue.parse(bytes: doc)).flatMap(Registration.init(json:)).map(FleetEntry.withProgress) }
        let disagree = docs.filter { FleetEntry.read($0, progress: true) != strict($0) }
        let read = FleetEntry.read(docs[Self.documents.count], progress: true)
        #expect(disagree.isEmpty && read?.currentJobID == "update-0123456789ab" && read?.soakSecondsLeft == 12 && read?.splaySecondsLeft == 3.5
                && read?.startedAt == 1, "\(disagree.map { String(decoding: $0.prefix(160), as: UTF8.self) })")
    }

    @Test func invalidUTF8AnywhereIsRefused() {
        var doc = Array(JSONValue.object(Self.base).pythonJSON.utf8)
        // Inside the skipped metadata: the fast path must not let it through.
        let at = doc.firstIndex(of: UInt8(ascii: "/"))!
        doc[at] = 0xFF
        #expect(FleetEntry.read(doc) == nil)
        #expect(Self.strict(doc) == nil)
    }

    @Test func utf8CheckMatchesTheStandardLibrary() {
        var samples: [[UInt8]] = [[], [0x41], [0xC2, 0x80], [0xC1, 0xBF], [0xE0, 0x9F, 0x80], [0xE0, 0xA0, 0x80], [0xED, 0xA0, 0x80],
                                  [0xED, 0x9F, 0xBF], [0xF0, 0x8F, 0xBF, 0xBF], [0xF0, 0x90, 0x80, 0x80], [0xF4, 0x90, 0x80, 0x80],
                                  [0xF4, 0x8F, 0xBF, 0xBF], [0xF5, 0x80, 0x80, 0x80], [0xC2], [0xE2, 0x82], [0x80], [0xFF]]
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            let length = Int.random(in: 0...24, using: &generator)
            samples.append((0..<length).map { _ in
                // Mostly ASCII with lead and continuation bytes mixed in, to hit the 8-byte path too.
                Bool.random(using: &generator) ? UInt8.random(in: 0x20...0x7E, using: &generator) : UInt8.random(in: 0x80...0xFF, using: &generator)
            })
        }
        for sample in samples {
            let expected = String(validating: sample, as: UTF8.self) != nil
            let padded = Array(repeating: UInt8(ascii: "a"), count: 9) + sample + Array(repeating: UInt8(ascii: "b"), count: 9)
            #expect(sample.withUnsafeBufferPointer { FleetEntry.isValidUTF8($0) } == expected, "\(sample)")
            #expect(padded.withUnsafeBufferPointer { FleetEntry.isValidUTF8($0) } == expected, "\(sample)")
        }
    }
}
