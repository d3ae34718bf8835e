import FoundationEssentials
import Dispatch
import FactoryBasics
import Glibc

/// The outcomes of past updates, one JSON object a line in `.git/factoryctl/history.jsonl`
/// (inside `.git`, never in the work tree). Keeps the newest `limit` entries.
public struct UpdateHistory: Sendable {
    public let path: String
    public let limit: Int

    public init(gitDirectory: String, limit: Int = 200) {
        path = gitDirectory + "/factoryctl/history.jsonl"
        self.limit = limit
    }

    public func entries() -> [UpdateReport] {
        guard let data = FileManager.default.contents(atPath: path) else { return [] }
        let decoder = JSONDecoder()
        return data.split(separator: UInt8(ascii: "\n")).compactMap { try? decoder.decode(UpdateReport.self, from: Data($0)) }
    }

    public var last: UpdateReport? { entries().last }

    /// The newest entry recorded for a mission's job id.
    public func entry(forJob jobID: String) -> UpdateReport? {
        entries().last { $0.jobID == jobID }
    }

    /// Appends `report` as one line (one `write` on an O_APPEND descriptor: no rewrite of the
    /// file per update). Once the file passes `trimSize`, it is rewritten with the newest
    /// `limit` entries (temp file, then rename). A torn last line (a kill mid-write) is skipped
    /// by `entries()`.
    public func append(_ report: UpdateReport) throws {
        let directory = path.deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var line = Array(try JSONEncoder.factory.encode(report))
        line.append(UInt8(ascii: "\n"))
        // A torn line left by a killed writer must not swallow this one.
        if let last = lastByte(), last != UInt8(ascii: "\n") { line.insert(UInt8(ascii: "\n"), at: 0) }
        let size = try FileWriting.append(path, line)
        try? UpdateCounts(gitDirectory: path.deletingLastPathComponent.deletingLastPathComponent).increment(succeeded: report.status == .success)
        guard size > trimSize else { return }
        let lines = (FileManager.default.contents(atPath: path) ?? Data()).split(separator: UInt8(ascii: "\n"))
        var kept: [UInt8] = []
        for line in lines.suffix(limit) {
            kept += line
            kept.append(UInt8(ascii: "\n"))
        }
        try FileWriting.replace(path, with: kept)
    }

    /// Rewrite-and-trim threshold: about `limit` entries of a few hundred bytes, twice over.
    var trimSize: Int { limit * 1024 }

    private func lastByte() -> UInt8? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var byte: UInt8 = 0
        guard lseek(fd, -1, SEEK_END) >= 0, read(fd, &byte, 1) == 1 else { return nil }
        return byte
    }
}
