import FactoryBasics
import FoundationEssentials

/// The liveness rule for `forget`: a factory is live while it heartbeats (not stale after
/// `FleetRegistry.staleAfter`) and has not said it went offline. A live one would register
/// again at its next heartbeat, so forgetting it takes `force`.
public enum ForgetRule {
    public static func isLive(_ registration: Registration, now: Date) -> Bool {
        !registration.isStale(now: now, after: FleetRegistry.staleAfter) && registration.registrationStatus != "offline"
    }

    /// Whether it is live (forgotten anyway with `force`); the refusal when it is and `force` is not given.
    public static func check(_ registration: Registration, now: Date, force: Bool) throws(StillLive) -> Bool {
        let live = isLive(registration, now: now)
        if live, !force { throw StillLive(registration: registration, now: now) }
        return live
    }

    /// Whole seconds since the factory was last heard from.
    public static func secondsSinceSeen(_ registration: Registration, now: Date) -> Int {
        wholeNumber(max(0, now.timeIntervalSince1970 - registration.lastSeenAt))
    }

    public struct StillLive: Error, CustomStringConvertible, Sendable {
        public let registration: Registration
        public let now: Date

        public var description: String {
            let host = registration.host.isEmpty ? "?" : registration.host
            let seconds = ForgetRule.secondsSinceSeen(registration, now: now)
            return "'\(registration.factoryID)' is live (\(registration.registrationStatus), heard from \(seconds) s ago on \(host)) and would register again; stop its consumer first (systemctl --user disable --now factoryctl-consume on that machine), or pass --force. Nothing was removed"
        }
    }
}
