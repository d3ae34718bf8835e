import FactoryBasics
import FoundationEssentials
import Glibc
import Logging

/// Log lines for the systemd journal: when stderr *is* the journal (systemd sets JOURNAL_STREAM
/// to the device and inode of the stream it connected, and stderr is that stream), each line
/// starts with its syslog priority (`<3>` error … `<7>` debug, which journald turns into the
/// entry's PRIORITY) and carries no timestamp of our own (the journal keeps its own).
public struct JournalLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public let label: String

    public init(label: String) {
        self.label = label
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    /// Whether stderr is the journal stream named by `JOURNAL_STREAM` ("device:inode").
    public static func stderrIsJournal(environment: [String: String]) -> Bool {
        guard let value = environment["JOURNAL_STREAM"] else { return false }
        let parts = value.split(separator: ":")
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else { return false }
        var info = stat()
        guard fstat(STDERR_FILENO, &info) == 0 else { return false }
        return UInt64(info.st_dev) == device && UInt64(info.st_ino) == inode
    }

    /// syslog priorities (sd-daemon.h's SD_ERR … SD_DEBUG).
    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .critical: 2
        case .error: 3
        case .warning: 4
        case .notice: 5
        case .info: 6
        case .debug, .trace: 7
        }
    }

    public func log(event: LogEvent) {
        var fields = metadata
        if let extra = event.metadata { fields.merge(extra) { $1 } }
        let rendered = fields.isEmpty ? "" : " " + fields.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        // One line per entry: a message with newlines would otherwise become several entries.
        let message = "\(event.message)".replacing("\n", with: " ")
        StandardStream.error("<\(Self.priority(event.level))>\(label):\(rendered) [\(event.source)] \(message)\n")
    }
}
