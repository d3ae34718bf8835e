import ArgumentParser
import FactoryKit
import FoundationEssentials
import FactoryBasics
import Glibc

struct ForgetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "forget",
        abstract: "Remove a decommissioned factory from the fleet registry (HQ only).",
        discussion: """
        Deletes the factory's registration from Redis, so `status --fleet`, the fleet page and \
        `publish --wait` stop counting it. A factory still heard from (not stale, not offline) \
        would register again at its next heartbeat, so it is refused unless --force: stop its \
        consumer first. Only FACTORY_ROLE=HEADQUARTERS may forget.

        Examples:
          factoryctl forget eu-3
          factoryctl forget eu-3 --json
        """
    )

    @OptionGroup var global: GlobalOptions
    @OptionGroup var redis: RedisOptions

    @Argument(help: ArgumentHelp("The factory id.", valueName: "id"), completion: .custom(Completions.factoryIDs))
    var factoryID: String

    @Flag(name: .long, help: "Forget it even though its consumer is still heard from.")
    var force = false

    @Flag(name: .long, help: "Print one JSON object instead of text.")
    var json = false

    func validate() throws {
        guard MissionID.isValid(factoryID) else { throw ValidationError("invalid factory id '\(factoryID)'") }
    }

    func run() throws {
        let environment = FactoryEnvironment.current
        guard environment.role == "HEADQUARTERS" else {
            throw CommandFailure(code: .refused,
                                 message: "forget is not allowed on this machine (FACTORY_ROLE=\(environment.role)); run it at HQ, where FACTORY_ROLE=HEADQUARTERS")
        }
        let bus = try redis.bus(environment)
        let publisher = Publisher(bus: bus, logger: global.logger("factoryctl.forget"))
        let registry = FleetRegistry(redis: bus.redis)
        let existing = try withRedis("read the fleet registry") { try registry.get(factoryID) }
        guard let existing else {
            let known = try withRedis("read the fleet registry") { try registry.entries(capabilities: false).map(\.factoryID) }
            var hint = ""
            do { try Publisher.checkRegistered(.ids([factoryID]), registered: known) } catch {
                hint = error.suggestions.isEmpty ? " (no factory has registered)" : " (registered: \(error.suggestions.joined(separator: ", ")))"
            }
            throw CommandFailure(code: .failedUnchanged, message: "no factory '\(factoryID)' is registered\(hint); nothing was removed")
        }
        let seconds = Int(max(0, Date().timeIntervalSince1970 - existing.lastSeenAt))
        let live = !existing.isStale(after: FleetRegistry.staleAfter) && existing.registrationStatus != "offline"
        if live, !force {
            throw CommandFailure(code: .refused, message: "'\(factoryID)' is live (\(existing.registrationStatus), heard from \(seconds) s ago on \(existing.host.isEmpty ? "?" : existing.host)) and would register again; stop its consumer first (systemctl --user disable --now factoryctl-consume on that machine), or pass --force. Nothing was removed")
        }
        _ = try withRedis("forget \(factoryID)") { try publisher.forget(factoryID) }
        if json {
            try printJSON(Forgotten(factoryID: factoryID, host: existing.host, commit: existing.commit,
                                    lastSeenAt: existing.lastSeenAt, wasLive: live))
        } else {
            say("Forgot \(factoryID) (host \(existing.host.isEmpty ? "?" : existing.host), last seen \(seconds) s ago\(live ? "; still live: it registers again at its next heartbeat" : ""))")
        }
    }
}

struct Forgotten: Encodable {
    let factoryID: String
    let host: String
    let commit: String?
    let lastSeenAt: Double
    let wasLive: Bool

    enum CodingKeys: String, CodingKey {
        case host, commit
        case factoryID = "factory_id", lastSeenAt = "last_seen_at", wasLive = "was_live"
    }
}
