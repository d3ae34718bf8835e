import Foundation
import Logging

/// Restarts app services with `systemctl --user` (argv, no shell) and checks they came up.
public struct ServiceManager {
    public let runner: ProcessRunner
    public let logger: Logger

    public init(runner: ProcessRunner, logger: Logger) {
        self.runner = runner
        self.logger = logger
    }

    /// Restarts each service, waits `settle` seconds, and returns the ones that are not active.
    public func restart(_ services: [String], settle: Double) -> [String] {
        var failed: [String] = []
        for service in services {
            logger.info("restarting \(service)")
            do {
                let result = try runner.run(["systemctl", "--user", "restart", service], timeout: 120)
                if !result.succeeded {
                    logger.error("\(result.failureSummary)")
                    failed.append(service)
                }
            } catch {
                logger.error("\(error)")
                failed.append(service)
            }
        }
        if settle > 0 { Thread.sleep(forTimeInterval: settle) }
        for service in services where !failed.contains(service) {
            if !isActive(service) { failed.append(service) }
        }
        return failed
    }

    public func isActive(_ service: String) -> Bool {
        guard let result = try? runner.run(["systemctl", "--user", "is-active", service], timeout: 30) else { return false }
        let state = result.outputTail.trimmingCharacters(in: .whitespacesAndNewlines)
        if !result.succeeded { logger.warning("\(service) is \(state.isEmpty ? "not active" : state)") }
        return result.succeeded && state == "active"
    }
}
