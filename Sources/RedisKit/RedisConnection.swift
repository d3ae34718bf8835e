import CHiredis
import FoundationEssentials
import Glibc

/// The sole owner of a hiredis `redisContext`. Blocking; not Sendable: keep it on one thread
/// (never on the cooperative pool while a `BLOCK` read is running).
public final class RedisConnection {
    private let context: UnsafeMutablePointer<redisContext>
    public let url: RedisURL
    /// For `rediss://`: the relay carrying hiredis' socket over TLS (see `TLSRelay`).
    private let tls: TLSRelay.Status?
    public private(set) var commandTimeout: Double

    /// Connects, authenticates and selects the database.
    /// `commandTimeout` must exceed any `BLOCK` time used on this connection.
    /// A write to a socket the server closed must fail with EPIPE, not kill the process with
    /// SIGPIPE; hiredis writes with plain write(2), so SIGPIPE is ignored process-wide, once.
    private static let ignoreSIGPIPE: Void = { signal(SIGPIPE, SIG_IGN) }()

    public init(url: RedisURL, connectTimeout: Double = 5, commandTimeout: Double = 10) throws(RedisError) {
        Self.ignoreSIGPIPE
        let address = try Self.primary(of: url, connectTimeout: connectTimeout)
        (context, tls) = try Self.open(address, connectTimeout: connectTimeout)
        self.url = url
        self.commandTimeout = commandTimeout
        // From here on, deinit frees the context if anything below throws.
        // (Over TLS hiredis holds a unix socket; the relay's TCP socket has the keepalive.)
        if case .tcp = address.endpoint, tls == nil { redisEnableKeepAlive(context) }
        try setTimeout(commandTimeout)
        do {
            try logIn()
        } catch {
            // A server that refuses the TLS session after the handshake (a TLS 1.3 alert):
            // its reason, not the broken pipe hiredis saw.
            if let failure = tls?.failure { throw .connection("cannot connect to \(url): the server refused the TLS session: \(failure)") }
            throw error
        }
        if case .sentinel(_, let primary) = url.endpoint { try confirmPrimary(primary, address) }
    }

    /// For a Sentinel URL: the address the Sentinels name for its primary, asked in order (the
    /// first that answers wins); any other URL as it is. Asked on every connect, so a client that
    /// reconnects after a failover finds the new primary.
    static func primary(of url: RedisURL, connectTimeout: Double) throws(RedisError) -> RedisURL {
        guard case .sentinel(let nodes, let primary) = url.endpoint else { return url }
        var reasons: [String] = []
        for node in nodes {
            do {
                let sentinel = try RedisConnection(url: RedisURL(endpoint: .tcp(host: node.host, port: node.port), tls: url.tls),
                                                   connectTimeout: connectTimeout, commandTimeout: connectTimeout)
                let reply = try sentinel.command(["SENTINEL", "get-master-addr-by-name", primary])
                guard let items = reply.array, items.count == 2, let host = items[0].text,
                      let port = items[1].text.flatMap(Int.init), (1...65535).contains(port) else {
                    reasons.append("\(node.shown) does not know \(primary)")
                    continue
                }
                var address = url
                address.endpoint = .tcp(host: host, port: port)
                return address
            } catch {
                reasons.append("\(node.shown): \(error)")
            }
        }
        throw .connection("no Sentinel named the primary '\(primary)' (\(reasons.joined(separator: "; ")))")
    }

    /// The server a Sentinel named must say it is the primary (during a failover a Sentinel may
    /// still name the old one, come back as a replica); a user not allowed ROLE is taken at its word.
    private func confirmPrimary(_ primary: String, _ address: RedisURL) throws(RedisError) {
        let role: RedisReply
        do {
            role = try command(["ROLE"])
        } catch .reply {
            return
        }
        let said = role.array?.first?.text ?? "?"
        guard said == "master" else {
            throw .connection("\(address) is not the primary '\(primary)' yet (ROLE: \(said)); the Sentinels are failing over")
        }
    }

    /// A connected hiredis context: over TCP or a unix socket, or for `rediss://` over a
    /// socketpair whose other end a `TLSRelay` carries to the server.
    private static func open(_ url: RedisURL, connectTimeout: Double) throws(RedisError)
        -> (UnsafeMutablePointer<redisContext>, TLSRelay.Status?) {
        let tv = factoryctl_timeval_ms(Int(connectTimeout * 1000))
        let made: UnsafeMutablePointer<redisContext>?
        var tls: TLSRelay.Status?
        switch url.endpoint {
        case .tcp(let host, let port):
            if let options = url.tls {
                let relay: (socket: Int32, status: TLSRelay.Status)
                do {
                    relay = try TLSRelay.start(TLSSession(host: host, port: port, options: options, timeout: connectTimeout))
                } catch .connection(let reason) {
                    throw .connection("cannot connect to \(url): \(reason)")
                }
                made = redisConnectFd(relay.socket)
                if made == nil { close(relay.socket) }
                tls = relay.status
            } else {
                made = redisConnectWithTimeout(host, Int32(port), tv)
            }
        case .sentinel:
            throw .connection("\(url): a Sentinel URL is resolved to its primary before connecting")
        case .unix(let path):
            guard url.tls == nil else { throw .connection("\(url): TLS needs a TCP endpoint, not a unix socket") }
            made = redisConnectUnixWithTimeout(path, tv)
        }
        guard let made else { throw .connection("out of memory creating a Redis context") }
        if factoryctl_redis_err(made) != 0 {
            let message = String(cString: factoryctl_redis_errstr(made))
            redisFree(made)
            throw .connection("cannot connect to \(url): \(message)")
        }
        return (made, tls)
    }

