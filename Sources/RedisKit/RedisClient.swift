import FoundationEssentials
import FactoryBasics
import Glibc
import Synchronization

/// A Redis connection that reconnects on demand: a command on a broken link throws
/// `.connection`, drops the link, and the next command connects again. Callers decide whether a
/// command is safe to retry (reads are; an XADD may not be) and pace retries with `Backoff`.
public final class RedisClient {
    public let url: RedisURL
    public let connectTimeout: Double
    public let commandTimeout: Double
    /// Used on the owner's thread only.
    private var connection: RedisConnection?
    /// What `interrupt()` on another thread may touch: the current connection's socket (set
    /// and cleared with `connection`, so it is never a closed, reused descriptor) and the flag.
    private let shared = Mutex<(socket: Int32?, interrupted: Bool)>((nil, false))

    public init(url: RedisURL, connectTimeout: Double = 5, commandTimeout: Double = 10) {
        self.url = url
        self.connectTimeout = connectTimeout
        self.commandTimeout = commandTimeout
    }

    public var isConnected: Bool { connection.map { !$0.isBroken } ?? false }

    /// Connects now if not connected. Refused after `interrupt()` until `resume()`.
    public func connect() throws(RedisError) {
        if let connection, !connection.isBroken { return }
        setConnection(nil)
        let made = try RedisConnection(url: url, connectTimeout: connectTimeout, commandTimeout: commandTimeout)
        let refused = shared.withLock { state in
            if !state.interrupted { state.socket = made.socket }
            return state.interrupted
        }
        if refused { throw .connection("interrupted") }
        connection = made
    }

    public func disconnect() {
        setConnection(nil)
    }

    /// Safe from any thread: ends a command blocked on the socket (a long `BLOCK` read) with a
    /// connection error, and refuses new connections until `resume()`. This is how a stop
    /// request reaches a consumer that blocks until its next heartbeat instead of polling.
    public func interrupt() {
        shared.withLock { state in
            state.interrupted = true
            if let socket = state.socket { _ = shutdown(socket, Int32(SHUT_RDWR)) }
        }
    }

    /// `interrupt()` as a closure another thread may hold (only `interrupt` is thread-safe).
    public var interrupter: @Sendable () -> Void {
        nonisolated(unsafe) let client = self
        return { client.interrupt() }
    }

    /// Allows connections again after `interrupt()` (for a last command before exiting).
    public func resume() {
        shared.withLock { $0.interrupted = false }
    }

    /// Drops the connection. Its socket is forgotten first, so `interrupt()` can no longer
    /// reach it by the time it is closed.
    private func setConnection(_ value: RedisConnection?) {
        shared.withLock { $0.socket = value?.socket }
        connection = value
    }

    @discardableResult
    public func command(_ arguments: [String]) throws(RedisError) -> RedisReply {
        try command(arguments.map { Data($0.utf8) })
    }

    @discardableResult
    public func command(_ arguments: [Data]) throws(RedisError) -> RedisReply {
        try command(arguments, after: [])
    }

    /// One command, its reply read in place by `body` (see `RedisConnection.withRawReply`).
    public func withRawReply<T>(_ arguments: [String], _ body: (RedisRawReply) throws(RedisError) -> T) throws(RedisError) -> T {
        try connect()
        do {
            return try connection!.withRawReply(arguments, body)
        } catch {
            if error.isConnectionError || connection?.isBroken == true { setConnection(nil) }
            throw error
        }
    }

    /// Whether `command(_:after:)` may send silent commands on this connection (connects first).
    public func canSkipReplies() throws(RedisError) -> Bool {
        try connect()
        return connection!.canSkipReplies
    }

    /// `silent` commands without replies (`CLIENT REPLY SKIP`), then `arguments`, in one write;
    /// the reply to `arguments`. See `RedisConnection.command(_:after:)`.
    @discardableResult
    public func command(_ arguments: [Data], after silent: [[Data]]) throws(RedisError) -> RedisReply {
        try connect()
        do {
            return try connection!.command(arguments, after: silent)
        } catch {
            if error.isConnectionError || connection?.isBroken == true { setConnection(nil) }
            throw error
        }
    }
}

/// Capped exponential backoff with jitter: 0.25 s, 0.5 s, 1 s … up to `cap`.
public struct Backoff: Sendable {
    public let initial: Double
    public let cap: Double
    public private(set) var attempt = 0

    public init(initial: Double = 0.25, cap: Double = 30) {
        self.initial = initial
        self.cap = cap
    }

    public mutating func next() -> Double {
        let base = min(cap, initial * Double(1 << min(attempt, 20)))
        attempt += 1
        return base * Double.random(in: 0.8...1.0)
    }

    public mutating func reset() { attempt = 0 }
}
