import FactoryKit
import Foundation
import Testing

/// A zone's rules from Foundation's time zone database, so the window's arithmetic is checked
/// in a zone with DST (Europe/Berlin) without changing this process's `TZ`.
struct ZoneClock: LocalClock {
    let zone: TimeZone

    init(_ identifier: String) {
        zone = TimeZone(identifier: identifier)!
    }

    var calendar: Calendar {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = zone
        return calendar
    }

    func local(_ instant: Double) -> LocalDate {
        let parts = calendar.dateComponents([.year, .month, .day, .weekday, .hour, .minute, .second], from: Date(timeIntervalSince1970: instant))
        return LocalDate(year: parts.year!, month: parts.month!, day: parts.day!, weekday: parts.weekday! - 1,
                         secondOfDay: parts.hour! * 3600 + parts.minute! * 60 + parts.second!)
    }

    func instant(on date: LocalDate, plusDays days: Int, at secondOfDay: Int) -> Double {
        let noon = calendar.date(from: DateComponents(year: date.year, month: date.month, day: date.day, hour: 12))!
        let day = calendar.dateComponents([.year, .month, .day], from: calendar.date(byAdding: .day, value: days, to: noon)!)
        let time = DateComponents(year: day.year, month: day.month, day: day.day, hour: secondOfDay / 3600,
                                  minute: secondOfDay / 60 % 60, second: secondOfDay % 60)
        return calendar.date(from: time)!.timeIntervalSince1970
    }

    /// The instant of a local wall-clock time in this zone.
    func at(_ year: Int, _ month: Int, _ day: Int, _ hour: Int, _ minute: Int, _ second: Int = 0) -> Double {
        calendar.date(from: DateComponents(year: year, month: month, day: day, hour: hour, minute: minute, second: second))!.timeIntervalSince1970
    }
}

@Suite struct UpdateWindowTests {
    let berlin = ZoneClock("Europe/Berlin")

