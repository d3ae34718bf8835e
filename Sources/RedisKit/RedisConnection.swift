import CHiredis
import FoundationEssentials
import Glibc

/// The sole owner of a hiredis `redisContext`. Blocking; not Sendable: keep it on one thread
/// (never on the cooperative pool while a `BLOCK` read is running).
public final class RedisConnection {
    private let context: UnsafeMutablePointer<redisContext>
    public let url: RedisURL
    public private(set) var commandTimeout: Double

    /// Connects, authenticates and selects the database.
    /// `commandTimeout` must exceed any `BLOCK` time used on this connection.
    /// A write to a socket the server closed must fail with EPIPE, not kill the process with
    /// SIGPIPE; hiredis writes with plain write(2), so SIGPIPE is ignored process-wide, once.
    private static let ignoreSIGPIPE: Void = { signal(SIGPIPE, SIG_IGN) }()

    public init(url: RedisURL, connectTimeout: Double = 5, commandTimeout: Double = 10) throws(RedisError) {
        Self.ignoreSIGPIPE
        let tv = factoryctl_timeval_ms(Int(connectTimeout * 1000))
        let made: UnsafeMutablePointer<redisContext>?
        switch url.endpoint {
        case .tcp(let host, let port): made = redisConnectWithTimeout(host, Int32(port), tv)
        case .unix(let path): made = redisConnectUnixWithTimeout(path, tv)
        }
        guard let made else { throw .connection("out of memory creating a Redis context") }
        if factoryctl_redis_err(made) != 0 {
            let message = String(cString: factoryctl_redis_errstr(made))
            redisFree(made)
            throw .connection("cannot connect to \(url): \(message)")
        }
        context = made
        self.url = url
        self.commandTimeout = commandTimeout
        // From here on, deinit frees the context if anything below throws.
        if case .tcp = url.endpoint { redisEnableKeepAlive(context) }
        try setTimeout(commandTimeout)
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
        _ = shutdown(context.pointee.fd, Int32(SHUT_RDWR))
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
        guard !isBroken else { throw .connection("connection to \(url) is broken: \(String(cString: factoryctl_redis_errstr(context)))") }
        let skip = [Data("CLIENT".utf8), Data("REPLY".utf8), Data("SKIP".utf8)]
        for command in silent where !command.isEmpty {
            try append(skip)
            try append(command)
        }
        try append(arguments)
        var raw: UnsafeMutableRawPointer?
        guard redisGetReply(context, &raw) == 0, let raw else {
            throw .connection("\(url): \(String(cString: factoryctl_redis_errstr(context)))")
        }
        let reply = raw.assumingMemoryBound(to: redisReply.self)
        defer { freeReplyObject(raw) }
        return try Self.convert(reply)
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
        guard code == 0 else { throw .connection("\(url): \(String(cString: factoryctl_redis_errstr(context)))") }
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