    /// Authenticates and selects the database.
    private func logIn() throws(RedisError) {
        if let password = url.password {
            var auth = ["AUTH"]
            if let username = url.username { auth.append(username) }
            auth.append(password)
            do {
                _ = try command(auth)
            } catch .reply(let message) {
                throw .connection("authentication to \(url) failed: \(message)")
            }
        }
        if url.database != 0 {
            _ = try command(["SELECT", String(url.database)])
        } else if tls != nil && url.password == nil {
            // Under TLS 1.3 a server that wants a client certificate refuses it after the
            // handshake: one round trip makes "connected" mean "accepted".
            _ = try command(["PING"])
        }
    }

    deinit {
        redisFree(context)
    }

    /// Sets the socket read/write timeout; keep it above any BLOCK time.
    public func setTimeout(_ seconds: Double) throws(RedisError) {
        commandTimeout = seconds
        if redisSetTimeout(context, factoryctl_timeval_ms(Int(seconds * 1000))) != 0 {
            throw .connection("cannot set timeout: \(String(cString: factoryctl_redis_errstr(context)))")
        }
    }

    /// Shuts the socket down so that a read blocked on it (another thread's `BLOCK`) returns at
    /// once with an error. The context stays allocated; the connection is broken afterwards.
    public func shutdownSocket() {
        _ = shutdown(socket, Int32(SHUT_RDWR))
    }

    /// The connection's socket, for `RedisClient.interrupt()` on another thread.
    var socket: Int32 { context.pointee.fd }

    /// hiredis' error text, with the TLS relay's reason when TLS is what failed.
    private var hiredisError: String {
        let text = String(cString: factoryctl_redis_errstr(context))
        guard let failure = tls?.failure else { return text }
        return "\(text) (TLS: \(failure))"
    }

    /// True once hiredis has seen an I/O or protocol error; the connection is then unusable.
    public var isBroken: Bool { factoryctl_redis_err(context) != 0 }

    public func command(_ arguments: [String]) throws(RedisError) -> RedisReply {
        try command(arguments.map { Data($0.utf8) })
    }

    /// Sends one command with binary-safe arguments (redisCommandArgv with explicit lengths).
    public func command(_ arguments: [Data]) throws(RedisError) -> RedisReply {
        try command(arguments, after: [])
    }

    /// Whether the server honours `CLIENT REPLY SKIP` for this user (asked once, on first use).
    public private(set) lazy var canSkipReplies: Bool = {
        guard !isBroken, (try? command([Data("CLIENT".utf8), Data("REPLY".utf8), Data("ON".utf8)])) == .status("OK") else { return false }
        return true
    }()

    /// Sends `silent` commands, each preceded by `CLIENT REPLY SKIP` so that the server sends no
    /// reply for it, then `arguments`, all in one write, and returns only the reply to
    /// `arguments`. The silent commands' outcomes are unknown (use it for a heartbeat that the
    /// next one repeats anyway). Requires `canSkipReplies`.
    public func command(_ arguments: [Data], after silent: [[Data]]) throws(RedisError) -> RedisReply {
        precondition(!arguments.isEmpty, "empty Redis command")
        precondition(silent.isEmpty || canSkipReplies, "CLIENT REPLY SKIP is not available")
        guard !isBroken else { throw .connection("connection to \(url) is broken: \(hiredisError)") }
        let skip = [Data("CLIENT".utf8), Data("REPLY".utf8), Data("SKIP".utf8)]
        for command in silent where !command.isEmpty {
            try append(skip)
            try append(command)
        }
        try append(arguments)
        var raw: UnsafeMutableRawPointer?
        guard redisGetReply(context, &raw) == 0, let raw else {
            throw .connection("\(url): \(hiredisError)")
        }
        let reply = raw.assumingMemoryBound(to: redisReply.self)
        defer { freeReplyObject(raw) }
        return try Self.convert(reply)
    }

    /// Sends one command and hands `body` hiredis' own reply, read in place (no copy of any
    /// string into a `Data`); the view is valid only during the call. An error reply is thrown.
    /// For large replies read once (HGETALL of the registry): 10,000 values, no 10,000 copies.
    public func withRawReply<T>(_ arguments: [String], _ body: (RedisRawReply) throws(RedisError) -> T) throws(RedisError) -> T {
        precondition(!arguments.isEmpty, "empty Redis command")
        guard !isBroken else { throw .connection("connection to \(url) is broken: \(hiredisError)") }
        try append(arguments.map { Data($0.utf8) })
        var raw: UnsafeMutableRawPointer?
        guard redisGetReply(context, &raw) == 0, let raw else {
            throw .connection("\(url): \(hiredisError)")
        }
        defer { freeReplyObject(raw) }
        let reply = RedisRawReply(pointer: raw.assumingMemoryBound(to: redisReply.self))
        if let error = reply.errorText { throw .reply(error) }
        return try body(reply)
    }

