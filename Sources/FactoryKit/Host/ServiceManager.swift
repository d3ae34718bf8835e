import CSupport
import FoundationEssentials
import Dispatch
import FactoryBasics
import Glibc
import Logging

/// Restarts app services with `systemctl --user` (argv, no shell) and watches them come up.
public struct ServiceManager {
    public let runner: ProcessRunner
    public let logger: Logger
    /// The first pause between two reads of the service state; it doubles up to
    /// `maxPollInterval`. A crash is seen within a second, and a 3 s window costs six
    /// `systemctl show` calls (each a D-Bus round trip and a few ms of CPU), not sixty.
    public var pollInterval: Double = 0.2
    public var maxPollInterval: Double = 1

    public init(runner: ProcessRunner, logger: Logger) {
        self.runner = runner
        self.logger = logger
    }

    /// Restarts each service and returns the ones that did not come up.
    ///
    /// Instead of sleeping a fixed time and asking `is-active` once, each service's state is read
    /// (`systemctl --user show`) at once, then after 0.2 s and less and less often (at most a
    /// second apart), until it is known:
    /// - failed, inactive, or back in `activating` for an automatic restart (a crash loop):
    ///   not up, at once;
    /// - active, for a unit that tells systemd when it is ready (Type=notify, notify-reload,
    ///   dbus, forking, oneshot): up, at once — `systemctl restart` returned after readiness;
    /// - active, for a unit that does not (Type=simple, exec, idle): up once it has stayed active
    ///   with the same main process for `settle` seconds;
    /// - still activating after `settle` seconds (or 30, if larger): not up.
    /// Where `show` is not available, falls back to waiting `settle` and asking `is-active`.
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
        let watched = services.filter { !failed.contains($0) }
        failed += watch(watched, settle: settle)
        return failed
    }

    /// The properties `show` is asked for.
    static let properties = "Type,ActiveState,SubState,NRestarts,MainPID,ExecMainStartTimestampMonotonic"

    public struct UnitState: Equatable, Sendable, Codable {
        var type: String
        var active: String
        var sub: String
        var restarts: String
        var mainPID: String
        var started: String

        init?(showOutput: String) {
            var values: [String: String] = [:]
            for line in showOutput.split(separator: "\n") {
                guard let equals = line.firstIndex(of: "=") else { continue }
                values[String(line[..<equals])] = String(line[line.index(after: equals)...])
            }
            guard let active = values["ActiveState"], !active.isEmpty else { return nil }
            self.active = active
            type = values["Type"] ?? "simple"
            sub = values["SubState"] ?? ""
            restarts = values["NRestarts"] ?? ""
            mainPID = values["MainPID"] ?? ""
            started = values["ExecMainStartTimestampMonotonic"] ?? ""
        }

        /// systemd itself waited for readiness before `restart` returned.
        var reportsReadiness: Bool { ["notify", "notify-reload", "dbus", "forking", "oneshot"].contains(type) }
        /// The same run of the service (no restart in between).
        func sameRun(as other: UnitState) -> Bool {
            restarts == other.restarts && mainPID == other.mainPID && started == other.started
        }
    }

    /// This boot's id (`/proc/sys/kernel/random/boot_id`): unit states compare only within one boot.
    public static var bootID: String? {
        FileManager.default.contents(atPath: "/proc/sys/kernel/random/boot_id")
            .map { String(decoding: $0, as: UTF8.self).trimmed }
    }

    func state(of service: String) -> UnitState? {
        guard let result = try? runner.run(["systemctl", "--user", "show", "--property=\(Self.properties)", service],
                                           timeout: 30), result.succeeded else { return nil }
        return UnitState(showOutput: result.outputTail)
    }

    private func watch(_ services: [String], settle: Double) -> [String] {
        var failed: [String] = []
        var pending = services
        var stableSince: [String: (state: UnitState, at: Date)] = [:]
        let start = Date()
        let activatingLimit = max(settle, 30)
        var interval = pollInterval
        while !pending.isEmpty {
            for service in pending {
                guard let state = state(of: service) else {
                    // No `show` (an old or minimal systemctl): the old way.
                    pending.removeAll { $0 == service }
                    let waited = Date().timeIntervalSince(start)
                    if settle > waited { sleep(seconds: settle - waited) }
                    if !isActive(service) { failed.append(service) }
                    continue
                }
                switch state.active {
                case "active" where state.reportsReadiness:
                    pending.removeAll { $0 == service }
                case "active", "reloading":
                    if let since = stableSince[service], since.state.sameRun(as: state) {
                        if Date().timeIntervalSince(since.at) >= settle { pending.removeAll { $0 == service } }
                    } else {
                        if stableSince[service] != nil { logger.warning("\(service) restarted again while being watched") }
                        stableSince[service] = (state, Date())
                        if settle <= 0 { pending.removeAll { $0 == service } }
                    }
                case "activating" where state.sub == "auto-restart", "failed", "inactive", "deactivating":
                    logger.warning("\(service) is \(state.active)\(state.sub.isEmpty ? "" : " (\(state.sub))") after the restart")
                    pending.removeAll { $0 == service }
                    failed.append(service)
                default: // activating: not known yet
                    if Date().timeIntervalSince(start) >= activatingLimit {
                        logger.warning("\(service) is still \(state.active) after \(Int(activatingLimit)) s")
                        pending.removeAll { $0 == service }
                        failed.append(service)
                    }
                }
            }
            guard !pending.isEmpty else { break }
            // Never sleep past the moment a watched window completes.
            let now = Date()
            let untilWindowEnds = pending.compactMap { stableSince[$0].map { settle - now.timeIntervalSince($0.at) } }.filter { $0 > 0 }.min()
            sleep(seconds: min(interval, untilWindowEnds.map { $0 + 0.001 } ?? interval))
            interval = min(interval * 2, maxPollInterval)
        }
        return failed
    }

    /// nil when `systemctl --user` reaches the user's service manager; else systemctl's own words
    /// ("Failed to connect to bus: No medium found"). Asks for the manager's Version property:
    /// one D-Bus round trip, and nothing secret in the answer (unlike show-environment).
    public func unreachableReason() -> String? {
        do {
            let result = try runner.run(["systemctl", "--user", "show", "--property=Version"], timeout: 30)
            if result.succeeded { return nil }
            let words = result.outputTail.split(separator: "\n").suffix(3).joined(separator: " | ")
            return words.isEmpty ? result.failureSummary : words
        } catch {
            return "\(error)"
        }
    }

    public func isActive(_ service: String) -> Bool {
        guard let result = try? runner.run(["systemctl", "--user", "is-active", service], timeout: 30) else { return false }
        let state = result.outputTail.trimmed
        if !result.succeeded { logger.warning("\(service) is \(state.isEmpty ? "not active" : state)") }
        return result.succeeded && state == "active"
    }
}
