import Foundation

/// `factoryctl serve` as a child process on a free loopback port, with a real redis-server.
public final class GatewayProcess: @unchecked Sendable {
    public let process: ConsumerProcess
    public let port: Int

    public init(fleet: FleetWorld, environment: [String: String], arguments: [String] = []) throws {
        let log = fleet.world.directory.join("serve-\(UUID().uuidString.prefix(6)).log")
        let process = try ConsumerProcess(binary: FactoryctlBinary.path,
                                          arguments: ["serve", "--port", "0", "--redis-url", fleet.redis.url] + arguments,
                                          environment: environment, log: log)
        self.process = process
        var found = 0
        _ = eventually(timeout: 30) {
            let output = process.output
            if let range = output.range(of: #"listening on 127\.0\.0\.1:(\d+)"#, options: .regularExpression) {
                found = Int(output[range].split(separator: ":").last ?? "") ?? 0
            }
            return found > 0 || process.status != nil
        }
        guard found > 0 else {
            process.stop()
            throw Command.Failed(argv: ["factoryctl", "serve"], status: process.status ?? -1,
                                 output: "did not start listening: \(process.output)")
        }
        port = found
    }

    public struct Reply {
        public let status: Int
        public let body: String
        public var json: [String: Any]? { try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any] }
    }

    public func request(_ method: String, _ path: String, body: String? = nil, token: String? = "test-ops-token-0123") throws -> Reply {
        // --path-as-is: send dot segments and slashes exactly as written.
        var argv = ["curl", "-s", "-S", "--path-as-is", "-X", method, "-w", "\n%{http_code}", "--max-time", "10"]
        if let token { argv += ["-H", "x-ua-ops-token: \(token)"] }
        if body != nil { argv += ["-H", "Content-Type: application/json", "--data-binary", "@-"] }
        argv.append("http://127.0.0.1:\(port)\(path)")
        let result = try Command.run(argv, input: body)
        let lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        return Reply(status: Int(lines.last ?? "") ?? -1, body: lines.dropLast().joined(separator: "\n"))
    }
}
