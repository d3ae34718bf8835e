import FactoryKit
import Foundation
import RedisKit
import Testing
import TestSupport

/// The Redis settings FactoryKit's configuration reads (UA_REDIS_HOST and friends).
@Suite struct RedisEnvironmentTests {
    @Test func anIPv6HostFromTheEnvironmentIsBracketed() throws {
        let url = FactoryEnvironment(["UA_REDIS_HOST": "::1", "UA_REDIS_PORT": "6390", "REDIS_PASSWORD": "a:b@c"]).redisURL
        // The password percent-encoded strictly (':' too), the host in brackets.
        #expect(url == "redis://:a%3Ab%40c@[::1]:6390/0", "\(url)")
        let parsed = try RedisURL(url)
        #expect(parsed.endpoint == .tcp(host: "::1", port: 6390))
        #expect(parsed.password == "a:b@c")
    }

    /// A free port on ::1, or nil where there is no IPv6 loopback.
    static let ipv6Port = freeIPv6LoopbackPort()

    @Test(.enabled(if: ipv6Port != nil, "needs an IPv6 loopback (::1)"))
    func anIPv6RedisAnswers() throws {
        // A real server on ::1, reached through UA_REDIS_HOST without brackets.
        let server = try RedisServer()
        let port = try #require(Self.ipv6Port)
        try server.cli(["CONFIG", "SET", "bind", "::1"])
        try server.cli(["CONFIG", "SET", "port", String(port)])
        let url = FactoryEnvironment(["UA_REDIS_HOST": "::1", "UA_REDIS_PORT": String(port)]).redisURL
        let connection = try RedisConnection(url: RedisURL(url))
        #expect(try connection.command(["PING"]) == .status("PONG"))
    }
}
