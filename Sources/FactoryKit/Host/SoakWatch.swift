import FoundationEssentials
import FactoryBasics
import HTTPKit
import Logging

/// The soak window after a restart (`--soak`, `UA_FACTORY_SOAK_SECONDS`): the update is
/// provisional until the restarted units have stayed up, in the same run, for `seconds`, and the
/// health URL (when set) has not failed several times in a row. A restart that merely succeeded
/// proves little: a service that crashes a minute later, and is restarted by systemd, is caught
/// here.
public struct SoakWatch {
    public let services: [String]
    public let health: HealthGate?
    public let seconds: Double
    public let manager: ServiceManager
    /// How often the units and the health URL are asked.
    public var pollInterval: Double = 1
    /// Health answers that must fail in a row to fail the soak: one blip is not enough.
    public var healthFailuresInARow = 3

    public init(services: [String], health: HealthGate?, seconds: Double, manager: ServiceManager) {
        self.services = services
        self.health = health
        self.seconds = seconds
        self.manager = manager
    }

    /// What failed a soak: which unit or URL, what was seen, and when.
    public struct Failure: Error, Sendable, Equatable, CustomStringConvertible {
        public let what: String
        public let seen: String
        /// Seconds into the soak.
        public let after: Double

        public var description: String { "\(what): \(seen), \(Int(after)) s into the soak" }
    }

    public enum Outcome: Equatable {
        case passed
        case failed(Failure)
        /// Asked to stop before the window ended: nothing is proven either way.
        case stopped(secondsLeft: Double)
    }

    /// Each unit's run as the restart left it: what the soak compares against. Taken before the
    /// update is recorded as soaking, so a crash right after that is never part of the baseline.
    public typealias Baseline = [String: ServiceManager.UnitState]

    public func baseline() -> Baseline {
        var baseline: Baseline = [:]
        for service in services {
            if let state = manager.state(of: service) { baseline[service] = state }
        }
        return baseline
    }

    /// Watches until the window ends, something fails, or `shouldStop` says so. `tick` is told the
    /// seconds left after each look (for progress).
    public func run(from baseline: Baseline? = nil, shouldStop: () -> Bool = { false }, tick: (Double) -> Void = { _ in }) -> Outcome {
        let start = Date()
        let baseline = baseline ?? self.baseline()
        var healthFailures = 0
        var lastHealth = ""
        while true {
            let elapsed = Date().timeIntervalSince(start)
            for service in services {
                if let failure = check(service, baseline: baseline[service], after: elapsed) { return .failed(failure) }
            }
            if let health {
                // Never waits much past the window's end (a URL that hangs is asked again, not waited on).
                let timeout = min(5, health.timeout, max(1, seconds - elapsed))
                if let why = Self.ask(health, timeout: timeout) {
                    healthFailures += 1
                    lastHealth = why
                    if healthFailures >= healthFailuresInARow {
                        return .failed(Failure(what: health.url, seen: "failed \(healthFailures) times in a row (last: \(lastHealth))", after: elapsed))
                    }
                } else {
                    healthFailures = 0
                }
            }
            let left = seconds - Date().timeIntervalSince(start)
            // Passed only when the last answer was good: a run of failures at the end is asked
            // about until it either recovers or fails the soak.
            if left <= 0, healthFailures == 0 { return .passed }
            tick(max(0, left))
            if shouldStop() { return .stopped(secondsLeft: max(0, left)) }
            sleep(seconds: min(pollInterval, max(0.2, left)))
        }
    }

    /// A unit that is no longer the run the restart started (a new main PID, `NRestarts` up), or
    /// is no longer active, fails the soak.
    func check(_ service: String, baseline: ServiceManager.UnitState?, after elapsed: Double) -> Failure? {
        guard let now = manager.state(of: service) else {
            // No `show`: only whether it is active can be known.
            return manager.isActive(service) ? nil : Failure(what: service, seen: "not active", after: elapsed)
        }
        if now.active != "active" && now.active != "reloading" {
            return Failure(what: service, seen: "\(now.active)\(now.sub.isEmpty ? "" : " (\(now.sub))")", after: elapsed)
        }
        if let baseline, !now.sameRun(as: baseline) {
            var changes: [String] = []
            if now.mainPID != baseline.mainPID { changes.append("main PID \(baseline.mainPID) → \(now.mainPID)") }
            if now.restarts != baseline.restarts { changes.append("NRestarts \(baseline.restarts) → \(now.restarts)") }
            if changes.isEmpty { changes.append("started again") }
            return Failure(what: service, seen: "restarted (\(changes.joined(separator: ", ")))", after: elapsed)
        }
        return nil
    }

    /// nil when the URL answered 2xx; else what it said.
    static func ask(_ health: HealthGate, timeout: Double) -> String? {
        do {
            let status = try HTTPClient.get(health.url, timeout: timeout)
            return (200..<300).contains(status) ? nil : "HTTP \(status)"
        } catch {
            return error.message
        }
    }
}
