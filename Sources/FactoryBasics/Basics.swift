// What the other modules would otherwise take from Foundation proper. factoryctl imports only
// FoundationEssentials: full Foundation drags FoundationInternationalization and ICU's ~30 MB
// of data into the static binary, and with them milliseconds of start-up and megabytes of
// relocated, resident pages in every process, the idle consumer included.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Locks: use Mutex and Atomic from Synchronization (no Foundation needed).

/// Seconds on CLOCK_MONOTONIC.
public enum Monotonic {
    public static var now: Double {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1_000_000_000
    }
}

/// Sleeps the calling thread (nanosleep, resumed after signals).
public func sleep(seconds: Double) {
    guard seconds > 0 else { return }
    var request = timespec(tv_sec: Int(seconds), tv_nsec: Int((seconds - Double(Int(seconds))) * 1_000_000_000))
    var remaining = timespec()
    while nanosleep(&request, &remaining) != 0 && errno == EINTR { request = remaining }
}

/// Runs `body` on a new detached thread.
public func detachThread(_ body: @escaping @Sendable () -> Void) {
    final class Box { let body: @Sendable () -> Void; init(_ body: @escaping @Sendable () -> Void) { self.body = body } }
    let box = Unmanaged.passRetained(Box(body)).toOpaque()
    var thread = pthread_t()
    let code = pthread_create(&thread, nil, { raw in
        let box = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
        box.body()
        return nil
    }, box)
    precondition(code == 0, "pthread_create failed: \(code)")
    pthread_detach(thread)
}

/// Standard output and error, written with write(2) (no buffering to lose at exit).
public enum StandardStream {
    public static func output(_ text: String) { write(1, text) }
    public static func error(_ text: String) { write(2, text) }
    public static func output(bytes: [UInt8]) { write(1, bytes) }

    static func write(_ fd: Int32, _ text: String) { write(fd, Array(text.utf8)) }

    static func write(_ fd: Int32, _ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { raw in
                #if canImport(Glibc)
                Glibc.write(fd, raw.baseAddress! + offset, raw.count - offset)
                #else
                Darwin.write(fd, raw.baseAddress! + offset, raw.count - offset)
                #endif
            }
            if written < 0 {
                if errno == EINTR { continue }
                return
            }
            offset += written
        }
    }
}

/// The user's home directory: `$HOME`, else the password database.
public func homeDirectory(environment: [String: String]) -> String {
    if let home = environment["HOME"], !home.isEmpty { return home }
    if let entry = getpwuid(getuid()), let directory = entry.pointee.pw_dir { return String(cString: directory) }
    return "/"
}

extension StringProtocol {
    /// Without leading and trailing whitespace and newlines.
    public var trimmed: String {
        var slice = Substring(self)
        while let first = slice.first, first.isWhitespace { slice.removeFirst() }
        while let last = slice.last, last.isWhitespace { slice.removeLast() }
        return String(slice)
    }

    /// Without leading and trailing `character`s.
    public func trimming(_ character: Character) -> String {
        var slice = Substring(self)
        while slice.first == character { slice.removeFirst() }
        while slice.last == character { slice.removeLast() }
        return String(slice)
    }

    /// The last path component ("/a/b" → "b").
    public var lastPathComponent: String {
        let trimmed = String(self).trimmingTrailingSlashes
        guard let slash = trimmed.lastIndex(of: "/") else { return trimmed }
        return String(trimmed[trimmed.index(after: slash)...])
    }

    /// The path without its last component ("/a/b" → "/a", "b" → "", "/a" → "/").
    public var deletingLastPathComponent: String {
        let trimmed = String(self).trimmingTrailingSlashes
        guard let slash = trimmed.lastIndex(of: "/") else { return "" }
        return slash == trimmed.startIndex ? "/" : String(trimmed[..<slash])
    }

