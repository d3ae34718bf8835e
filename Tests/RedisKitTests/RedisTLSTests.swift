import Foundation
import RedisKit
import Synchronization
import Testing
import TestSupport

/// `rediss://` against redis-server's own TLS port, each test with a throwaway CA of its own.
@Suite struct RedisTLSTests {
    /// A CA, a server certificate from it, and a redis-server whose only TCP listener is TLS.
    struct World {
        let ca: TestCertificateAuthority
        let server: RedisServer

        init(names: [String] = ["127.0.0.1", "localhost"], expired: Bool = false, requireClientCertificate: Bool = false,
             password: String? = nil) throws {
            ca = try TestCertificateAuthority()
            let certificate = try ca.issue("redis", names: names, expired: expired)
            server = try RedisServer(password: password, tls: .init(certificate: certificate, ca: ca.certificate,
                                                                    requireClientCertificate: requireClientCertificate))
        }

        /// The CA's certificate, and a client certificate if given.
        func options(client: TestCertificateAuthority.Issued? = nil) -> RedisTLSOptions {
            RedisTLSOptions(ca: ca.certificate, cert: client?.certificate, key: client?.key)
        }

        func url(host: String = "127.0.0.1", database: Int = 0, _ options: RedisTLSOptions) throws -> RedisURL {
            try RedisURL(server.tlsURL(host: host, database: database), tls: options)
        }

        /// Clients connected to the server, redis-cli's own connection on the unix socket included.
        func connectedClients() throws -> Int { try info("connected_clients") }
        func blockedClients() throws -> Int { try info("blocked_clients") }

        private func info(_ field: String) throws -> Int {
            let line = try server.cli(["INFO", "clients"]).split(whereSeparator: \.isNewline).first { $0.hasPrefix(field + ":") }
            return try #require(line.flatMap { Int($0.dropFirst(field.count + 1)) })
        }
    }

    /// The message of the connection error `body` throws (an empty string records an issue).
    func refusal(_ body: () throws -> Void) -> String {
        do {
            try body()
            Issue.record("connected, but it should have been refused")
            return ""
        } catch let error as RedisError {
            #expect(error.isConnectionError, "\(error)")
            return error.description
        } catch {
            Issue.record("not a RedisError: \(error)")
            return ""
        }
    }

