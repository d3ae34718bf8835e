import FoundationEssentials
import FactoryBasics
import Glibc

/// A factory's maintenance window (`UA_FACTORY_UPDATE_WINDOW`): when update missions may run,
/// in the factory's local time (`TZ`). Outside it a mission is deferred until it opens.
///
/// Syntax: spans separated by commas, each `[DAYS ]START-END`:
/// - `START`/`END` are `HH:MM` or `HH:MM:SS` (24-hour; `END` may be `24:00`). An end at or before
///   the start crosses midnight: `22:00-02:00` is 22:00 until 02:00 the next day, and belongs to
///   the day it starts on.
/// - `DAYS` is a day (`Mon` … `Sun`, any case) or a range (`Mon-Fri`, `Fri-Mon` wraps); several
///   are joined by commas (`Mon,Wed 02:00-04:00`). No days: every day.
///
/// Example: `Mon-Fri 02:00-04:00,Sat 10:00-12:00`. Times are wall-clock times: `02:00-04:00` is
/// 02:00 to 04:00 local time in winter and in summer alike.
public struct UpdateWindow: Sendable, Equatable, CustomStringConvertible {
    /// One span: on `days` (0 = Sunday … 6 = Saturday), from `start` for `length` seconds of wall-clock time.
    public struct Span: Sendable, Equatable {
        public var days: Set<Int>
        /// Seconds after midnight, 0..<86400.
        public var start: Int
        /// Seconds after midnight, 1...86400; at or before `start`: the next day.
        public var end: Int
        public var crossesMidnight: Bool { end <= start }

        public init(days: Set<Int>, start: Int, end: Int) {
            self.days = days
            self.start = start
            self.end = end
        }
    }

    public let spans: [Span]
    /// The text it was parsed from (trimmed).
    public let text: String

    public var description: String { text }

    public struct ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        public let message: String
        public var description: String { message }
    }

    static let dayNames = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
    /// Longest text accepted (an environment variable, not a calendar).
    static let maximumLength = 512

    /// Parses `text`; the error says which part is wrong and what is expected.
    public init(_ text: String) throws(ParseError) {
        let trimmed = text.trimmed
        guard !trimmed.isEmpty else { throw ParseError(message: "the window is empty") }
        guard trimmed.utf8.count <= Self.maximumLength else { throw ParseError(message: "the window is longer than \(Self.maximumLength) characters") }
        var spans: [Span] = []
        var pendingDays = Set<Int>()
        var pendingText: [String] = []
        for rawPart in trimmed.split(separator: ",", omittingEmptySubsequences: false) {
            let part = String(rawPart).trimmed
            guard !part.isEmpty else { throw ParseError(message: "there is an empty part between commas") }
            let words = part.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
            if words.count == 1, !words[0].contains(":") {
                // Days alone ("Mon" in "Mon,Wed 02:00-04:00"): they go with the next span's times.
                pendingDays.formUnion(try Self.days(words[0]))
                pendingText.append(words[0])
                continue
            }
            guard words.count <= 2 else { throw ParseError(message: "part '\(part.prefix(40))' is not '[DAYS ]HH:MM-HH:MM'") }
            var days = pendingDays
            if words.count == 2 { days.formUnion(try Self.days(words[0])) }
            let (start, end) = try Self.times(words[words.count - 1])
            spans.append(Span(days: days.isEmpty ? Set(0...6) : days, start: start, end: end))
            pendingDays = []
            pendingText = []
        }
        guard pendingText.isEmpty else {
            throw ParseError(message: "ends with days (\(pendingText.joined(separator: ","))) but no times: add HH:MM-HH:MM")
        }
        self.spans = spans
        self.text = trimmed
    }

    /// `Mon`, or `Mon-Fri` (wrapping: `Fri-Mon`).
    static func days(_ word: String) throws(ParseError) -> Set<Int> {
        let ends = word.split(separator: "-", omittingEmptySubsequences: false).map { $0.lowercased() }
        guard ends.count <= 2 else { throw ParseError(message: "'\(word.prefix(40))' is not a day (Mon … Sun) or a range (Mon-Fri)") }
        var indices: [Int] = []
        for name in ends {
            guard let index = dayNames.firstIndex(of: name) else {
                throw ParseError(message: "'\(name.prefix(20))' is not a day: use Mon, Tue, Wed, Thu, Fri, Sat or Sun")
            }
            indices.append(index)
        }
        guard indices.count == 2 else { return [indices[0]] }
        var result = Set<Int>()
        var day = indices[0]
        while true {
            result.insert(day)
            if day == indices[1] { break }
            day = (day + 1) % 7
        }
        return result
    }

    /// `HH:MM[:SS]-HH:MM[:SS]`.
    static func times(_ word: String) throws(ParseError) -> (Int, Int) {
        let ends = word.split(separator: "-", omittingEmptySubsequences: false).map(String.init)
        guard ends.count == 2 else { throw ParseError(message: "'\(word.prefix(40))' is not a time span: use HH:MM-HH:MM (e.g. 02:00-04:00)") }
        let start = try clock(ends[0], allowMidnightEnd: false)
        let end = try clock(ends[1], allowMidnightEnd: true)
        guard start != end else {
            throw ParseError(message: "'\(word)' is empty (start and end are the same time); for the whole day use 00:00-24:00")
        }
        return (start, end)
    }

    /// `HH:MM` or `HH:MM:SS` as seconds after midnight (`24:00` only as an end).
    static func clock(_ text: String, allowMidnightEnd: Bool) throws(ParseError) -> Int {
        let fields = text.split(separator: ":", omittingEmptySubsequences: false)
        let bad = ParseError(message: "'\(text.prefix(20))' is not a time: use HH:MM or HH:MM:SS (24-hour)")
        guard (2...3).contains(fields.count), fields.allSatisfy({ $0.utf8.count == 2 && $0.utf8.allSatisfy { (48...57).contains($0) } }) else {
            throw bad
        }
        let values = fields.compactMap { Int($0) }
        let (hour, minute, second) = (values[0], values[1], values.count == 3 ? values[2] : 0)
        if allowMidnightEnd, hour == 24, minute == 0, second == 0 { return 86_400 }
        guard hour < 24, minute < 60, second < 60 else { throw bad }
        return hour * 3600 + minute * 60 + second
    }
}

