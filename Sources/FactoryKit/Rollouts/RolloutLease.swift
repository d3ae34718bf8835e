import FoundationEssentials
import Dispatch
import FactoryBasics
import Glibc
import Logging
import RedisKit
import Synchronization

/// One runner drives a rollout at a time: `publish --wait`, `resume-rollout`, or serve's rollout
/// thread each take `factoryctl:rollout:<id>:lease` first (SET NX PX: atomic), with a value
/// naming the runner, its host and pid, and a random token. A thread of its own renews it every
/// third of its lifetime; the runner confirms it (renewing it on its own connection) right
/// before every write that moves the rollout — sending a wave, advancing, halting, finishing —
/// so two waves are never in flight and no wave's failures are counted twice. It is released by
/// compare-and-delete at the end; a runner that dies frees it by expiry.
public final class RolloutLease: Sendable {
    public static let defaultSeconds: Double = 30

    /// Who holds a rollout's lease, as its value says.
    public struct Holder: Sendable, CustomStringConvertible {
        public let runner: String
        public let host: String
        public let pid: Int64
        public let since: Double

        init?(text: String) {
            guard let json = JSONValue.parse(text) else { return nil }
            runner = json["runner"]?.string ?? "?"
            host = json["host"]?.string ?? "?"
            pid = Int64(json["pid"]?.number ?? 0)
            since = json["since"]?.number ?? 0
        }

        public var description: String {
            let age = max(0, Int(Date().timeIntervalSince1970 - since))
            return "\(runner), pid \(pid) on \(host) (for \(age) s)"
        }
    }

    /// Another runner holds the lease: refused, nothing sent.
    public struct Busy: Error, CustomStringConvertible, Sendable {
        public let rolloutID: String
        /// nil when the value could not be read (it expired meanwhile, or is not factoryctl's).
        public let holder: Holder?
        public let expiresIn: Double?

        public var description: String {
            let who = holder.map { "\($0)" } ?? "another runner"
            let expiry = expiresIn.map { " within \(Int($0.rounded(.up))) s" } ?? ""
            return "rollout \(rolloutID) is already being driven by \(who); nothing was sent and the rollout is unchanged. Follow it with `factoryctl status --rollout \(rolloutID)`; if that runner is gone, its lease expires\(expiry) and `factoryctl publish resume-rollout \(rolloutID)` works then"
        }
    }

    /// This runner's lease expired or was taken over: it stops without another write.
    public struct Lost: Error, CustomStringConvertible, Sendable {
        public let rolloutID: String
        public var description: String {
            "lost the lease on rollout \(rolloutID) (it could not be renewed in time, and another runner may drive it now); stopped without sending or recording anything more. See `factoryctl status --rollout \(rolloutID)`"
        }
    }

    public static func key(_ rolloutID: String) -> String { Rollout.key(rolloutID) + ":lease" }

    /// Writes under this lease: Redis refuses them (`FENCED`) once the lease is another's or gone.
    public var fence: WriteFence { WriteFence(key: key, value: value) }

    public let rolloutID: String
    let key: String
    /// The lease's value: the holder and a random token; compared whole on renew and release.
    let value: String
    let seconds: Double
    /// Set once the lease is lost (not renewed in time, or taken over); never cleared.
    public let lost = StopSignal()
    private let renewing = DispatchSemaphore(value: 0)
    private let renewerDone = DispatchSemaphore(value: 0)
    private let released = Mutex(false)

    private init(rolloutID: String, value: String, seconds: Double) {
        self.rolloutID = rolloutID
        key = Self.key(rolloutID)
        self.value = value
        self.seconds = seconds
    }

    /// Takes the lease, or throws `Busy` naming the holder. Renewal runs on its own connection to `url`.
    public static func acquire(redis: RedisClient, rolloutID: String, runner: String, seconds: Double,
                               logger: Logger) throws -> RolloutLease {
        let token = String(UInt64.random(in: .min ... .max), radix: 16) + String(UInt64.random(in: .min ... .max), radix: 16)
        let value = JSONValue.object([
            "runner": .string(runner), "host": .string(ProcessInfo.processInfo.hostName), "pid": .int(Int64(getpid())),
            "since": .double(Date().timeIntervalSince1970), "token": .string(token),
        ]).pythonJSON
        let lease = RolloutLease(rolloutID: rolloutID, value: value, seconds: seconds)
        let reply = try redis.command(["SET", lease.key, value, "NX", "PX", lease.milliseconds])
        guard reply.text == "OK" else {
            let holder = try redis.command(["GET", lease.key]).text.flatMap(Holder.init(text:))
            let left = try redis.command(["PTTL", lease.key]).integer.flatMap { $0 > 0 ? Double($0) / 1000 : nil }
            throw Busy(rolloutID: rolloutID, holder: holder, expiresIn: left)
        }
        lease.startRenewing(url: redis.url, logger: logger)
        return lease
    }

    private var milliseconds: String { String(Int64(seconds * 1000)) }

    /// Renews the lease on the caller's connection; throws `Lost` when it is no longer this runner's.
    /// Called right before every write that moves the rollout: for `seconds` after it returns, no
    /// other runner can take the lease.
    public func confirm(_ redis: RedisClient) throws {
        guard !lost.isSet, try renew(redis) else {
            lost.set()
            throw Lost(rolloutID: rolloutID)
        }
    }

    /// Stops renewing and deletes the lease if it is still this runner's.
    public func release(_ redis: RedisClient) {
        guard !released.withLock({ done in defer { done = true }; return done }) else { return }
        renewing.signal()
        renewerDone.wait()
        _ = try? redis.command(["EVAL", Self.releaseScript, "1", key, value])
    }

    private func renew(_ redis: RedisClient) throws -> Bool {
        try redis.command(["EVAL", Self.renewScript, "1", key, value, milliseconds]).integer == 1
    }

    /// Renews every third of the lifetime until released; flags the lease lost when it is taken
    /// over, or when no renewal got through for a whole lifetime (Redis unreachable).
    private func startRenewing(url: RedisURL, logger: Logger) {
        detachThread { [self] in
            let redis = RedisClient(url: url, connectTimeout: 2, commandTimeout: 5)
            var renewedAt = Monotonic.now
            while renewing.wait(timeout: .now() + seconds / 3) == .timedOut {
                do {
                    if try renew(redis) { renewedAt = Monotonic.now; continue }
                    logger.error("rollout \(rolloutID): the lease was taken over; stopping")
                    lost.set()
                    break
                } catch {
                    logger.warning("rollout \(rolloutID): could not renew the lease (\(error))")
                    if Monotonic.now - renewedAt >= seconds {
                        lost.set()
                        break
                    }
                }
            }
            renewerDone.signal()
        }
    }

    static let renewScript = """
    if redis.call('GET', KEYS[1]) == ARGV[1] then
      redis.call('SET', KEYS[1], ARGV[1], 'XX', 'PX', ARGV[2])
      return 1
    end
    return 0
    """

    static let releaseScript = """
    if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
    return 0
    """
}
