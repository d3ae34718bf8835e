import ArgumentParser
import FactoryKit
import FoundationEssentials
import Dispatch
import FactoryBasics
import Glibc

struct ConsumeCommand: FactoryctlCommand {
    static let configuration = CommandConfiguration(
        commandName: "consume",
        abstract: "Run missions from the Redis stream on this factory (the systemd service).",
        discussion: """
        Registers the factory in Redis (and with HQ when UA_HQ_BASE_URL is set), heartbeats, and \
        blocks on the mission stream through this factory's own consumer group \
        (factoryctl:<factory-id>), so every factory sees every mission. Update missions run the \
        same pipeline as `factoryctl update --restart`; the result goes to \
        <stream>:results, the entry is acked, and when the checkout changed the consumer exits \
        with code 10 so systemd restarts it on the new code. Pause/resume missions stop and \
        start acting on updates (persisted across restarts). Malformed entries go to the \
        dead-letter stream. Redis outages are retried with capped backoff. SIGTERM stops \
        promptly without leaving a half-applied update (exit 0).

        With UA_MISSION_VERIFY_KEYS (public key files from `factoryctl keys generate`, separated \
        by commas), a mission for this factory runs only when its Ed25519 signature verifies \
        against one of them, it has not expired, and its job was not already taken under \
        another entry; unsigned, forged, unknown-key, expired and replayed missions go to the \
        dead-letter stream with the reason, before any git step. A mission may pin a commit \
        (moved to exactly) and may allow a rewind (older code); without that, older code is \
        refused.

        With UA_FACTORY_UPDATE_WINDOW (e.g. "Mon-Fri 02:00-04:00,Sat 10:00-12:00", local time, \
        TZ), update and rollback missions run only inside the window: outside it a mission is \
        deferred (not acked; the registration says "deferred until …") and runs when the \
        window opens, within its expiry; a mission published with --ignore-window runs at once. \
        With UA_FACTORY_UPDATE_LOCK, a mission is deferred while the app holds that file's \
        flock, and tried again every second.

        Install the user unit from deploy/factoryctl-consume.service (see README).

        Examples:
          factoryctl consume --factory-dir /srv/factory
          UA_FACTORY_ID=eu-1 UA_REDIS_URL=redis://:pw@hq:6379/0 factoryctl consume
        """
    )

    @OptionGroup var global: GlobalOptions
    @OptionGroup var directory: FactoryDirectoryOption
    @OptionGroup var redis: RedisOptions

    @Option(name: .long, help: ArgumentHelp("This factory's id (env UA_FACTORY_ID; default: the host name).", valueName: "id"))
    var factoryID: String?

    @OptionGroup var pipeline: PipelineOptions

    @Option(name: .long, help: ArgumentHelp(
        "Minimum seconds between two updates (env UA_FACTORY_MIN_UPDATE_INTERVAL; default 10).", valueName: "seconds"))
    var minInterval: Double?

    @Option(name: .long, help: ArgumentHelp("Seconds between registry heartbeats.", valueName: "seconds"))
    var heartbeat: Double = 15

    @Flag(name: .long, help: "Do not restart services after updates (an app that is not a systemd service).")
    var noRestart = false

    func validate() throws {
        if let factoryID, !MissionID.isValid(factoryID) {
            throw ValidationError("invalid factory id '\(factoryID)': use 1-128 of A-Z a-z 0-9 . _ : -")
        }
        if let minInterval, minInterval < 0 { throw ValidationError("--min-interval must not be negative") }
        if pipeline.soak.map({ $0 > 0 }) == true, noRestart { throw ValidationError("--soak watches the restarted services: it cannot go with --no-restart") }
        guard heartbeat >= 1, heartbeat <= 300 else { throw ValidationError("--heartbeat must be between 1 and 300 seconds") }
    }

    func run(_ context: CommandContext) throws {
        let configuration = try consumerConfiguration(context)
        let stop = context.stopSignal()
        let consumer: MissionConsumer
        do {
            consumer = try MissionConsumer(configuration: configuration, logger: global.logger("factoryctl.consume", context), stop: stop)
        } catch {
            throw CommandFailure(code: .usage, message: "\(error)")
        }
        switch consumer.run() {
        case .stopped:
            return
        case .restartRequested(let jobID):
            throw CommandFailure(code: .restartRequested, message: "exiting after \(jobID) so systemd restarts the consumer on the new code")
        }
    }

    /// Flags over the environment; a value that is not valid is a usage error before anything runs.
    func consumerConfiguration(_ context: CommandContext) throws(CommandFailure) -> ConsumerConfiguration {
        let environment = context.environment
        let id = try configured { try environment.checkedFactoryID(flag: factoryID) }
        var configuration = ConsumerConfiguration(
            factoryID: id, role: environment.role.name, factoryDirectory: directory.resolve(context, searchUpward: false),
            redisURL: try redis.url(context), version: Factoryctl.version, environment: environment.values)
        configuration.stream = redis.stream ?? environment.missionStream
        configuration.deadLetterStream = environment.deadLetterStream
        configuration.fleetID = environment.fleetID
        configuration.updateSettings = try pipeline.settings(pipeline.flags(restart: !noRestart), context)
        configuration.capabilities = environment.capabilities
        configuration.heartbeatSeconds = heartbeat
        configuration.minimumInterval = try configured { try environment.minimumUpdateInterval(flag: minInterval) }
        configuration.blockMilliseconds = Int(heartbeat * 1000)
        configuration.hqBaseURL = environment.hqBaseURL
        configuration.enrolled = try configured { try environment.enrolled() }
        configuration.factoryToken = environment.factoryToken
        // The ops token publishes to the whole fleet: an enrolled factory has its own token.
        configuration.opsToken = configuration.enrolled ? nil : environment.opsToken
        if configuration.enrolled, environment.opsToken != nil {
            context.stderr.write("factoryctl: warning: UA_OPS_TOKEN is set on an enrolled factory: it is not used (it can publish to every factory); remove it from this factory's environment\n")
        }
        configuration.verifier = try configured { try environment.missionVerifier() }
        configuration.updateWindow = try configured { try environment.updateWindow() }
        return configuration
    }
}
