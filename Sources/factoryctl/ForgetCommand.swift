import ArgumentParser
import FactoryKit
import FoundationEssentials
import FactoryBasics
import Glibc

struct ForgetCommand: FactoryctlCommand {
    static let configuration = CommandConfiguration(
        commandName: "forget",
        abstract: "Remove a decommissioned factory from the fleet and revoke its credentials (HQ only).",
        discussion: """
        Deletes the factory's registration from Redis, so `status --fleet`, the fleet page and \
        `publish --wait` stop counting it. For an enrolled factory (`factoryctl enroll`) it also \
        revokes the identity: deletes its Redis ACL user (ACL DELUSER), closes its connections \
        (CLIENT KILL USER), invalidates its registration token and deletes its inbox. A factory \
        still heard from (not stale, not offline) is refused unless --force: stop its consumer \
        first (one that is not enrolled registers again at its next heartbeat). Only \
        FACTORY_ROLE=HEADQUARTERS may forget.

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

    func run(_ context: CommandContext) throws {
        try context.environment.role.require(.forget)
        let bus = try redis.bus(context)
        let registry = FleetRegistry(redis: bus.redis)
        let enrolled = try withRedis("read the enrolments") { try Enrollment(redis: bus.redis).record(factoryID) != nil }
        let now = context.now()
        let existing = try registration(in: registry, enrolled: enrolled)
        var live = false
        if let existing {
            do { live = try ForgetRule.check(existing, now: now, force: force) } catch {
                throw CommandFailure(code: .refused, message: error.description)
            }
        }
        let forgotten = try withRedis("forget \(factoryID)") {
            try Publisher(bus: bus, logger: global.logger("factoryctl.forget", context)).forget(factoryID)
        }
        try report(existing, wasLive: live, revoked: forgotten.revoked, now: now, context)
    }

    private func report(_ existing: Registration?, wasLive live: Bool, revoked: Bool, now: Date, _ context: CommandContext) throws {
        if json {
            try context.printJSON(Forgotten(factoryID: factoryID, host: existing?.host ?? "", commit: existing?.commit,
                                            lastSeenAt: existing?.lastSeenAt ?? 0, wasLive: live, revoked: revoked))
        } else if let existing {
            let host = existing.host.isEmpty ? "?" : existing.host
            let seconds = ForgetRule.secondsSinceSeen(existing, now: now)
            let after = revoked ? "; its credentials were revoked" : live ? "; still live: it registers again at its next heartbeat" : ""
            context.say("Forgot \(factoryID) (host \(host), last seen \(seconds) s ago\(after))")
        } else {
            context.say("Forgot \(factoryID) (enrolled, never registered; its credentials were revoked)")
        }
    }

    /// The factory's registration; when there is none, the failure names the closest registered ids.
    private func registration(in registry: FleetRegistry, enrolled: Bool) throws -> Registration? {
        if let existing = try withRedis("read the fleet registry", { try registry.get(factoryID) }) { return existing }
        if enrolled { return nil }
        let known = try withRedis("read the fleet registry") { try registry.entries(capabilities: false).map(\.factoryID) }
        var hint = ""
        do { try Publisher.checkRegistered(.ids([factoryID]), registered: known) } catch {
            hint = error.suggestions.isEmpty ? " (no factory has registered)" : " (registered: \(error.suggestions.joined(separator: ", ")))"
        }
        throw CommandFailure(code: .failedUnchanged, message: "no factory '\(factoryID)' is registered\(hint); nothing was removed")
    }
}

struct Forgotten: Encodable {
    let factoryID: String
    let host: String
    let commit: String?
    let lastSeenAt: Double
    let wasLive: Bool
    /// An enrolment was revoked (Redis user deleted, connections closed, token invalid).
    let revoked: Bool

    enum CodingKeys: String, CodingKey {
        case host, commit, revoked
        case factoryID = "factory_id", lastSeenAt = "last_seen_at", wasLive = "was_live"
    }
}
