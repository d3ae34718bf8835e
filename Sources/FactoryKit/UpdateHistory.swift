import Foundation

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

    /// Appends `report`, trimming old entries; written to a temp file then renamed.
    public func append(_ report: UpdateReport) throws {
        let directory = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var lines = (FileManager.default.contents(atPath: path) ?? Data())
            .split(separator: UInt8(ascii: "\n")).map { Data($0) }
        lines.append(try JSONEncoder.factory.encode(report))
        if lines.count > limit { lines.removeFirst(lines.count - limit) }
        var data = Data()
        for line in lines {
            data.append(line)
            data.append(UInt8(ascii: "\n"))
        }
        let temporary = path + ".tmp.\(getpid())"
        try data.write(to: URL(fileURLWithPath: temporary))
        guard rename(temporary, path) == 0 else {
            let code = errno
            unlink(temporary)
            throw FactoryError.failed("could not write \(path): \(String(cString: strerror(code)))")
        }
    }
}
