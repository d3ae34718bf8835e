import ArgumentParser
import FactoryKit
import FoundationEssentials
import FactoryBasics
import Logging
import RedisKit

struct EnrollCommand: FactoryctlCommand {
    static let configuration = CommandConfiguration(
        commandName: "enroll",
        abstract: "Give a factory its own Redis user and registration token (HQ only).",
        discussion: """
        Creates the Redis ACL user factory:ID with a random password, allowed only that \
        factory's own keys (its inbox, its results, its registration: factoryctl:f:{ID}:*) and \
        only the commands its consumer sends, and a registration token for HQ's HTTP endpoint \
        valid only for ID. Prints the factory's env lines on stdout, one NAME=value a line, for \
        ~/.config/factoryctl/env on that factory: UA_FACTORY_ID, UA_FACTORY_ENROLLED=1, \
        UA_REDIS_URL (its own user) and UA_FACTORY_TOKEN. The secrets are shown once, never \
        logged; HQ keeps only the token's SHA-256.

        The connection (--redis-url / UA_REDIS_URL) must be allowed ACL SETUSER, ACL DELUSER, \
        ACL SAVE, CLIENT KILL, XGROUP CREATE on factoryctl:f:* and HSET on factoryctl:enrolled: \
        the `enroll` user of deploy/redis-users.acl. After ACL SETUSER it runs ACL SAVE so the \
        user survives a restart of Redis; a server without an aclfile keeps it in memory only, \
        which enroll warns about (JSON acl_saved: false). --acl-file writes the user's line (password \
        hashed) to FILE instead of ACL SETUSER, for servers that keep ACLs in a file; load it \
        with `redis-cli ACL LOAD`.

        An enrolled factory is refused a second time unless --rotate: that replaces both \
        secrets at once (the old password stops working and its connections are closed); \
        `factoryctl forget ID` revokes them.

        Examples:
          factoryctl enroll eu-3 --factory-redis-url rediss://redis.hq.example:6380/0 > eu-3.env
          factoryctl enroll eu-3 --rotate --json
        """
    )

    @OptionGroup var global: GlobalOptions
    @OptionGroup var redis: RedisOptions

    @Argument(help: ArgumentHelp("The factory id.", valueName: "id"))
    var factoryID: String

    @Flag(name: .long, help: "Replace the credentials of a factory that is already enrolled.")
    var rotate = false

    @Option(name: .long, help: ArgumentHelp("Write the ACL user's line to this file instead of ACL SETUSER.", valueName: "file"),
            completion: .file())
    var aclFile: String?

    @Option(name: .long, help: ArgumentHelp(
        "How the factory reaches Redis (its user and password are filled in; default: this command's Redis URL).", valueName: "url"))
    var factoryRedisURL: String?

    @Flag(name: .long, help: "Print one JSON object instead of env lines.")
    var json = false

    func validate() throws {
        guard MissionID.isValid(factoryID) else {
            throw ValidationError("invalid factory id '\(factoryID.prefix(80))': use 1-128 of A-Z a-z 0-9 . _ : -")
        }
    }

    func run(_ context: CommandContext) throws {
        try context.environment.role.require(.enroll)
        let bus = try redis.bus(context)
        let factoryURL: RedisURL
        do {
            factoryURL = try factoryRedisURL.map { try RedisURL($0) } ?? bus.redis.url
        } catch {
            throw CommandFailure(code: .usage, message: "--factory-redis-url: \(error)")
        }
        let credentials = try enroll(Enrollment(redis: bus.redis), factoryURL: factoryURL, context)
        report(credentials, global.logger("factoryctl.enroll", context))
        if json {
            try context.printJSON(EnrolledFactory(credentials: credentials, aclFile: aclFile))
        } else {
            context.sayAll(credentials.environment.map { "\($0.name)=\($0.value)" })
        }
    }

    /// Enrolls (or rotates), its failures as the command's exit codes.
    private func enroll(_ enrollment: Enrollment, factoryURL: RedisURL, _ context: CommandContext) throws -> Enrollment.Credentials {
        do {
            return try enrollment.enroll(factoryID, rotate: rotate, factoryURL: factoryURL, aclFile: aclFile.map(context.absolutePath))
        } catch let error as Enrollment.Failure {
            throw CommandFailure(code: .refused, message: error.description)
        } catch let error as RedisError {
            let hint = error.replyCode == "NOPERM" ? " (this Redis user may not manage ACL users: use the `enroll` user of deploy/redis-users.acl)" : ""
            throw CommandFailure(code: error.isConnectionError ? .redisUnavailable : .failedUnchanged,
                                 message: "enroll \(factoryID): \(error)\(hint)")
        }
    }

    /// What was done, on stderr (never the secrets).
    private func report(_ credentials: Enrollment.Credentials, _ logger: Logger) {
        let note = "\(credentials.rotated ? "rotated" : "enrolled") \(factoryID) as Redis user \(credentials.user)"
            + (aclFile.map { " (written to \($0): load it with ACL LOAD)" } ?? "")
            + (credentials.closedConnections > 0 ? "; closed \(credentials.closedConnections) connection(s) of the old credentials" : "")
        logger.notice("\(note)")
        if let unsaved = credentials.unsaved { logger.warning("\(credentials.user) is created, but \(unsaved): a restart of Redis before then loses it") }
    }
}

struct EnrolledFactory: Encodable {
    let credentials: Enrollment.Credentials
    let aclFile: String?

    enum CodingKeys: String, CodingKey {
        case environment, user, rotated
        case factoryID = "factory_id", aclFile = "acl_file", closedConnections = "closed_connections", aclSaved = "acl_saved"
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(credentials.factoryID, forKey: .factoryID)
        try c.encode(credentials.user, forKey: .user)
        try c.encode(credentials.rotated, forKey: .rotated)
        try c.encode(credentials.closedConnections, forKey: .closedConnections)
        try c.encode(aclFile, forKey: .aclFile)
        try c.encode(aclFile == nil && credentials.unsaved == nil, forKey: .aclSaved)
        try c.encode(Dictionary(uniqueKeysWithValues: credentials.environment.map { ($0.name, $0.value) }), forKey: .environment)
    }
}
