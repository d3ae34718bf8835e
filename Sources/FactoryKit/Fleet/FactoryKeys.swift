import FoundationEssentials

/// The Redis keys of one enrolled factory. Its own ACL user (`factory:<id>`) may touch only these,
/// and only as its consumer needs; HQ writes its inbox and reads the rest. HQ believes what these
/// keys say about this factory and nothing any other key says about it.
///
/// The id sits in braces: factory ids never contain `{` or `}`, so the ACL pattern for one
/// factory's job results (`factoryctl:f:{a}:job:*`) cannot match a key of another factory (`a:job`
/// included), and all of a factory's keys share one Redis Cluster hash slot.
public struct FactoryKeys: Sendable, Equatable {
    public let factoryID: String

    public init(_ factoryID: String) {
        self.factoryID = factoryID
    }

    public static let prefix = MissionBus.keyPrefix + "f:"
    /// HQ's list of enrolled factories: id → `Enrollment.Record` JSON. Factories cannot read it.
    public static let enrolledKey = MissionBus.keyPrefix + "enrolled"
    /// Approximate MAXLEN of an inbox: a factory's own backlog, not the fleet's history.
    public static let inboxMaxLength = 256

    var base: String { Self.prefix + "{" + factoryID + "}:" }
    /// Missions for this factory only (a stream HQ writes; the factory reads it with its group).
    public var inbox: String { base + "inbox" }
    /// The factory's registration (a string: the registration JSON).
    public var registration: String { base + "registration" }
    /// One key per job it reported on (`SET NX EX`: the first result counts, once).
    public func job(_ jobID: String) -> String { base + "job:" + jobID }
    /// Its results as they happen (the same fields as `<stream>:results`).
    public var results: String { base + "results" }
    /// Entries it could not run, with the reason.
    public var deadLetters: String { base + "dlq" }

    /// The factory's Redis user.
    public var aclUser: String { "factory:" + factoryID }

    /// The user's rules after `reset` and its password: nothing but the commands its consumer
    /// sends, each only on the key it needs. `+@connection` is not used: it includes CLIENT KILL,
    /// CLIENT PAUSE and CLIENT LIST (other users' connections).
    public var aclRules: [String] {
        ["resetkeys", "resetchannels", "-@all",
         "+auth", "+hello", "+ping", "+select", "+time", "+client|reply", "+client|setname", "+client|id",
         "(+xreadgroup +xack +xpending +xgroup|create ~\(inbox))",
         "(+set +get ~\(registration))",
         // A script writes its result (SET NX on the job key, XADD on its results stream); SET on
         // the stream's key would make it a string that HQ's readers choke on.
         "(+eval ~\(results) ~\(base)job:*)", "(+set ~\(base)job:*)", "(+xadd ~\(results))",
         "(+xadd ~\(deadLetters))"]
    }

    /// Every key of the factory (for `forget`); the job keys expire on their own.
    public var fixedKeys: [String] { [inbox, registration, results, deadLetters] }
}