    /// Queues one command in hiredis' output buffer (sent by the next redisGetReply).
    private func append(_ arguments: [Data]) throws(RedisError) {
        // Copy each argument into one buffer that outlives the call.
        let total = arguments.reduce(0) { $0 + $1.count }
        let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: max(total, 1))
        defer { buffer.deallocate() }
        var pointers: [UnsafePointer<CChar>?] = []
        var lengths: [Int] = []
        var offset = 0
        for argument in arguments {
            argument.withUnsafeBytes { raw in
                if let base = raw.baseAddress, raw.count > 0 {
                    (buffer + offset).withMemoryRebound(to: UInt8.self, capacity: raw.count) {
                        $0.update(from: base.assumingMemoryBound(to: UInt8.self), count: raw.count)
                    }
                }
            }
            pointers.append(UnsafePointer(buffer + offset))
            lengths.append(argument.count)
            offset += argument.count
        }
        let code = pointers.withUnsafeMutableBufferPointer { argv in
            lengths.withUnsafeBufferPointer { lens in
                redisAppendCommandArgv(context, Int32(arguments.count), argv.baseAddress, lens.baseAddress)
            }
        }
        guard code == 0 else { throw .connection("\(url): \(hiredisError)") }
    }

    private static func convert(_ reply: UnsafeMutablePointer<redisReply>) throws(RedisError) -> RedisReply {
        let r = reply.pointee
        switch r.type {
        case REDIS_REPLY_STRING:
            return .string(r.str.map { Data(bytes: $0, count: r.len) } ?? Data())
        case REDIS_REPLY_STATUS:
            return .status(r.str.map { String(decoding: Data(bytes: $0, count: r.len), as: UTF8.self) } ?? "")
        case REDIS_REPLY_ERROR:
            throw .reply(r.str.map { String(decoding: Data(bytes: $0, count: r.len), as: UTF8.self) } ?? "error")
        case REDIS_REPLY_INTEGER:
            return .integer(r.integer)
        case REDIS_REPLY_NIL:
            return .null
        case REDIS_REPLY_ARRAY:
            var items: [RedisReply] = []
            items.reserveCapacity(r.elements)
            for index in 0..<r.elements {
                guard let element = r.element[index] else { items.append(.null); continue }
                // An error nested in an array (EXEC) fails the whole command, like a top-level one.
                items.append(try convert(element))
            }
            return .array(items)
        default:
            throw .unexpectedReply("reply type \(r.type)")
        }
    }
}

/// hiredis' reply, read in place: valid only inside `withRawReply`'s closure.
public struct RedisRawReply {
    let pointer: UnsafeMutablePointer<redisReply>

    public var isNull: Bool { pointer.pointee.type == REDIS_REPLY_NIL }
    public var isArray: Bool { pointer.pointee.type == REDIS_REPLY_ARRAY }
    /// Elements of an array (0 otherwise).
    public var count: Int { isArray ? pointer.pointee.elements : 0 }

    public subscript(index: Int) -> RedisRawReply? {
        guard isArray, index >= 0, index < pointer.pointee.elements, let element = pointer.pointee.element[index] else { return nil }
        return RedisRawReply(pointer: element)
    }

    /// A bulk or status string's bytes (nil for other types).
    public func withBytes<T>(_ body: (UnsafeBufferPointer<UInt8>) throws(RedisError) -> T) throws(RedisError) -> T? {
        let r = pointer.pointee
        guard r.type == REDIS_REPLY_STRING || r.type == REDIS_REPLY_STATUS else { return nil }
        guard let str = r.str else { return try body(UnsafeBufferPointer(start: nil, count: 0)) }
        return try str.withMemoryRebound(to: UInt8.self, capacity: r.len) { bytes throws(RedisError) in
            try body(UnsafeBufferPointer(start: bytes, count: r.len))
        }
    }

    /// A bulk or status string as UTF-8 text (invalid bytes replaced).
    public var text: String? {
        let r = pointer.pointee
        guard r.type == REDIS_REPLY_STRING || r.type == REDIS_REPLY_STATUS, let str = r.str else { return nil }
        return str.withMemoryRebound(to: UInt8.self, capacity: r.len) { String(decoding: UnsafeBufferPointer(start: $0, count: r.len), as: UTF8.self) }
    }

    /// The message of an error reply, here or nested in an array (which fails the command, as
    /// `command` does).
    var errorText: String? {
        let r = pointer.pointee
        if r.type == REDIS_REPLY_ERROR {
            return r.str.map { String(decoding: Data(bytes: $0, count: r.len), as: UTF8.self) } ?? "error"
        }
        guard r.type == REDIS_REPLY_ARRAY else { return nil }
        for index in 0..<r.elements {
            if let element = r.element[index], let text = RedisRawReply(pointer: element).errorText { return text }
        }
        return nil
    }
}