    @Test func aPlainSpanIsEveryDayAndDaysAndRangesAreParsed() throws {
        let window = try UpdateWindow("Mon-Fri 02:00-04:00,Sat 10:00-12:30:15, mon,wed 22:00-23:00")
        #expect(window.spans == [
            UpdateWindow.Span(days: [1, 2, 3, 4, 5], start: 7200, end: 14_400),
            UpdateWindow.Span(days: [6], start: 36_000, end: 45_015),
            UpdateWindow.Span(days: [1, 3], start: 79_200, end: 82_800),
        ])
        #expect(try UpdateWindow("02:00-04:00").spans == [UpdateWindow.Span(days: Set(0...6), start: 7200, end: 14_400)])
        // A range may wrap the week.
        #expect(try UpdateWindow("Fri-Mon 01:00-02:00").spans[0].days == [5, 6, 0, 1])
        #expect(try UpdateWindow("00:00-24:00").spans[0].end == 86_400)
    }

    @Test(arguments: [
        ("", "the window is empty"),
        ("2:00-4:00", "'2:00' is not a time"),
        ("02:00", "is not a time span"),
        ("02:00-02:00", "is empty (start and end are the same time)"),
        ("25:00-26:00", "'25:00' is not a time"),
        ("02:60-03:00", "'02:60' is not a time"),
        ("24:00-02:00", "'24:00' is not a time"),
        ("Mon-Fry 02:00-04:00", "'fry' is not a day"),
        ("Mon 02:00-04:00,", "there is an empty part between commas"),
        ("02:00-04:00,Sat", "ends with days (Sat) but no times"),
        ("Mon Tue 02:00-04:00", "is not '[DAYS ]HH:MM-HH:MM'"),
        ("Mon-Tue-Wed 02:00-04:00", "is not a day (Mon … Sun) or a range"),
    ])
    func badWindowsAreRefusedSayingWhatIsWrong(text: String, message: String) {
        #expect {
            try UpdateWindow(text)
        } throws: { error in
            "\(error)".contains(message)
        }
    }

    @Test func aWindowIsOpenFromItsStartUntilJustBeforeItsEnd() throws {
        let window = try UpdateWindow("Mon-Fri 02:00-04:00")
        // 2026-12-07 is a Monday.
        #expect(!window.isOpen(at: berlin.at(2026, 12, 7, 1, 59, 59), clock: berlin))
        #expect(window.isOpen(at: berlin.at(2026, 12, 7, 2, 0), clock: berlin))
        #expect(window.isOpen(at: berlin.at(2026, 12, 7, 3, 59, 59), clock: berlin))
        #expect(!window.isOpen(at: berlin.at(2026, 12, 7, 4, 0), clock: berlin))
        // Saturday is not in it; the next opening is Monday 02:00.
        #expect(!window.isOpen(at: berlin.at(2026, 12, 12, 3, 0), clock: berlin))
        #expect(window.nextOpening(after: berlin.at(2026, 12, 12, 3, 0), clock: berlin) == berlin.at(2026, 12, 14, 2, 0))
        #expect(window.closing(after: berlin.at(2026, 12, 7, 3, 0), clock: berlin) == berlin.at(2026, 12, 7, 4, 0))
    }

    @Test func aWindowCrossingMidnightBelongsToTheDayItStarts() throws {
        let window = try UpdateWindow("Fri 22:00-02:00")
        // Friday 2026-12-11 23:30 and Saturday 01:30 are in it; Friday 01:30 (Thursday's night) is not.
        #expect(window.isOpen(at: berlin.at(2026, 12, 11, 23, 30), clock: berlin))
        #expect(window.isOpen(at: berlin.at(2026, 12, 12, 1, 30), clock: berlin))
        #expect(!window.isOpen(at: berlin.at(2026, 12, 12, 2, 0), clock: berlin))
        #expect(!window.isOpen(at: berlin.at(2026, 12, 11, 1, 30), clock: berlin))
        #expect(window.nextOpening(after: berlin.at(2026, 12, 12, 2, 0), clock: berlin) == berlin.at(2026, 12, 18, 22, 0))
        #expect(window.closing(after: berlin.at(2026, 12, 11, 23, 0), clock: berlin) == berlin.at(2026, 12, 12, 2, 0))
    }

    /// Wall-clock times: 02:00-04:00 is 02:00 to 04:00 in Berlin in winter (UTC+1) and summer
    /// (UTC+2) alike, not a fixed UTC span.
    @Test func theWindowFollowsLocalTimeAcrossDaylightSavingTime() throws {
        let window = try UpdateWindow("02:00-04:00")
        let winter = window.nextOpening(after: berlin.at(2026, 1, 15, 12, 0), clock: berlin)
        let summer = window.nextOpening(after: berlin.at(2026, 7, 15, 12, 0), clock: berlin)
        #expect(winter == 1_768_525_200) // 2026-01-16 01:00 UTC
        #expect(summer == 1_784_160_000) // 2026-07-16 00:00 UTC
        // The night the clocks go forward (2026-03-29, 02:00 → 03:00) the window is 03:00-04:00
        // CEST: one hour long, open at 03:30.
        #expect(window.isOpen(at: berlin.at(2026, 3, 29, 3, 30), clock: berlin))
        #expect(window.closing(after: berlin.at(2026, 3, 29, 3, 30), clock: berlin) == berlin.at(2026, 3, 29, 4, 0))
        // The night they go back (2026-10-25, 03:00 → 02:00) 04:00 CET still closes it.
        #expect(window.isOpen(at: berlin.at(2026, 10, 25, 3, 30), clock: berlin))
        #expect(!window.isOpen(at: berlin.at(2026, 10, 25, 4, 0), clock: berlin))
    }

    @Test func secondsInTheSpanOpenTheWindowOnTheSecond() throws {
        let window = try UpdateWindow("10:00:03-10:30")
        #expect(!window.isOpen(at: berlin.at(2026, 12, 7, 10, 0, 2), clock: berlin))
        #expect(window.nextOpening(after: berlin.at(2026, 12, 7, 10, 0, 2), clock: berlin) == berlin.at(2026, 12, 7, 10, 0, 3))
        #expect(window.isOpen(at: berlin.at(2026, 12, 7, 10, 0, 3), clock: berlin))
    }

    /// The C library's clock (the consumer's) agrees with Foundation's in this process's zone.
    @Test func theSystemClockAgreesWithTheCalendarInTheProcessZone() throws {
        let window = try UpdateWindow("Tue,Thu 01:15-01:45")
        let local = ZoneClock(TimeZone.current.identifier)
        let now = Date().timeIntervalSince1970
        #expect(window.nextOpening(after: now) == window.nextOpening(after: now, clock: local))
        #expect(SystemClock().local(now) == local.local(now))
    }
}
