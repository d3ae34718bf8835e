import FactoryKit
import Foundation
import RedisKit
import Testing
import TestSupport

/// The Redis settings FactoryKit's configuration reads (UA_REDIS_HOST and friends).
@Suite struct RedisEnvironmentTests {
    @Test func anIPv6HostFromTheEnvironmentIsBracketed() throws {
        let url = FactoryEnvironment(["UA_REDIS_HOST": "::1", "UA_REDIS_PORT": "6390", "REDIS_PASSWORD": "a:b@c"]).redisURL
        #expect(url == "redis://:a:b%40c@[::1]:6390/0" || url == "redis://:a%3Ab%40c@[::1]:6390/0", "\(url)")
        let parsed = try RedisURL(url)
        #expect(parsed.endpoint == .tcp(host: "::1", port: 6390))
        #expect(parsed.password == "a:b@c")
    }

    @Test func anIPv6RedisAnswers() throws {
        // A real server on ::1, reached through UA_REDIS_HOST without brackets.
        let server = try RedisServer()
        let port = 20000 + Int.random(in: 0..<20000)
        guard (try? server.cli(["CONFIG", "SET", "bind", "::1"])) != nil,
              (try? server.cli(["CONFIG", "SET", "port", String(port)])) != nil else { return } // no IPv6 here
        let url = FactoryEnvironment(["UA_REDIS_HOST": "::1", "UA_REDIS_PORT": String(port)]).redisURL
        let connection = try RedisConnection(url: RedisURL(url))
        #expect(try connection.command(["PING"]) == .status("PONG"))
    }
}
