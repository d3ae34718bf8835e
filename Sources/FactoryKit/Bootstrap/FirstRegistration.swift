import FoundationEssentials
import FactoryBasics
import Glibc
import GitKit
import RedisKit

/// Waiting for the factory's first registration: the consumer started by bootstrap registers
/// on the bootstrapped commit. Read with the factory's own credentials, where it writes it: an
/// enrolled factory's own key (its user may read it), else its field of the shared registry.
struct FirstRegistration {
    let environment: FactoryEnvironment
    let factoryID: String
    let commit: ObjectID?
    let timeout: Double
    var shouldCancel: () -> Bool = { false }

    enum Outcome: Equatable {
        /// Seen: its status.
        case registered(String)
        /// These credentials may not read it (a factory enrolled before bootstrap existed).
        case unreadable(String)
    }

    private var consequence: String {
        "The factory is bootstrapped and its consumer was started, but it has not registered"
    }

    func wait() throws(BootstrapFailure) -> Outcome {
        let url: RedisURL
        do {
            url = try environment.redisServerURL(flag: nil)
        } catch {
            throw BootstrapFailure(.usage, "\(consequence): the Redis URL is not valid (\(error)); fix UA_REDIS_URL in the env file, then run bootstrap again (it only waits)")
        }
        let redis = RedisClient(url: url, connectTimeout: 5, commandTimeout: 5)
        let enrolled = (try? environment.enrolled()) ?? false
        let read = enrolled ? ["GET", FactoryKeys(factoryID).registration] : ["HGET", FleetRegistry.key, factoryID]
        let started = Monotonic.now
        while true {
            do {
                let reply = try redis.command(read)
                if let registration = reply.text.flatMap(Registration.init(text:)), registration.factoryID == factoryID,
                   commit.map({ registration.commit == $0.hex }) ?? true, !registration.isStale(after: FleetRegistry.staleAfter) {
                    return .registered(registration.registrationStatus)
                }
            } catch {
                if error.replyCode == "NOPERM" {
                    return .unreadable("these credentials may not read \(read[1]) (enrolled before bootstrap existed: `factoryctl enroll \(factoryID) --rotate` at HQ grants it); check the registration at HQ with `factoryctl status --fleet`")
                }
                if error.isConnectionError {
                    throw BootstrapFailure(.redisUnavailable, "\(consequence): Redis at \(url) is not reachable (\(error)). Check UA_REDIS_URL in the env file and the network to HQ; once Redis answers, the consumer registers by itself, and running bootstrap again only waits for it")
                }
                throw BootstrapFailure(.failed, "\(consequence): reading its registration failed: \(error)")
            }
            if Monotonic.now - started >= timeout || shouldCancel() {
                throw BootstrapFailure(.timedOut, "\(consequence) within \(Int(timeout)) s; see `journalctl --user -u \(BootstrapRequest.consumerUnit)`. Running bootstrap again changes nothing else and waits again")
            }
            sleep(seconds: 0.2)
        }
    }
}
