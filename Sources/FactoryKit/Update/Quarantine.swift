import FoundationEssentials
import FactoryBasics
import Glibc
import GitKit

/// Commits that failed on this factory for a reason that is the code's (a service that did not
/// come up, the health gate, the soak), in `.git/factoryctl/quarantine.json`. An update or
/// mission whose target is one of them is refused at planning, before anything moves
/// (`quarantined`, exit 8), so a bad commit is not retried in a loop and cannot bounce through a
/// rollout; `--retry-quarantined` overrides once, and a success clears the entry. Failures of the
/// environment (fetch, a sync that could not reach the index) never quarantine.
public struct Quarantine: Sendable {
    public let gitDirectory: String

    public init(gitDirectory: String) {
        self.gitDirectory = gitDirectory
    }

    public struct Entry: Codable, Sendable, Equatable {
        public var commit: String
        public var failure: UpdateFailure
        public var reason: String
        /// Epoch seconds.
        public var failedAt: Double
        public var jobID: String?

        enum CodingKeys: String, CodingKey {
            case commit, failure, reason
            case failedAt = "failed_at", jobID = "job_id"
        }
    }

    /// The failures that are the code's, and quarantine it.
    public static let codeFailures: Set<UpdateFailure> = [.serviceInactive, .healthCheckFailed, .soakFailed]
    /// The newest entries kept.
    static let limit = 100

    public var path: String { gitDirectory + "/factoryctl/quarantine.json" }

    /// Newest first. A file that cannot be read counts as empty (and is replaced by the next write).
    public func entries() -> [Entry] {
        guard let data = FileManager.default.contents(atPath: path),
              let entries = try? JSONDecoder().decode([Entry].self, from: data) else { return [] }
        return entries.sorted { $0.failedAt > $1.failedAt }
    }

    public func entry(for commit: ObjectID) -> Entry? {
        entries().first { $0.commit == commit.hex }
    }

    /// Records (or refreshes) `commit`'s entry.
    public func add(_ entry: Entry) throws {
        var all = entries().filter { $0.commit != entry.commit }
        all.insert(entry, at: 0)
        try write(Array(all.prefix(Self.limit)))
    }

    /// Forgets `commit` (it succeeded here after all). Returns whether it was quarantined.
    @discardableResult
    public func remove(_ commit: ObjectID) throws -> Bool {
        let all = entries()
        guard all.contains(where: { $0.commit == commit.hex }) else { return false }
        try write(all.filter { $0.commit != commit.hex })
        return true
    }

    private func write(_ entries: [Entry]) throws {
        try FileManager.default.createDirectory(atPath: path.deletingLastPathComponent, withIntermediateDirectories: true)
        try FileWriting.replace(path, with: Array(try JSONEncoder.factory.encode(entries)))
    }
}

extension Quarantine.Entry {
    /// "failed here at 2026-12-06 21:04:05 UTC (health_check_failed: …)".
    public var summary: String {
        "failed here at \(Self.format(failedAt)) (\(failure.rawValue)\(jobID.map { ", job \($0)" } ?? ""): \(reason.prefix(300)))"
    }

    static func format(_ time: Double) -> String {
        var seconds = time_t(time)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday)) \(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) UTC"
    }
}