    private var trimmingTrailingSlashes: String {
        var text = String(self)
        while text.count > 1, text.hasSuffix("/") { text.removeLast() }
        return text
    }

    /// Percent-decoded (`%41` → `A`); nil for a malformed escape or bytes that are not UTF-8.
    public var removingPercentEncoding: String? {
        var bytes: [UInt8] = []
        var iterator = self.utf8.makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else { bytes.append(byte); continue }
            guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else { return nil }
            bytes.append(high << 4 | low)
        }
        return String(validating: bytes, as: UTF8.self)
    }

    /// Percent-encoded: every byte outside A-Z a-z 0-9 - . _ ~ becomes `%XX`.
    public var percentEncodedStrict: String {
        var out = ""
        for byte in self.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                out += "%" + hex2(byte).uppercased()
            }
        }
        return out
    }
}

private func hexValue(_ byte: UInt8) -> UInt8? {
    switch byte {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
    default: nil
    }
}

/// Two lowercase hex digits.
public func hex2(_ byte: UInt8) -> String {
    let digits = Array("0123456789abcdef")
    return String([digits[Int(byte >> 4)], digits[Int(byte & 0xF)]])
}

/// Four lowercase hex digits.
public func hex4(_ value: UInt32) -> String {
    hex2(UInt8(truncatingIfNeeded: value >> 8)) + hex2(UInt8(truncatingIfNeeded: value))
}

extension Double {
    /// Fixed-point text with `decimals` digits after the point (printf's `%.Nf`).
    public func fixed(_ decimals: Int) -> String {
        var buffer = [CChar](repeating: 0, count: 64)
        let count = withVaList([self]) { vsnprintf(&buffer, buffer.count, "%.\(decimals)f", $0) }
        guard count >= 0 else { return "\(self)" }
        func text(_ chars: [CChar]) -> String {
            String(decoding: chars.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        if Int(count) < buffer.count { return text(buffer) }
        var large = [CChar](repeating: 0, count: Int(count) + 1)
        _ = withVaList([self]) { vsnprintf(&large, large.count, "%.\(decimals)f", $0) }
        return text(large)
    }
}

/// Levenshtein distance, for "did you mean" suggestions.
public enum EditDistance {
    public static func between(_ a: String, _ b: String) -> Int {
        let a = Array(a.unicodeScalars), b = Array(b.unicodeScalars)
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var previous = Array(0...b.count)
        var current = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            current[0] = i
            for j in 1...b.count {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            swap(&previous, &current)
        }
        return previous[b.count]
    }
}

/// `&`, `<` and `>` as entities (and, with `quotes`, `"` and `'`): HTML text and attributes, and
/// the plain text of Slack's and Mattermost's messages (where `<…>` makes links and mentions).
/// With `foldingLines`, line breaks and tabs become spaces (one-line texts).
public func escapingMarkup(_ text: String, quotes: Bool = true, foldingLines: Bool = false) -> String {
    var out = ""
    for character in text {
        switch character {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"" where quotes: out += "&quot;"
        case "'" where quotes: out += "&#39;"
        case "\n", "\r", "\r\n", "\t" where foldingLines: out += " "
        default: out.append(character)
        }
    }
    return out
}

/// A time or count a peer wrote, as a whole number that cannot trap: `Int(Double)` kills the
/// process for values out of range (a registration's `last_seen_at` of -1e300), so anything a
/// factory writes goes through here. Not finite → 0; beyond ±10^15 → clamped.
public func wholeNumber(_ value: Double) -> Int {
    guard value.isFinite else { return 0 }
    return Int(max(-1e15, min(1e15, value.rounded(.towardZero))))
}

/// A Unix time a peer wrote, kept only when it is plausible (0 … 10^11 s, year 5138): anything
/// else reads as 0 (never seen), so arithmetic on it stays in range.
public func plausibleTimestamp(_ value: Double) -> Double {
    value.isFinite && value >= 0 && value <= 1e11 ? value : 0
}
