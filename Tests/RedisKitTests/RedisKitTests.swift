import Foundation
import RedisKit
import Testing
import TestSupport

@Suite struct RedisKitTests {
    @Test func parsesURLs() throws {
        let tcp = try RedisURL("redis://:s3cret@cache.internal:6380/2")
        #expect(tcp.endpoint == .tcp(host: "cache.internal", port: 6380))
        #expect(tcp.password == "s3cret")
        #expect(tcp.database == 2)
        #expect(!tcp.description.contains("s3cret"))
        #expect(try RedisURL("redis://localhost").endpoint == .tcp(host: "localhost", port: 6379))
        let unix = try RedisURL("unix:///run/redis.sock?db=3")
        #expect(unix.endpoint == .unix(path: "/run/redis.sock"))
        #expect(unix.database == 3)
        #expect(try RedisURL("redis://user:p%40ss@h:1/0").password == "p@ss")
        let acl = try RedisURL("unix://factory:p%40ss@/run/redis/redis.sock?db=2")
        #expect(acl.endpoint == .unix(path: "/run/redis/redis.sock"))
        #expect(acl.username == "factory" && acl.password == "p@ss" && acl.database == 2)
        #expect(acl.description == "unix://factory:***@/run/redis/redis.sock?db=2")
        let v6 = try RedisURL("redis://hq:pw@[::1]:6380/1")
        #expect(v6.endpoint == .tcp(host: "::1", port: 6380))
        #expect(v6.description == "redis://hq:***@[::1]:6380/1")
    }

    @Test(arguments: ["http://h", "redis://h:6379/x", "redis://:pw@/0", "rediss://:pw@/0", "rediss://h:0/0", "nonsense"])
    func rejectsBadURLs(text: String) {
        #expect(throws: RedisError.self) { try RedisURL(text) }
    }

