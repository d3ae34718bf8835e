import FoundationEssentials
import FactoryBasics

/// Where a Redis server is: `redis://[[user]:password@]host:port/db` (an IPv6 host in brackets),
/// `rediss://…` (the same over TLS, see `RedisTLSOptions`) or
/// `unix://[[user]:password@]/path.sock[?db=N]`. A user name authenticates as that ACL user.
public struct RedisURL: Sendable, Equatable, CustomStringConvertible {
    public enum Endpoint: Sendable, Equatable {
        case tcp(host: String, port: Int)
        case unix(path: String)
    }

    public var endpoint: Endpoint
    public var password: String?
    public var username: String?
    public var database: Int
    /// Set for `rediss://`: the connection runs over TLS (TCP endpoints only).
    public var tls: RedisTLSOptions?

    public init(endpoint: Endpoint, password: String? = nil, username: String? = nil, database: Int = 0,
                tls: RedisTLSOptions? = nil) {
        self.endpoint = endpoint
        self.password = password
        self.username = username
        self.database = database
        self.tls = tls
    }

    /// Parses `text`; a `rediss://` URL connects with `tls` (default: the system CA bundle, no
    /// client certificate). `tls` is not used for the other schemes.
    public init(_ text: String, tls: RedisTLSOptions = RedisTLSOptions()) throws(RedisError) {
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased() else {
            throw .invalidURL("not a URL: \(Self.redacted(text))")
        }
        let query = Dictionary((components.queryItems ?? []).map { ($0.name, $0.value ?? "") }, uniquingKeysWith: { $1 })
        var database = 0
        switch scheme {
        case "redis", "rediss":
            guard var host = components.host, !host.isEmpty else { throw .invalidURL("no host in \(Self.redacted(text))") }
            if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            let port = components.port ?? 6379
            guard (1...65535).contains(port) else { throw .invalidURL("bad port \(port)") }
            let path = components.path.trimming("/")
            if !path.isEmpty {
                guard let db = Int(path), db >= 0 else { throw .invalidURL("bad database '\(path)' in \(Self.redacted(text))") }
                database = db
            }
            endpoint = .tcp(host: host, port: port)
            self.tls = scheme == "rediss" ? tls : nil
        case "unix":
            guard !components.path.isEmpty else { throw .invalidURL("no socket path in \(text)") }
            endpoint = .unix(path: components.path)
        default:
            throw .invalidURL("unsupported scheme '\(scheme)': use redis://, rediss:// (TLS) or unix://")
        }
        if let db = query["db"] {
            guard let value = Int(db), value >= 0 else { throw .invalidURL("bad database '\(db)'") }
            database = value
        }
        self.database = database
        let user = components.percentEncodedUser.flatMap { $0.removingPercentEncoding }
        self.username = (user?.isEmpty ?? true) ? nil : user
        self.password = components.percentEncodedPassword.flatMap { $0.removingPercentEncoding } ?? query["password"]
    }

    /// The URL with its user and password, percent-encoded: for a credentials file, never a log.
    public var secretText: String {
        func encoded(_ text: String) -> String {
            text.utf8.map { byte -> String in
                let unreserved = (byte >= 48 && byte <= 57) || (byte >= 65 && byte <= 90) || (byte >= 97 && byte <= 122)
                    || byte == 45 || byte == 46 || byte == 95 || byte == 126
                return unreserved ? String(UnicodeScalar(byte)) : "%" + String(byte, radix: 16, uppercase: true).leftPad2
            }.joined()
        }
        let auth = password == nil ? (username.map { "\(encoded($0))@" } ?? "") : "\(username.map(encoded) ?? ""):\(encoded(password!))@"
        switch endpoint {
        case .tcp(let host, let port):
            let shown = host.contains(":") ? "[\(host)]" : host
            return "\(tls == nil ? "redis" : "rediss")://\(auth)\(shown):\(port)/\(database)"
        case .unix(let path): return "unix://\(auth)\(path)" + (database == 0 ? "" : "?db=\(database)")
        }
    }

    /// The URL with any password replaced by `***`: safe for logs.
    public var description: String {
        let auth = password == nil ? (username.map { "\($0)@" } ?? "") : "\(username ?? ""):***@"
        switch endpoint {
        case .tcp(let host, let port):
            let shown = host.contains(":") ? "[\(host)]" : host
            return "\(tls == nil ? "redis" : "rediss")://\(auth)\(shown):\(port)/\(database)"
        case .unix(let path): return "unix://\(auth)\(path)" + (database == 0 ? "" : "?db=\(database)")
        }
    }

    static func redacted(_ text: String) -> String {
        guard let at = text.lastIndex(of: "@"), let scheme = text.firstRange(of: "://") else { return text }
        return String(text[..<scheme.upperBound]) + "***" + String(text[at...])
    }
}

extension String {
    fileprivate var leftPad2: String { count == 1 ? "0" + self : self }
}
