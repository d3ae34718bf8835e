import FoundationEssentials
import FactoryBasics

/// Why an update mission waits on a factory instead of running now — outside the maintenance
/// window (`UA_FACTORY_UPDATE_WINDOW`), or while the app holds its update lock
/// (`UA_FACTORY_UPDATE_LOCK`) — as the factory's registration says it. The mission stays
/// un-acked meanwhile (pending in the factory's group), so a restart reads it again.
struct Deferral: Equatable {
    enum Reason: String {
        case window
        case appLock = "app_lock"
    }

    let jobID: String
    let reason: Reason
    /// When it is tried next: the window's opening. Nil for the app's lock (tried every
    /// `ConsumerConfiguration.appLockRetrySeconds`).
    let until: Double?
    /// The mission's expiry (its entry's time plus its `timeout_seconds`).
    let expiresAt: Double
    /// "deferred until 2026-12-08 02:00:00 +0100 (maintenance window Mon-Fri 02:00-04:00)".
    let text: String

    /// The registration's metadata while the mission waits.
    var metadata: [String: JSONValue] {
        var fields: [String: JSONValue] = [
            "deferred": .string(text), "deferred_job_id": .string(jobID), "deferred_reason": .string(reason.rawValue),
            "deferred_expires_at": .double(expiresAt),
        ]
        if let until { fields["deferred_until"] = .double(until) }
        return fields
    }
}

/// Whether the newest update mission may run now: the window and the app's lock, checked before
/// anything else happens for it (no splay, no fetch).
struct DeferralCheck {
    let window: UpdateWindow?
    let appLockPath: String?
    let clock: any LocalClock

    enum Decision: Equatable {
        case run
        case wait(Deferral)
        /// It cannot run before it expires: reported (FAILED, nothing changed) and acked.
        case expire(UpdateFailure, String)
    }

    /// A mission must have this long left when it starts: the update itself needs time.
    static func lead(timeoutSeconds: Int64) -> Double { min(60, Double(timeoutSeconds) / 4) }

    func decide(_ mission: Mission, expiresAt: Double, now: Double) -> Decision {
        let lead = Self.lead(timeoutSeconds: mission.envelope.timeoutSeconds)
        if let window, !mission.ignoreWindow, !window.isOpen(at: now, clock: clock) {
            let opens = window.nextOpening(after: now, clock: clock)
            let place = "maintenance window \(window) (UA_FACTORY_UPDATE_WINDOW)"
            guard opens < expiresAt - lead else {
                return .expire(.outsideWindow, "not run: outside the \(place); it next opens at \(UpdateWindow.localText(opens)), after the mission expires at \(UpdateWindow.localText(expiresAt)). Nothing was changed; publish it again with a --mission-timeout that reaches into the window, or with --ignore-window")
            }
            return .wait(Deferral(jobID: mission.jobID, reason: .window, until: opens, expiresAt: expiresAt,
                                  text: "deferred until \(UpdateWindow.localText(opens)) (\(place))"))
        }
        if let path = appLockPath, appLockHeld(path) {
            guard now < expiresAt - lead else {
                return .expire(.appLockHeld, "not run: the app held its update lock \(path) (UA_FACTORY_UPDATE_LOCK) until the mission expired at \(UpdateWindow.localText(expiresAt)). Nothing was changed; publish it again when the app is idle, or update with --ignore-app-lock")
            }
            return .wait(Deferral(jobID: mission.jobID, reason: .appLock, until: nil, expiresAt: expiresAt,
                                  text: "deferred: the app holds its update lock \(path) (UA_FACTORY_UPDATE_LOCK); trying again until it lets go"))
        }
        return .run
    }

    /// The app holds its lock now. A lock that cannot be opened is the pipeline's to report.
    private func appLockHeld(_ path: String) -> Bool {
        do {
            let lock = try AppLock.acquire(path: path, timeout: 0)
            withExtendedLifetime(lock) {}
            return false
        } catch {
            if case .held = error { return true }
            return false
        }
    }

    /// The window as the consumer announces it at start: "open until …" or "closed; opens at …".
    static func describe(_ window: UpdateWindow, now: Double, clock: any LocalClock) -> String {
        let state = window.closing(after: now, clock: clock).map { "open until \(UpdateWindow.localText($0))" }
            ?? "closed; opens at \(UpdateWindow.localText(window.nextOpening(after: now, clock: clock)))"
        return "maintenance window \(window) (UA_FACTORY_UPDATE_WINDOW; local time now \(UpdateWindow.localText(now))): \(state); update missions outside it are deferred"
    }

    /// A mission's expiry: the time in its stream entry's id (when it was published) plus its
    /// `timeout_seconds`; the time it was read when the id's time is unusable (ahead of this
    /// clock by more than a minute).
    static func expiry(entryID: String, receivedAt: Date, timeoutSeconds: Int64) -> Double {
        let received = receivedAt.timeIntervalSince1970
        var published = received
        if let milliseconds = entryID.split(separator: "-").first.flatMap({ Double($0) }), milliseconds / 1000 <= received + 60 {
            published = milliseconds / 1000
        }
        return published + Double(timeoutSeconds)
    }
}