// MARK: Evaluation

/// Local wall-clock time, as the C library sees it for the process's `TZ`.
public struct LocalDate: Sendable, Equatable {
    public var year: Int
    /// 1...12.
    public var month: Int
    public var day: Int
    /// 0 = Sunday … 6 = Saturday.
    public var weekday: Int
    /// Seconds after local midnight.
    public var secondOfDay: Int

    public init(year: Int, month: Int, day: Int, weekday: Int, secondOfDay: Int) {
        self.year = year
        self.month = month
        self.day = day
        self.weekday = weekday
        self.secondOfDay = secondOfDay
    }
}

/// Turns instants into local dates and back. `SystemClock` is the C library's (`localtime_r`,
/// `mktime`, the process's `TZ`); tests may bring another zone's rules.
public protocol LocalClock: Sendable {
    /// The local date and time of `instant` (seconds since the epoch).
    func local(_ instant: Double) -> LocalDate
    /// The instant of wall-clock `secondOfDay` on the date `days` after `date` (a wall-clock
    /// time skipped by a DST change gives the instant the C library's `mktime` gives).
    func instant(on date: LocalDate, plusDays days: Int, at secondOfDay: Int) -> Double
}

/// The C library's local time for the process's `TZ`.
public struct SystemClock: LocalClock {
    public init() {}

    public func local(_ instant: Double) -> LocalDate {
        var time = time_t(instant.rounded(.down))
        var parts = tm()
        localtime_r(&time, &parts)
        return LocalDate(year: Int(parts.tm_year) + 1900, month: Int(parts.tm_mon) + 1, day: Int(parts.tm_mday),
                         weekday: Int(parts.tm_wday),
                         secondOfDay: Int(parts.tm_hour) * 3600 + Int(parts.tm_min) * 60 + Int(parts.tm_sec))
    }

    public func instant(on date: LocalDate, plusDays days: Int, at secondOfDay: Int) -> Double {
        var parts = tm()
        parts.tm_year = Int32(date.year - 1900)
        parts.tm_mon = Int32(date.month - 1)
        parts.tm_mday = Int32(date.day + days)
        parts.tm_hour = Int32(secondOfDay / 3600)
        parts.tm_min = Int32(secondOfDay / 60 % 60)
        parts.tm_sec = Int32(secondOfDay % 60)
        parts.tm_isdst = -1
        return Double(mktime(&parts))
    }
}

extension UpdateWindow {
    /// The interval of `span` on the date `days` after `date`, if the span is on that day.
    func interval(_ span: Span, on date: LocalDate, plusDays days: Int, clock: LocalClock) -> Range<Double>? {
        guard span.days.contains(((date.weekday + days) % 7 + 7) % 7) else { return nil }
        let start = clock.instant(on: date, plusDays: days, at: span.start)
        let endDays = days + (span.crossesMidnight || span.end == 86_400 ? 1 : 0)
        let end = clock.instant(on: date, plusDays: endDays, at: span.end % 86_400)
        guard end > start else { return nil }
        return start..<end
    }

    /// Whether updates may run at `instant`.
    public func isOpen(at instant: Double, clock: LocalClock = SystemClock()) -> Bool {
        let today = clock.local(instant)
        // Yesterday's spans that cross midnight reach into today.
        for days in [-1, 0] {
            for span in spans {
                if let range = interval(span, on: today, plusDays: days, clock: clock), range.contains(instant) { return true }
            }
        }
        return false
    }

    /// When the window is next open at or after `instant`: `instant` itself while it is open,
    /// else the next opening (within the next eight days: every window opens at least weekly).
    public func nextOpening(after instant: Double, clock: LocalClock = SystemClock()) -> Double {
        if isOpen(at: instant, clock: clock) { return instant }
        let today = clock.local(instant)
        var best: Double?
        for days in 0...8 {
            for span in spans {
                guard let range = interval(span, on: today, plusDays: days, clock: clock), range.lowerBound > instant else { continue }
                best = min(best ?? range.lowerBound, range.lowerBound)
            }
            if best != nil { break }
        }
        return best ?? instant + 7 * 86_400
    }

    /// When the window that is open at `instant` closes (nil when it is closed).
    public func closing(after instant: Double, clock: LocalClock = SystemClock()) -> Double? {
        let today = clock.local(instant)
        var latest: Double?
        for days in [-1, 0] {
            for span in spans {
                guard let range = interval(span, on: today, plusDays: days, clock: clock), range.contains(instant) else { continue }
                latest = max(latest ?? range.upperBound, range.upperBound)
            }
        }
        return latest
    }

    /// `2026-12-08 02:00:00 +0100`: an instant in the factory's local time, for messages and the registration.
    public static func localText(_ instant: Double) -> String {
        var time = time_t(instant.rounded(.down))
        var parts = tm()
        localtime_r(&time, &parts)
        var buffer = [CChar](repeating: 0, count: 64)
        let count = strftime(&buffer, buffer.count, "%Y-%m-%d %H:%M:%S %z", &parts)
        return String(decoding: buffer.prefix(count).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
