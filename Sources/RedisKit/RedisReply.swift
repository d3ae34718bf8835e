import FoundationEssentials

/// A typed Redis reply. Error replies are thrown as `RedisError.reply`, never returned.
public enum RedisReply: Sendable, Equatable {
    case string(Data)
    case status(String)
    case integer(Int64)
    case array([RedisReply])
    case null

    /// Bulk or status text as UTF-8.
    public var text: String? {
        switch self {
        case .string(let data): String(decoding: data, as: UTF8.self)
        case .status(let text): text
        case .integer(let value): String(value)
        default: nil
        }
    }

    public var integer: Int64? {
        switch self {
        case .integer(let value): value
        case .string, .status: text.flatMap { Int64($0) }
        default: nil
        }
    }

    public var array: [RedisReply]? {
        if case .array(let items) = self { return items }
        return nil
    }

    public var isNull: Bool { self == .null }

    /// A flat `[field, value, field, value]` array as a dictionary (HGETALL, stream entry fields).
    public var fieldMap: [String: String]? {
        guard let items = array, items.count % 2 == 0 else { return nil }
        var map: [String: String] = [:]
        for index in stride(from: 0, to: items.count, by: 2) {
            guard let key = items[index].text, let value = items[index + 1].text else { return nil }
            map[key] = value
        }
        return map
    }
}