    @Test func commandsAndAMissionStreamRoundTripOverTLS() throws {
        let world = try World(password: "tls pass:word")
        let url = try world.url(database: 2, world.options())
        #expect(url.description == "rediss://:***@127.0.0.1:\(world.server.tlsPort!)/2")
        let publisher = RedisClient(url: url)
        let consumer = RedisClient(url: url, commandTimeout: 15)
        // Binary-safe, and larger than the relay's 16 KiB buffers and a TLS record, both ways.
        let binary = Data([0, 13, 10, 255, 0x24, 0x2A])
        let large = Data((0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        #expect(try publisher.command([Data("SET".utf8), Data("k".utf8), binary]) == .status("OK"))
        #expect(try consumer.command(["GET", "k"]) == .string(binary))
        #expect(try publisher.command([Data("SET".utf8), Data("large".utf8), large]) == .status("OK"))
        #expect(try consumer.command(["GET", "large"]) == .string(large))
        // The same server and database (its plain side is only the unix socket redis-cli uses).
        #expect(try world.server.cli(["-n", "2", "STRLEN", "large"]) == String(1 << 20))

        // A consumer group read, blocked until the publisher adds an entry, then acked.
        try consumer.command(["XGROUP", "CREATE", "missions", "factory-a", "$", "MKSTREAM"])
        let delivered = Mutex<RedisReply?>(nil)
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) let reader = consumer
        Thread.detachNewThread {
            let reply = try? reader.command(["XREADGROUP", "GROUP", "factory-a", "c1", "COUNT", "1", "BLOCK", "10000", "STREAMS", "missions", ">"])
            delivered.withLock { $0 = reply }
            done.signal()
        }
        #expect(eventually { (try? world.blockedClients()) == 1 })
        let id = try #require(try publisher.command(["XADD", "missions", "*", "job_id", "update-0123456789ab"]).text)
        #expect(done.wait(timeout: .now() + 10) == .success)
        let reply = try #require(delivered.withLock { $0 })
        let entry = try #require(reply.array?.first?.array?.last?.array?.first?.array)
        #expect(entry.first?.text == id)
        #expect(entry.last?.fieldMap == ["job_id": "update-0123456789ab"])
        #expect(try consumer.command(["XACK", "missions", "factory-a", id]) == .integer(1))
    }

    @Test func aCertificateFromAnotherCAIsRefusedNamingTheHostAndTheVerifyFailure() throws {
        let world = try World()
        let stranger = try TestCertificateAuthority("someone else's CA")
        let message = refusal { _ = try RedisConnection(url: world.url(RedisTLSOptions(ca: stranger.certificate))) }
        // redis-server sends its CA with its certificate: a self-signed certificate nobody here trusts.
        #expect(message.contains("TLS certificate verification of 127.0.0.1 failed: self-signed certificate in certificate chain"), "\(message)")
        #expect(message.contains("the CA file \(stranger.certificate)"), "\(message)")
        // Without a CA file the system bundle is the trust, and it does not know the test CA either.
        let system = refusal { _ = try RedisConnection(url: world.url(RedisTLSOptions())) }
        #expect(system.contains("127.0.0.1 failed: self-signed certificate in certificate chain (verified against the system CA bundle)"), "\(system)")
    }

    @Test func aHostTheCertificateDoesNotNameIsRefused() throws {
        // Issued for another name only: reached by IP address, then by a name, both are refused.
        let world = try World(names: ["redis.hq.example"])
        let byAddress = refusal { _ = try RedisConnection(url: world.url(host: "127.0.0.1", world.options())) }
        #expect(byAddress.contains("TLS certificate verification of 127.0.0.1 failed: IP address mismatch"), "\(byAddress)")
        let byName = refusal { _ = try RedisConnection(url: world.url(host: "localhost", world.options())) }
        #expect(byName.contains("TLS certificate verification of localhost failed: hostname mismatch"), "\(byName)")
    }

    @Test func theNamesInTheCertificateAreAccepted() throws {
        let world = try World(names: ["127.0.0.1", "localhost"])
        for host in ["127.0.0.1", "localhost"] {
            #expect(try RedisConnection(url: world.url(host: host, world.options())).command(["PING"]) == .status("PONG"))
        }
    }

    @Test func anExpiredCertificateIsRefused() throws {
        let world = try World(expired: true)
        let message = refusal { _ = try RedisConnection(url: world.url(world.options())) }
        #expect(message.contains("TLS certificate verification of 127.0.0.1 failed: certificate has expired"), "\(message)")
    }

    @Test func aClientCertificateIsSentWhenTheServerRequiresOne() throws {
        let world = try World(requireClientCertificate: true)
        let client = try world.ca.issue("factory-eu-1", names: ["factory-eu-1"], usage: .client)
        let connection = try RedisConnection(url: world.url(world.options(client: client)))
        #expect(try connection.command(["PING"]) == .status("PONG"))
        // A key in the certificate's file (combined PEM) is read from there.
        let combined = world.ca.directory.join("combined.pem")
        try (String(contentsOfFile: client.certificate, encoding: .utf8) + String(contentsOfFile: client.key, encoding: .utf8))
            .write(toFile: combined, atomically: true, encoding: .utf8)
        #expect(try RedisConnection(url: world.url(RedisTLSOptions(ca: world.ca.certificate, cert: combined))).command(["PING"]) == .status("PONG"))

        // Without one, the server's refusal (a TLS 1.3 alert after the handshake) fails the connect.
        let without = refusal { _ = try RedisConnection(url: world.url(world.options())) }
        #expect(without.contains("the server refused the TLS session: tlsv13 alert certificate required"), "\(without)")
        // One from another CA is refused too.
        let strangers = try TestCertificateAuthority("someone else's CA")
        let stranger = try strangers.issue("factory-eu-1", names: ["factory-eu-1"], usage: .client)
        let foreign = refusal { _ = try RedisConnection(url: world.url(world.options(client: stranger))) }
        #expect(foreign.contains("the server refused the TLS session: tlsv1 alert unknown ca"), "\(foreign)")
    }

    @Test func unusableCertificateFilesAreClearErrors() throws {
        let world = try World()
        let client = try world.ca.issue("factory-eu-1", names: ["factory-eu-1"], usage: .client)
        let other = try world.ca.issue("factory-eu-2", names: ["factory-eu-2"], usage: .client)
        let noCA = refusal { _ = try RedisConnection(url: world.url(RedisTLSOptions(ca: "/nonexistent/ca.pem"))) }
        #expect(noCA.contains("cannot read the CA file /nonexistent/ca.pem: No such file or directory"), "\(noCA)")
        let mismatched = refusal { _ = try RedisConnection(url: world.url(world.options(client: .init(certificate: client.certificate, key: other.key)))) }
        #expect(mismatched.contains("cannot use the client key \(other.key) (an unencrypted PEM key for \(client.certificate)): key values mismatch"), "\(mismatched)")
        let keyOnly = refusal { _ = try RedisConnection(url: world.url(RedisTLSOptions(ca: world.ca.certificate, key: client.key))) }
        #expect(keyOnly.contains("without its certificate"), "\(keyOnly)")
        // An encrypted key is refused instead of prompting for its passphrase.
        let encrypted = world.ca.directory.join("encrypted.key")
        try Command.check(["openssl", "pkey", "-in", client.key, "-out", encrypted, "-aes256", "-passout", "pass:secret"])
        let locked = refusal { _ = try RedisConnection(url: world.url(world.options(client: .init(certificate: client.certificate, key: encrypted)))) }
        #expect(locked.contains("cannot use the client key \(encrypted) (an unencrypted PEM key for \(client.certificate)): bad decrypt"), "\(locked)")
    }

    @Test func aPlainTextServerIsAClearHandshakeFailure() throws {
        let world = try World()
        let port = freeLoopbackPort()
        try world.server.cli(["CONFIG", "SET", "port", String(port)])
        let url = try RedisURL("rediss://127.0.0.1:\(port)/0", tls: world.options())
        // redis-server reads the ClientHello as the start of a command and waits for its end.
        let message = refusal { _ = try RedisConnection(url: url, connectTimeout: 1) }
        #expect(message.contains("TLS handshake with 127.0.0.1:\(port) timed out after 1.0 s (is it a TLS port?)"), "\(message)")
    }

    @Test func interruptEndsABlockedReadOverTLSAndTheLinkCloses() throws {
        let world = try World()
        let client = RedisClient(url: try world.url(world.options()), commandTimeout: 120)
        try client.connect()
        #expect(try world.connectedClients() == 2) // this client and redis-cli
        let outcome = Mutex<Result<RedisReply, RedisError>?>(nil)
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) let reader = client
        Thread.detachNewThread {
            let result = Result(catching: { () throws(RedisError) -> RedisReply in try reader.command(["XREAD", "BLOCK", "0", "STREAMS", "s", "$"]) })
            outcome.withLock { $0 = result }
            done.signal()
        }
        #expect(eventually { (try? world.blockedClients()) == 1 })
        let interrupted = Date()
        client.interrupt()
        #expect(done.wait(timeout: .now() + 5) == .success)
        #expect(Date().timeIntervalSince(interrupted) < 2)
        let result = try #require(outcome.withLock { $0 })
        #expect(throws: RedisError.self) { try result.get() }
        #expect((try? result.get()) == nil && !client.isConnected)
        // The relay saw hiredis' end shut down and closed the TLS connection: the server lets go.
        #expect(eventually { (try? world.connectedClients()) == 1 })
        // After resume() the client connects again, over TLS.
        client.resume()
        #expect(try client.command(["PING"]) == .status("PONG"))
    }

