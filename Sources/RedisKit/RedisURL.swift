import FoundationEssentials
import FactoryBasics

/// Where a Redis server is: `redis://[[user]:password@]host:port/db` (an IPv6 host in brackets),
/// `rediss://…` (the same over TLS, see `RedisTLSOptions`) or
/// `unix://[[user]:password@]/path.sock[?db=N]`. A user name authenticates as that ACL user.
/// `redis-sentinel://[[user]:password@]host:port[,host:port…]/db#primary` (Lettuce's form; and
/// `rediss-sentinel://` over TLS) asks the Sentinels where the primary named after `#` is, on
/// every connect; the user and password are the data nodes' (the Sentinels are asked without).
public struct RedisURL: Sendable, Equatable, CustomStringConvertible {
    public enum Endpoint: Sendable, Equatable {
        case tcp(host: String, port: Int)
        case unix(path: String)
        /// Sentinels to ask, in order, for the primary `primary`.
        case sentinel(nodes: [Node], primary: String)
    }

    public struct Node: Sendable, Equatable {
        public var host: String
        public var port: Int
        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }
        var shown: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
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
        if let sentinel = try Self.sentinel(text, tls: tls) {
            self = sentinel
            return
        }
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
            throw .invalidURL("unsupported scheme '\(scheme)': use redis://, rediss:// (TLS), unix:// or redis-sentinel://")
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
        case .sentinel(let nodes, let primary):
            return "\(tls == nil ? "redis" : "rediss")-sentinel://\(auth)\(nodes.map(\.shown).joined(separator: ","))/\(database)#\(encoded(primary))"
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
        case .sentinel(let nodes, let primary):
            return "\(tls == nil ? "redis" : "rediss")-sentinel://\(auth)\(nodes.map(\.shown).joined(separator: ","))/\(database)#\(primary)"
        }
    }

    /// `redis-sentinel://…` parsed by hand (URLComponents takes no host list); nil for another scheme.
    static func sentinel(_ text: String, tls: RedisTLSOptions) throws(RedisError) -> RedisURL? {
        let lowered = text.lowercased()
        let secure = lowered.hasPrefix("rediss-sentinel://")
        guard secure || lowered.hasPrefix("redis-sentinel://") else { return nil }
        var rest = Substring(text.drop(while: { $0 != ":" }).dropFirst(3))
        guard let hash = rest.lastIndex(of: "#") else {
            throw .invalidURL("a Sentinel URL names its primary after '#' (redis-sentinel://host:26379/0#mymaster): \(redacted(text))")
        }
        let primary = String(rest[rest.index(after: hash)...]).removingPercentEncoding ?? ""
        guard !primary.isEmpty, primary.utf8.count <= 128, primary.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f }) else {
            throw .invalidURL("bad primary name in \(redacted(text))")
        }
        rest = rest[..<hash]
        var username: String?, password: String?
        if let at = rest.lastIndex(of: "@") {
            let auth = rest[..<at]
            let user = auth.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
            username = String(user[0]).removingPercentEncoding.flatMap { $0.isEmpty ? nil : $0 }
            password = user.count > 1 ? String(user[1]).removingPercentEncoding : nil
            rest = rest[rest.index(after: at)...]
        }
        var database = 0
        if let slash = rest.firstIndex(of: "/") {
            let path = rest[rest.index(after: slash)...]
            if !path.isEmpty {
                guard let db = Int(path), db >= 0 else { throw .invalidURL("bad database '\(path)' in \(redacted(text))") }
                database = db
            }
            rest = rest[..<slash]
        }
        var nodes: [Node] = []
        for part in rest.split(separator: ",") {
            guard let node = try? Self(String(secure ? "rediss://" : "redis://") + part), case .tcp(let host, let port) = node.endpoint else {
                throw .invalidURL("bad Sentinel address '\(part)' in \(redacted(text))")
            }
            nodes.append(Node(host: host, port: port == 6379 && !part.contains(":") ? 26379 : port))
        }
        guard !nodes.isEmpty, nodes.count <= 16 else { throw .invalidURL("a Sentinel URL needs 1 to 16 host:port addresses: \(redacted(text))") }
        return RedisURL(endpoint: .sentinel(nodes: nodes, primary: primary), password: password, username: username,
                        database: database, tls: secure ? tls : nil)
    }

    static func redacted(_ text: String) -> String {
        guard let at = text.lastIndex(of: "@"), let scheme = text.firstRange(of: "://") else { return text }
        return String(text[..<scheme.upperBound]) + "***" + String(text[at...])
    }
}

extension String {
    fileprivate var leftPad2: String { count == 1 ? "0" + self : self }
}
