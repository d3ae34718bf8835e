import CCurl
import Glibc

/// A failed HTTP exchange: no answer arrived (connect, TLS, timeout, a refused scheme), in
/// libcurl's own words.
public struct HTTPError: Error, CustomStringConvertible, Sendable, Equatable {
    public let message: String
    public var description: String { message }
}

/// The Swift owner of libcurl, which is loaded with dlopen on first use (processes that never
/// talk HTTP never map it). Every call is one easy handle, created and freed inside the C
/// helper: nothing of libcurl escapes this module. Only http and https; no redirects.
public enum HTTPClient {
    /// POSTs `body` with `headers` ("Name: value"); returns the HTTP status of the answer.
    public static func post(_ url: String, headers: [String], body: [UInt8], timeout: Double) throws(HTTPError) -> Int {
        var status = 0
        var error = [CChar](repeating: 0, count: 512)
        let code = withCStrings(headers) { headerPointers in
            body.withUnsafeBufferPointer { bytes in
                bytes.withMemoryRebound(to: CChar.self) { pointer in
                    factoryctl_http_post(url, headerPointers, Int32(headers.count), pointer.baseAddress, body.count,
                                         milliseconds(timeout), &status, &error, Int32(error.count))
                }
            }
        }
        guard code == 0 else { throw HTTPError(message: text(error)) }
        return status
    }

    /// GETs `url` (the body is discarded); returns the HTTP status of the answer.
    public static func get(_ url: String, timeout: Double) throws(HTTPError) -> Int {
        var status = 0
        var error = [CChar](repeating: 0, count: 256)
        let code = factoryctl_http_get(url, milliseconds(timeout), &status, &error, Int32(error.count))
        guard code == 0 else { throw HTTPError(message: text(error)) }
        return status
    }

    private static func milliseconds(_ seconds: Double) -> Int {
        Int(max(1, seconds * 1000))
    }

    private static func text(_ buffer: [CChar]) -> String {
        let message = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return message.isEmpty ? "the request failed" : message
    }

    /// Calls `body` with a C array of NUL-terminated copies of `strings` (valid only during the call).
    private static func withCStrings<R>(_ strings: [String], _ body: ([UnsafePointer<CChar>?]) -> R) -> R {
        let copies = strings.map { strdup($0) }
        defer { copies.forEach { free($0) } }
        return body(copies.map { UnsafePointer($0) })
    }
}