    @Test func blockReadsKeepTheLinkAndHiredisTimeoutsStillApply() throws {
        let world = try World()
        // Socket timeout 2 s, BLOCK 1 s: the server ends the read with nil; the relay is not in the way.
        let connection = try RedisConnection(url: world.url(world.options()), commandTimeout: 2)
        #expect(try connection.command(["XREAD", "BLOCK", "1000", "STREAMS", "s", "$"]) == .null)
        #expect(try connection.command(["PING"]) == .status("PONG"))
        // A read longer than the socket timeout still times out (hiredis' timeout, through the pair).
        try connection.setTimeout(0.5)
        let started = Date()
        #expect(throws: RedisError.self) { try connection.command(["XREAD", "BLOCK", "0", "STREAMS", "s", "$"]) }
        #expect(Date().timeIntervalSince(started) < 5)
        #expect(connection.isBroken)
    }

    @Test func droppingTheConnectionClosesTheTLSLink() throws {
        let world = try World()
        do {
            let connection = try RedisConnection(url: world.url(world.options()))
            #expect(try connection.command(["PING"]) == .status("PONG"))
            #expect(try world.connectedClients() == 2)
        }
        #expect(eventually { (try? world.connectedClients()) == 1 })
    }

    @Test func aRestartedServerIsAConnectionErrorThenTheClientReconnects() throws {
        let world = try World()
        let client = RedisClient(url: try world.url(world.options()))
        try client.command(["SET", "a", "1"])
        world.server.stop()
        #expect(throws: RedisError.self) { try client.command(["GET", "a"]) }
        #expect(!client.isConnected)
        try world.server.start()
        #expect(try client.command(["SET", "a", "2"]) == .status("OK"))
    }
}
