import Foundation

/// A Redis connection that reconnects on demand: a command on a broken link throws
/// `.connection`, drops the link, and the next command connects again. Callers decide whether a
/// command is safe to retry (reads are; an XADD may not be) and pace retries with `Backoff`.
public final class RedisClient {
    public let url: RedisURL
    public let connectTimeout: Double
    public let commandTimeout: Double
    private var connection: RedisConnection?

    public init(url: RedisURL, connectTimeout: Double = 5, commandTimeout: Double = 10) {
        self.url = url
        self.connectTimeout = connectTimeout
        self.commandTimeout = commandTimeout
    }

    public var isConnected: Bool { connection.map { !$0.isBroken } ?? false }

    /// Connects now if not connected.
    public func connect() throws(RedisError) {
        if let connection, !connection.isBroken { return }
        connection = nil
        connection = try RedisConnection(url: url, connectTimeout: connectTimeout, commandTimeout: commandTimeout)
    }

    public func disconnect() {
        connection = nil
    }

    @discardableResult
    public func command(_ arguments: [String]) throws(RedisError) -> RedisReply {
        try command(arguments.map { Data($0.utf8) })
    }

    @discardableResult
    public func command(_ arguments: [Data]) throws(RedisError) -> RedisReply {
        try connect()
        do {
            return try connection!.command(arguments)
        } catch {
            if error.isConnectionError || connection?.isBroken == true { connection = nil }
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
        let base = min(cap, initial * pow(2, Double(min(attempt, 20))))
        attempt += 1
        return base * Double.random(in: 0.8...1.0)
    }

    public mutating func reset() { attempt = 0 }
}