    @Test func sentinelURLsListTheirSentinelsAndPrimaryAndStayRedacted() throws {
        let url = try RedisURL("redis-sentinel://hq:s%40cret@10.0.0.1:26379,10.0.0.2,[::1]:26380/3#factory")
        let nodes = [RedisURL.Node(host: "10.0.0.1", port: 26379), RedisURL.Node(host: "10.0.0.2", port: 26379), RedisURL.Node(host: "::1", port: 26380)]
        let secure = try RedisURL("rediss-sentinel://h:26379/0#p")
        let again = try RedisURL(url.secretText)
        #expect(url.endpoint == .sentinel(nodes: nodes, primary: "factory") && url.username == "hq" && url.password == "s@cret" && url.database == 3
                && url.description == "redis-sentinel://hq:***@10.0.0.1:26379,10.0.0.2:26379,[::1]:26380/3#factory"
                && again == url && secure.tls != nil)
    }

    @Test(arguments: ["redis-sentinel://h:26379/0", "redis-sentinel://h:26379/0#", "redis-sentinel:///0#p", "redis-sentinel://h:99999/0#p",
                      "redis-sentinel://h/x#p", "redis-sentinel://h/0#a b"])
    func badSentinelURLsAreRefused(_ text: String) {
        #expect(throws: RedisError.self) { try RedisURL(text) }
    }

    @Test func redissURLsCarryTheirTLSOptionsAndStayRedacted() throws {
        let options = RedisTLSOptions(ca: "/etc/factoryctl/redis-ca.pem", cert: "/etc/factoryctl/factory.pem", key: "/etc/factoryctl/factory.key")
        let url = try RedisURL("rediss://factory-eu-1:s3cr%40t@redis.hq.example:6380/2", tls: options)
        #expect(url.endpoint == .tcp(host: "redis.hq.example", port: 6380))
        #expect(url.username == "factory-eu-1" && url.password == "s3cr@t" && url.database == 2)
        #expect(url.tls == options)
        #expect(url.description == "rediss://factory-eu-1:***@redis.hq.example:6380/2")
        // Without options: the system CA bundle and no client certificate; the port defaults to 6379.
        let plain = try RedisURL("rediss://redis.hq.example")
        #expect(plain.tls == RedisTLSOptions() && plain.endpoint == .tcp(host: "redis.hq.example", port: 6379))
        // The options are for rediss:// only: redis:// and unix:// stay plain.
        #expect(try RedisURL("redis://h:6379/0", tls: options).tls == nil)
        #expect(try RedisURL("unix:///run/redis.sock", tls: options).tls == nil)
        #expect(try RedisURL("redis://h:6379/0").description == "redis://h:6379/0")
    }

    @Test func anUnknownSchemeNamesTheOnesThatWork() {
        #expect(throws: RedisError.invalidURL("unsupported scheme 'http': use redis://, rediss:// (TLS), unix:// or redis-sentinel://")) { try RedisURL("http://h") }
    }

    @Test func typedRepliesAndBinarySafeArguments() throws {
        let server = try RedisServer()
        let connection = try RedisConnection(url: RedisURL(server.url))
        let binary = Data([0, 13, 10, 255, 0x24, 0x2A])
        #expect(try connection.command([Data("SET".utf8), Data("k".utf8), binary]) == .status("OK"))
        #expect(try connection.command(["GET", "k"]) == .string(binary))
        #expect(try connection.command(["GET", "missing"]) == .null)
        #expect(try connection.command(["INCRBY", "n", "41"]) == .integer(41))
        #expect(try connection.command(["RPUSH", "l", "a", "b"]) == .integer(2))
        #expect(try connection.command(["LRANGE", "l", "0", "-1"]) == .array([.string(Data("a".utf8)), .string(Data("b".utf8))]))
        do {
            _ = try connection.command(["INCR", "k"])
            Issue.record("error reply not thrown")
        } catch {
            #expect(error.replyCode == "ERR")
            #expect(!error.isConnectionError)
        }
        #expect(try server.cli(["GET", "n"]) == "41")
    }

    @Test func silentCommandsRunAndOnlyTheLastReplyComesBack() throws {
        let server = try RedisServer()
        let connection = try RedisConnection(url: RedisURL(server.url))
        #expect(connection.canSkipReplies)
        let silent = [["HSET", "h", "a", "1"], ["HSET", "h", "b", "2"]].map { $0.map { Data($0.utf8) } }
        #expect(try connection.command(["HGET", "h", "a"].map { Data($0.utf8) }, after: silent) == .string(Data("1".utf8)))
        // Nothing stray is left in the stream of replies: the next command gets its own.
        #expect(try connection.command(["HLEN", "h"]) == .integer(2))
        #expect(try connection.command(["PING"]) == .status("PONG"))
        // A silent command that fails (wrong type) leaves no error reply behind either.
        _ = try connection.command(["SET", "s", "x"])
        #expect(try connection.command(["PING"].map { Data($0.utf8) }, after: [["HSET", "s", "f", "v"].map { Data($0.utf8) }]) == .status("PONG"))
        #expect(try connection.command(["GET", "s"]) == .string(Data("x".utf8)))
    }

    @Test func withoutClientReplyPermissionNothingIsSentSilently() throws {
        // A user that may not run CLIENT: the probe says no, so callers send normal commands.
        let directory = TemporaryDirectory()
        let acl = directory.join("users.acl")
        try "user default off\nuser plain on >pw ~* +@all -client\n".write(toFile: acl, atomically: true, encoding: .utf8)
        let server = try RedisServer(password: "pw", aclFile: acl, user: "plain")
        let connection = try RedisConnection(url: RedisURL("unix://plain:pw@" + server.socket))
        #expect(!connection.canSkipReplies)
        #expect(try connection.command(["PING"]) == .status("PONG"))
    }

    @Test func authenticatesAndSelectsTheDatabase() throws {
        let server = try RedisServer(password: "pa ss:word")
        let url = RedisURL(endpoint: .unix(path: server.socket), password: "pa ss:word", database: 3)
        let connection = try RedisConnection(url: url)
        _ = try connection.command(["SET", "where", "db3"])
        #expect(try server.cli(["-n", "3", "GET", "where"]) == "db3")
        let wrong = RedisURL(endpoint: .unix(path: server.socket), password: "nope")
        #expect(throws: RedisError.self) { try RedisConnection(url: wrong) }
    }

    @Test func connectsOverTCPWithPasswordAndDatabase() throws {
        let port = freeLoopbackPort()
        let directory = TemporaryDirectory()
        let server = Process()
        server.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        server.arguments = ["redis-server", "--port", String(port), "--bind", "127.0.0.1", "--requirepass", "tcp-secret",
                            "--save", "", "--appendonly", "no", "--dir", directory.path, "--logfile", directory.join("log")]
        try server.run()
        defer { kill(server.processIdentifier, SIGKILL); server.waitUntilExit() }
        let url = try RedisURL("redis://:tcp-secret@127.0.0.1:\(port)/5")
        var connection: RedisConnection?
        for _ in 0..<200 where connection == nil {
            connection = try? RedisConnection(url: url)
            if connection == nil { Thread.sleep(forTimeInterval: 0.02) }
        }
        let connected = try #require(connection)
        _ = try connected.command(["SET", "k", "v"])
        #expect(try connected.command(["CLIENT", "INFO"]).text?.contains("db=5") == true)
        #expect(throws: RedisError.self) { try RedisConnection(url: RedisURL("redis://:wrong@127.0.0.1:\(port)/0")) }
    }

    @Test func unreachableServerIsAConnectionError() {
        do {
            _ = try RedisConnection(url: RedisURL(endpoint: .unix(path: "/nonexistent/redis.sock")))
            Issue.record("connected to nothing")
        } catch {
            #expect(error.isConnectionError)
        }
    }

    @Test func clientReconnectsAfterTheServerRestarts() throws {
        let server = try RedisServer()
        let client = RedisClient(url: try RedisURL(server.url))
        try client.command(["SET", "a", "1"])
        server.stop()
        #expect(throws: RedisError.self) { try client.command(["GET", "a"]) }
        #expect(!client.isConnected)
        try server.start()
        #expect(try client.command(["SET", "a", "2"]) == .status("OK"))
    }

    @Test func blockingReadOutlivesShortBlocksWithoutKillingTheSocket() throws {
        let server = try RedisServer()
        // Socket timeout 2 s, BLOCK 1 s: the read times out server-side and returns nil.
        let connection = try RedisConnection(url: RedisURL(server.url), commandTimeout: 2)
        #expect(try connection.command(["XREAD", "BLOCK", "1000", "STREAMS", "s", "$"]) == .null)
        #expect(try connection.command(["PING"]) == .status("PONG"))
    }

    @Test func backoffIsCapped() {
        var backoff = Backoff(initial: 0.5, cap: 4)
        let delays = (0..<10).map { _ in backoff.next() }
        #expect(delays.allSatisfy { $0 <= 4 })
        #expect(delays.last! >= 3.2)
        #expect(delays.first! <= 0.5)
    }
}
