import FactoryKit
import Foundation
import Testing
import TestSupport

/// The strict JSON parser: what Python's json module reads, re-written byte for byte, numbers
/// keeping their kind, and hostile input refused.
@Suite struct JSONParserTests {
    static let corpus = [
        #"{"a": 1.0, "b": 1, "c": -0.0, "d": 2.5, "e": 1e3, "f": 1E-7, "g": 12345678901234567}"#,
        #"{"s": "caf\u00e9 \ud83d\ude00 \n\t\"q\" \\ \/", "u": "日本", "n": null, "t": true, "f": false}"#,
        #"[[], {}, [[1, [2, [3]]]], {"z": {"y": {"x": []}}}]"#,
        #"  {"k" : [ 1 , 2 ] }  "#,
        #"{"dup": 1, "dup": 2}"#,
        #"-12"#, #""only a string""#, "0.1", "1.7976931348623157e308",
    ]

    @Test(arguments: corpus)
    func reEncodingMatchesPythonByteForByte(text: String) throws {
        let python = try Command.run(["python3", "-c", "import json,sys; print(json.dumps(json.loads(sys.stdin.read()), sort_keys=True), end='')"],
                                     input: text)
        let parsed = try JSONValue.parse(bytes: Array(text.utf8))
        #expect(parsed.pythonJSON == python.stdout, "\(text)")
    }

    @Test func integersAndFloatsStayApart() throws {
        #expect(try JSONValue.parse(bytes: Array("1.0".utf8)) == .double(1))
        #expect(try JSONValue.parse(bytes: Array("1".utf8)) == .int(1))
        #expect(try JSONValue.parse(bytes: Array("1e0".utf8)) == .double(1))
        #expect(try JSONValue.parse(bytes: Array("[1.0]".utf8)).pythonJSON == "[1.0]")
    }

    @Test(arguments: [
        [0xFF, 0xFE], Array(#"{"a": "\#u{0}"}"#.utf8), Array(#""\udcff""#.utf8), Array(#""\ud83d""#.utf8),
        Array("{\"a\": 1,}".utf8), Array("[1 2]".utf8), Array("01".utf8), Array("1.".utf8), Array("-".utf8),
        Array("NaN".utf8), Array("1e400".utf8), Array("{\"a\" 1}".utf8), Array("\"\\x\"".utf8), Array("[".utf8),
        Array("".utf8), Array("true false".utf8), Array("100000000000000000000".utf8), Array(#""a\#n""#.utf8),
        Array(#"{"branch": ""#.utf8) + [0xC3, 0x28] + Array(#""}"#.utf8),
    ] as [[UInt8]])
    func hostileInputIsRefused(bytes: [UInt8]) {
        #expect(throws: JSONValue.ParseError.self) { try JSONValue.parse(bytes: bytes) }
    }

    @Test func nestingIsBounded() throws {
        let ok = String(repeating: "[", count: 200) + String(repeating: "]", count: 200)
        #expect(throws: Never.self) { try JSONValue.parse(bytes: Array(ok.utf8)) }
        let deep = String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
        #expect(throws: JSONValue.ParseError.self) { try JSONValue.parse(bytes: Array(deep.utf8)) }
    }
}
