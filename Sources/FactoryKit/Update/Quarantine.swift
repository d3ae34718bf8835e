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
        /// An `UpdateFailure` value (kept as text: one written by a newer factoryctl still counts).
        public var failure: String
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

    /// Largest file read: the newest `limit` entries take a few tens of KiB.
    static let maximumBytes = 1 << 20

    /// Newest first. Entries that cannot be read are skipped one by one.
    public func entries() -> [Entry] {
        read().entries
    }

    /// The entries, and whether the file is unreadable as a whole (not a regular file, larger
    /// than `maximumBytes`, not a JSON array). With `moveAside`, such a file is renamed to
    /// `quarantine.json.corrupt` (not overwritten by the next entry: what it said is kept).
    public func read(moveAside: Bool = false) -> (entries: [Entry], corrupt: Bool) {
        var info = stat()
        guard lstat(path, &info) == 0 else { return ([], false) }
        guard (info.st_mode & S_IFMT) == S_IFREG, info.st_size <= Self.maximumBytes,
              let data = FileManager.default.contents(atPath: path),
              let items = (try? JSONDecoder().decode([Lenient].self, from: data)) else {
            if moveAside { rename(path, path + ".corrupt") }
            return ([], true)
        }
        return (items.compactMap(\.entry).sorted { $0.failedAt > $1.failedAt }, false)
    }

    /// One array element: an entry, or nothing when it is not one.
    private struct Lenient: Decodable {
        let entry: Entry?
        init(from decoder: Decoder) throws {
            entry = try? Entry(from: decoder)
        }
    }

    public func entry(for commit: ObjectID) -> Entry? {
        entries().first { $0.commit == commit.hex }
    }

    /// Records (or refreshes) `commit`'s entry.
    public func add(_ entry: Entry) throws {
        var all = read(moveAside: true).entries.filter { $0.commit != entry.commit }
        all.insert(entry, at: 0)
        try write(Array(all.prefix(Self.limit)))
    }

    /// Forgets `commits` (they succeeded here after all). Returns whether one was quarantined.
    @discardableResult
    public func remove(_ commits: [ObjectID]) throws -> Bool {
        let hexes = Set(commits.map(\.hex))
        let all = entries()
        guard all.contains(where: { hexes.contains($0.commit) }) else { return false }
        try write(all.filter { !hexes.contains($0.commit) })
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
        "failed here at \(Self.format(failedAt)) (\(failure)\(jobID.map { ", job \($0)" } ?? ""): \(reason.prefix(300)))"
    }

    static func format(_ time: Double) -> String {
        var seconds = time_t(time)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday)) \(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) UTC"
    }
}
