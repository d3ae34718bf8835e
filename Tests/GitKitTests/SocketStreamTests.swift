import Foundation
import GitKit
import Glibc
import Testing
import TestSupport

/// libgit2 connects through factoryctl's socket stream (Sources/CGit2Loader/socket_stream.c),
/// which sets TCP_NODELAY; libgit2 1.5's own stream does not, and an HTTPS fetch then waits twice
/// for the server's delayed ACK. libgit2's TLS stream is built on the same registered stream, so
/// checking the plain HTTP connection checks the socket under HTTPS too.
@Suite struct SocketStreamTests {
    init() throws { try GitLibrary.initialize() }

    /// The TCP sockets of this process connected to 127.0.0.1:`port`, each with whether
    /// TCP_NODELAY is set on it.
    static func connectedSockets(toPort port: UInt16) -> [(fd: Int32, noDelay: Bool)] {
        let descriptors = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd"))?.compactMap { Int32($0) } ?? []
        return descriptors.compactMap { fd in
            var address = sockaddr_in()
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let named = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &length) }
            }
            guard named == 0, address.sin_family == sa_family_t(AF_INET), UInt16(bigEndian: address.sin_port) == port else { return nil }
            var value: Int32 = 0
            var size = socklen_t(MemoryLayout<Int32>.size)
            guard getsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &value, &size) == 0 else { return nil }
            return (fd, value != 0)
        }
    }

    @Test func anHTTPFetchConnectsWithNagleOff() throws {
        let world = try GitWorld()
        let target = try world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        let portFile = world.directory.join("http-port")
        let server = try ConsumerProcess(binary: "/usr/bin/python3",
                                         arguments: [Package.root + "/Tests/fixtures/git-http-server.py", "--root", world.directory.path,
                                                     "--port-file", portFile],
                                         environment: world.environment, log: world.directory.join("http-server.log"))
        defer { server.stop() }
        try #require(eventually(timeout: 20) { FileManager.default.fileExists(atPath: portFile) }, "\(server.output)")
        let port = try #require(UInt16(try String(contentsOfFile: portFile, encoding: .utf8)))
        try world.git(["remote", "set-url", "origin", "http://127.0.0.1:\(port)/origin.git"], in: world.factory)

        // Looked at while the pack arrives, that is while libgit2's connection is open.
        var seen: [(fd: Int32, noDelay: Bool)] = []
        let repository = try Repository.open(at: world.factory)
        try repository.fetch(options: FetchOptions(environment: world.environment, progress: { _ in
            if seen.isEmpty { seen = Self.connectedSockets(toPort: port) }
        }))

        #expect(try world.git(["rev-parse", "origin/main"], in: world.factory) == target)
        #expect(!seen.isEmpty, "no socket to port \(port) was open during the fetch")
        let withoutNoDelay = seen.filter { !$0.noDelay }.map(\.fd)
        #expect(withoutNoDelay.isEmpty, "sockets without TCP_NODELAY: \(withoutNoDelay) of \(seen.map(\.fd))")
    }
}
