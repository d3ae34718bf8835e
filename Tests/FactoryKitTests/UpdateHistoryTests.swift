import FactoryKit
import Foundation
import Testing
import TestSupport

/// The history is appended line by line and trimmed only now and then.
@Suite struct UpdateHistoryTests {
    func report(_ number: Int) -> UpdateReport {
        var report = UpdateReport(branch: "main")
        report.jobID = "update-\(number)"
        report.status = .success
        return report
    }

    @Test func appendsKeepOrderAndTrimToTheNewest() throws {
        let directory = TemporaryDirectory()
        let history = UpdateHistory(gitDirectory: directory.path, limit: 10)
        for number in 1...200 { try history.append(report(number)) }
        let entries = history.entries()
        // Never more than the trim threshold holds, never fewer than the limit, newest last.
        #expect(entries.count >= 10)
        let size = (try FileManager.default.attributesOfItem(atPath: history.path)[.size] as? Int) ?? .max
        #expect(size <= 10 * 1024 + 1024)
        #expect(entries.last?.jobID == "update-200")
        let numbers = entries.compactMap { $0.jobID.flatMap { Int($0.dropFirst("update-".count)) } }
        #expect(numbers == Array((201 - numbers.count)...200))
    }

    @Test func tornLastLineIsSkippedAndDoesNotSwallowTheNext() throws {
        let directory = TemporaryDirectory()
        let history = UpdateHistory(gitDirectory: directory.path)
        try history.append(report(1))
        // A writer killed mid-line leaves half a JSON object without a newline.
        let handle = try #require(FileHandle(forWritingAtPath: history.path))
        handle.seekToEndOfFile()
        handle.write(Data("{\"branch\":\"main\",\"stat".utf8))
        try handle.close()
        try history.append(report(2))
        #expect(history.entries().map(\.jobID) == ["update-1", "update-2"])
        #expect(history.entry(forJob: "update-2") != nil)
    }
}
