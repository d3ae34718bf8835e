/// Errors from RedisKit. `isConnectionError` tells a broken link (reconnect) from a refused command.
public enum RedisError: Error, CustomStringConvertible, Sendable, Equatable {
    case invalidURL(String)
    /// Could not connect, or the connection broke (I/O error, EOF, timeout).
    case connection(String)
    /// The server answered with an error reply (`ERR ...`, `BUSYGROUP ...`, `NOAUTH ...`).
    case reply(String)
    /// The reply did not have the expected shape.
    case unexpectedReply(String)

    public var description: String {
        switch self {
        case .invalidURL(let text): "invalid Redis URL: \(text)"
        case .connection(let text): "Redis connection: \(text)"
        case .reply(let text): "Redis error: \(text)"
        case .unexpectedReply(let text): "unexpected Redis reply: \(text)"
        }
    }

    public var isConnectionError: Bool {
        if case .connection = self { return true }
        return false
    }

    /// The error code of a reply error ("BUSYGROUP", "NOGROUP", "WRONGPASS").
    public var replyCode: String? {
        if case .reply(let text) = self { return text.split(separator: " ").first.map(String.init) }
        return nil
    }
}
