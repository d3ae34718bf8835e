import FactoryKit
import Foundation
import RedisKit
import Testing
import TestSupport

/// The ops token every gateway test's HQ runs with (`GatewayProcess.request` sends it by default).
let opsToken = "test-ops-token-0123"

/// HQ's environment for `factoryctl serve` over `fleet`: the fleet's Redis, the ops token, a role.
func hqEnvironment(_ fleet: FleetWorld, role: String = "HEADQUARTERS") -> [String: String] {
    var env = fleet.environment
    env["UA_OPS_TOKEN"] = opsToken
    env["FACTORY_ROLE"] = role
    return env
}

extension FleetWorld {
    /// No mission in the shared stream, nor in the inbox of any of `enrolled`.
    func nothingPublished(inboxesOf enrolled: [String] = []) throws -> Bool {
        try redis.cli(["EXISTS", "ua:missions:delegation"]) == "0"
            && enrolled.allSatisfy { try redis.cli(["XLEN", FactoryKeys($0).inbox]) == "0" }
    }
}

/// An answer of the gateway, for requests with headers of the test's choosing.
struct HTTPReply {
    let status: Int
    let body: String
    var json: [String: Any]? { try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any] }
}

extension GatewayProcess {
    /// `method path` with exactly `headers` (no ops token unless given), the path sent as written.
    func request(_ method: String, _ path: String, body: String? = nil, headers: [String: String]) throws -> HTTPReply {
        var argv = ["curl", "-s", "-S", "--path-as-is", "-X", method, "-w", "\n%{http_code}", "--max-time", "10"]
        for (name, value) in headers.sorted(by: { $0.key < $1.key }) { argv += ["-H", "\(name): \(value)"] }
        if body != nil { argv += ["-H", "Content-Type: application/json", "--data-binary", "@-"] }
        argv.append("http://127.0.0.1:\(port)\(path)")
        let result = try Command.run(argv, input: body)
        let lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        return HTTPReply(status: Int(lines.last ?? "") ?? -1, body: lines.dropLast().joined(separator: "\n"))
    }
}
