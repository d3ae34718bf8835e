import CSupport
import FoundationEssentials
import Dispatch
import FactoryBasics
import Glibc
import GitKit
import Logging
import Synchronization
import RedisKit

/// Everything `factoryctl consume` needs.
public struct ConsumerConfiguration: Sendable {
    public var factoryID: String
    public var role: String
    public var factoryDirectory: String
    public var redisURL: RedisURL
    public var stream: String = FactoryEnvironment.defaultMissionStream
    public var deadLetterStream: String = FactoryEnvironment.defaultDeadLetterStream
    public var services: [String] = [FactoryEnvironment.defaultService]
    public var syncCommand: [String] = ["uv", "sync"]
    public var sync = true
    /// Sync even when no dependency file changed since the last sync.
    public var forceSync = false
    /// Restart `services` after an update (off for a factory whose app is not a systemd service).
    public var restart = true
    public var capabilities: [String] = []
    /// Longest a blocking read waits. The read ends early for the next heartbeat, a deferred
    /// update coming due, or a stop request (which shuts the socket down), so an idle consumer
    /// wakes only to heartbeat.
    public var blockMilliseconds = 15_000
    public var heartbeatSeconds: Double = 15
    /// Minimum seconds between two updates of this factory (remembered in the update history).
    public var minimumInterval: Double = 10
    public var settleSeconds: Double = 3
    /// Longest a network fetch may go without progress.
    public var fetchTimeout: Double = 120
    public var maxStreamLength = 10_000
    /// `UA_FLEET_ID` (empty when unset): a signed mission must have been signed for this fleet.
    public var fleetID = ""
    /// The soak window of the updates this consumer runs (`--soak`, `UA_FACTORY_SOAK_SECONDS`).
    public var soakSeconds: Double = 0
    /// `UA_FACTORY_METRICS_FILE`: the node_exporter textfile rewritten after each update.
    public var metricsTextfile: FactoryTextfile?
    /// `UA_FACTORY_ENROLLED`: this factory has its own Redis user (`factoryctl enroll`); it reads
    /// its own inbox and writes only its own keys (`FactoryKeys`).
    public var enrolled = false
    /// `UA_FACTORY_TOKEN`: the factory's own HTTP registration token (from `enroll`).
    public var factoryToken: String?
    public var hqBaseURL: String?
    public var opsToken: String?
    /// Run only missions signed by one of these keys (`UA_MISSION_VERIFY_KEYS`); nil runs any.
    public var verifier: MissionVerifier?
    /// Move only to code signed by an allowed signer (`UA_ALLOWED_SIGNERS`).
    public var signaturePolicy: CommitSignaturePolicy?
    /// After the restart, this URL must answer 2xx (`UA_FACTORY_HEALTH_URL`).
    public var healthGate: HealthGate?
    /// Update and rollback missions run only inside this window (`UA_FACTORY_UPDATE_WINDOW`);
    /// outside it they are deferred until it opens. Nil: any time.
    public var updateWindow: UpdateWindow?
    /// The app's update lock (`UA_FACTORY_UPDATE_LOCK`): while the app holds it, update missions
    /// are deferred and tried again every `appLockRetrySeconds`.
    public var appLockPath: String?
    public var appLockRetrySeconds: Double = 1
    /// Local time for the window (the C library's, for `TZ`).
    public var clock: any LocalClock = SystemClock()
    public var version: String
    public var environment: [String: String]

    public init(factoryID: String, role: String, factoryDirectory: String, redisURL: RedisURL, version: String,
                environment: [String: String]) {
        self.factoryID = factoryID
        self.role = role
        self.factoryDirectory = factoryDirectory
        self.redisURL = redisURL
        self.version = version
        self.environment = environment
    }
}

/// Why the consumer loop ended.
public enum ConsumerExit: Equatable, Sendable {
    /// Asked to stop (SIGTERM/SIGINT).
    case stopped
    /// An update changed the checkout: exit so systemd restarts the consumer on the new code.
    case restartRequested(jobID: String)
}

/// The long-running consumer: registers, heartbeats, blocks on its own consumer group, runs
/// missions through the update pipeline, reports, acks. Runs on the calling thread (blocking I/O,
/// keep it off the cooperative pool).
public final class MissionConsumer {
    public let configuration: ConsumerConfiguration
    let logger: Logger
    let stop: StopSignal
    let redis: RedisClient
    let bus: MissionBus
    let registry: FleetRegistry
    let hq: HQRegistrationClient?
    let state: ConsumerState
    let history: UpdateHistory
    /// Signed missions taken, until they expire: a copy under another entry id is a replay.
    let seen: SeenMissions
    /// Where this factory joined the fleet: older broadcast and glob missions are skipped.
    let joined: JoinFloor
    /// The checkout, opened once; refs are re-read from disk on every `head()`.
    let repository: Repository
    let startedAt = Date()
    /// Set while the consumer is (about to be) blocked reading the stream: only that read is
    /// interrupted by a stop; a running update finishes and reports first.
    let reading = Flag()

    private var group: String { MissionBus.groupName(factoryID: configuration.factoryID) }
    private var consumerName: String { configuration.factoryID }
    /// Update missions read but not yet run (paused, or waiting out the minimum interval); un-acked.
    private var deferred: [(entry: StreamEntry, mission: Mission, receivedAt: Date)] = []
    private var lastHeartbeat = Date.distantPast
    /// Set after start-up and after handling entries: trim memory once idle for a second.
    private var idleTrimDue = true
    private var lastActivity = Date()
    private var lastHQPost = Date.distantPast
    private var lastJob: (id: String, status: String)?
    private var status = "online"
    /// The update mission running now (in the registration's metadata while "updating").
    private var currentJobID: String?
    private var lastPostedStatus: String?
    /// The status of the last registration sent with a reply (a silent heartbeat only repeats it).
    private var lastRegisteredStatus: String?
    private var announcedWaitFor: String?
    /// Seconds of the splay delay left while an update mission waits it (in the registration).
    private var splayLeft: Int?
    /// Why the newest update mission waits (outside the window, the app's lock): in the registration.
    private var deferral: Deferral?
    /// A finished update whose result or ack did not reach Redis; delivered after reconnecting.
    private var unreported: (entry: StreamEntry, result: MissionResult, restart: Bool)?

    public init(configuration: ConsumerConfiguration, logger: Logger, stop: StopSignal) throws {
        self.configuration = configuration
        self.logger = logger
        self.stop = stop
        do {
            repository = try Repository.open(at: ReleasesLayout.repositoryPath(for: configuration.factoryDirectory))
        } catch {
            throw FactoryError.invalidArgument("\(configuration.factoryDirectory) is not a git checkout (\(error)); set --factory-dir or UA_FACTORY_DIR")
        }
        let gitDirectory = repository.gitDirectory
        history = UpdateHistory(gitDirectory: gitDirectory)
        state = ConsumerState(gitDirectory: gitDirectory)
        seen = SeenMissions(gitDirectory: gitDirectory)
        joined = JoinFloor(gitDirectory: gitDirectory)
        // The socket timeout must outlast the longest BLOCK read.
        redis = RedisClient(url: configuration.redisURL, connectTimeout: 5,
                            commandTimeout: Double(configuration.blockMilliseconds) / 1000 + 10)
        bus = MissionBus(redis: redis, stream: configuration.stream, deadLetterStream: configuration.deadLetterStream,
                         maxLength: configuration.maxStreamLength, fleetID: configuration.fleetID)
        let own = configuration.enrolled ? FactoryKeys(configuration.factoryID) : nil
        bus.own = own
        registry = FleetRegistry(redis: redis, own: own)
        hq = HQRegistrationClient(baseURL: configuration.hqBaseURL, token: configuration.factoryToken ?? configuration.opsToken,
                                  factoryToken: configuration.factoryToken != nil, logger: logger)
        // A stop request ends the blocking read at once instead of being polled for.
        let interrupt = redis.interrupter
        stop.onSet { [reading] in
            if reading.isSet { interrupt() }
        }
        if let last = history.entries().last(where: { $0.jobID != nil }), let job = last.jobID {
            lastJob = (job, last.succeeded ? "SUCCESS" : "FAILED")
        }
    }

    /// Runs until stopped or until an update asks for a restart: connect (and catch up on what
    /// this consumer left pending), heartbeat, run deferred missions, read and handle new ones;
    /// Redis failures back off and reconnect.
    public func run() -> ConsumerExit {
        var backoff = Backoff(initial: 0.5, cap: 30)
        var connected = false
        logger.info("consumer \(configuration.factoryID) starting (\(configuration.enrolled ? "enrolled: inbox \(bus.readStream)" : "stream \(configuration.stream)"), group \(group), redis \(configuration.redisURL))")
        if let window = configuration.updateWindow {
            logger.info("\(DeferralCheck.describe(window, now: Date().timeIntervalSince1970, clock: configuration.clock))")
        }
        // An update killed part-way (this consumer's own, or an operator's) is repaired first
        // (not behind the app's update lock: the app was interrupted by the update it repairs).
        if let recovery = makePipeline(branch: "main").recoverInterruptedUpdate(), let error = recovery.error {
            logger.error("\(error)") // a successful repair has logged what it did
        }
        loop: while !stop.isSet {
            do {
                if !connected, let exit = try connect(&connected, &backoff) { return exit }
                let silently = try heartbeat()
                if let exit = try runDeferredIfDue() { return exit }
                switch try readAndHandle(silently: silently) {
                case .exit(let exit): return exit
                case .stopRequested: break loop
                case .carryOn: continue
                }
            } catch let error as RedisError {
                connected = false
                if stop.isSet { break }
                redis.disconnect()
                let delay = backoff.next()
                logger.warning("Redis unavailable (\(error)); retrying in \(delay.fixed(1)) s")
                stop.sleep(delay)
            } catch {
                logger.error("unexpected error: \(error)")
                connected = false
                redis.disconnect()
                stop.sleep(backoff.next())
            }
        }
        logger.notice("stopping on request")
        status = "offline"
        redis.resume()
        try? register()
        return .stopped
    }

    /// Connects, joins (floor, group, registration), then reports what an earlier run could not
    /// and handles this consumer's own pending entries first. Deferred ones are among them (never
    /// acked), so they are read again rather than kept twice.
    private func connect(_ connected: inout Bool, _ backoff: inout Backoff) throws -> ConsumerExit? {
        try redis.connect()
        _ = try redis.canSkipReplies() // asked now, not at the first idle heartbeat
        // Before the group exists or the fleet hears of this factory.
        try joined.establish(redis: redis, consumedBefore: consumedBefore, logger: logger)
        try bus.ensureGroup(group)
        status = state.paused ? "paused" : "online"
        try register()
        connected = true
        if backoff.attempt > 0 { logger.notice("Redis is back") }
        backoff.reset()
        deferred = []
        if let owed = unreported {
            try bus.publishResult(owed.result)
            try bus.ack(group: group, [owed.entry.id])
            unreported = nil
            logger.notice("reported \(owed.result.jobID) after Redis came back")
            if owed.restart { return .restartRequested(jobID: owed.result.jobID) }
        }
        return try handle(try bus.readPending(group: group, consumer: consumerName), recovering: true)
    }

    /// Registers when due. A heartbeat that changes nothing but last_seen_at rides on the next
    /// blocking read (its reply suppressed): an idle consumer wakes once per heartbeat, not twice.
    /// Returns the commands to send silently with that read.
    private func heartbeat() throws -> [[String]] {
        // Due a little early is due: Redis may end a BLOCK a few ms before the heartbeat time,
        // and waking again for the remainder would be a wasted wake-up.
        guard Date().timeIntervalSince(lastHeartbeat) >= configuration.heartbeatSeconds - 0.05 else { return [] }
        if status == lastRegisteredStatus, !hqPostDue, try redis.canSkipReplies() {
            let registration = currentRegistration()
            lastHeartbeat = Date(timeIntervalSince1970: registration.lastSeenAt)
            return [FleetRegistry.registerCommand(registration, own: registry.own)]
        }
        try register()
        return []
    }

    private enum ReadOutcome {
        case exit(ConsumerExit)
        case stopRequested
        case carryOn
    }

    /// One blocking read of new entries, then handling them.
    private func readAndHandle(silently: [[String]]) throws -> ReadOutcome {
        // The flag goes up before the last stop check: a stop either is seen here or finds the
        // flag up and interrupts the read.
        reading.set(true)
        defer { reading.set(false) }
        if stop.isSet { return .stopRequested }
        let entries = try bus.readNew(group: group, consumer: consumerName, blockMilliseconds: readBlock(), silently: silently)
        reading.set(false)
        if !entries.isEmpty {
            idleTrimDue = true
            lastActivity = Date()
        }
        return try handle(entries, recovering: false).map(ReadOutcome.exit) ?? .carryOn
    }

    /// How long the next read may block. Idle for a second after work: hand back freed heap, and
    /// the clean code and data pages start-up or the missions touched (re-read from the page
    /// cache if needed again), so an idle consumer holds only what idling uses. Not sooner: a
    /// mission arriving right after another would pay for the refaults.
    private func readBlock() -> Int {
        let block = blockTime()
        guard idleTrimDue else { return block }
        let idleFor = Date().timeIntervalSince(lastActivity)
        guard idleFor >= 1 else { return min(block, max(1, Int(((1 - idleFor) * 1000).rounded(.up)))) }
        idleTrimDue = false
        _ = factoryctl_malloc_trim()
        _ = factoryctl_release_clean_pages()
        return block
    }

    /// This checkout has run missions before (a factory upgraded from a factoryctl without the
    /// join floor): its group's history is its own.
    private var consumedBefore: Bool {
        history.entries().contains { $0.jobID != nil } || FileManager.default.fileExists(atPath: state.path)
            || FileManager.default.fileExists(atPath: seen.path)
    }

    // MARK: Handling entries

    private func handle(_ entries: [StreamEntry], recovering: Bool) throws -> ConsumerExit? {
        guard !entries.isEmpty else { return nil }
        // A batch of large (hostile) entries must not leave its memory behind: once handled,
        // give the freed heap back so the consumer returns to its idle footprint.
        let size = entries.reduce(0) { total, entry in total + (entry.fields?.values.reduce(0) { $0 + $1.utf8.count } ?? 0) }
        defer { if size > 256 * 1024 || entries.contains(where: { !$0.problems.isEmpty }) { _ = factoryctl_malloc_trim() } }
        var updates: [(entry: StreamEntry, mission: Mission, receivedAt: Date)] = []
        for entry in entries {
            guard let fields = entry.fields else {
                logger.warning("pending entry \(entry.id) was trimmed from the stream; acking it")
                try bus.ack(group: group, [entry.id])
                continue
            }
            guard entry.problems.isEmpty else {
                let reason = entry.problems.joined(separator: "; ")
                logger.error("dead-lettering entry \(entry.id): \(reason)")
                try bus.deadLetter(entry, reason: reason)
                try bus.ack(group: group, [entry.id])
                continue
            }
            let parsed: Mission.Parsed
            do {
                parsed = try Mission.parse(fields: fields)
            } catch {
                logger.error("dead-lettering entry \(entry.id): \(error)")
                let envelope = fields["envelope"].flatMap { try? MissionEnvelope.decode($0) }
                try bus.deadLetter(entry, reason: error.description, envelope: envelope)
                try bus.ack(group: group, [entry.id])
                continue
            }
            switch parsed {
            case .notForFactoryctl(let jobID, let kind):
                logger.debug("ignoring \(jobID) (kind '\(kind)' is for other consumers)")
                try bus.ack(group: group, [entry.id])
            case .mission(let mission) where !mission.target.matches(configuration.factoryID):
                logger.debug("ignoring \(mission.jobID) (for \(mission.target))")
                try bus.ack(group: group, [entry.id])
            case .mission(let mission) where bus.own == nil && !joined.admits(entryID: entry.id, target: mission.target, factoryID: configuration.factoryID):
                // Not counted for this factory at HQ (it was not registered then): no result is owed.
                logger.notice("skipping \(mission.jobID) (entry \(entry.id), for \(mission.target)): published before this factory joined the fleet at \(joined.floor.map { "\($0)" } ?? "?"); acked, not run. Publish it again, or name this factory, to have it run here")
                try bus.ack(group: group, [entry.id])
            case .mission(let mission):
                if let verifier = configuration.verifier, let refusal = check(entry, fields: fields, mission: mission, verifier: verifier) {
                    logger.error("dead-lettering \(mission.jobID) (entry \(entry.id)): \(refusal)")
                    try bus.deadLetter(entry, reason: refusal, envelope: mission.envelope)
                    try bus.ack(group: group, [entry.id])
                    continue
                }
                switch mission.kind {
                case .pause, .resume:
                    try control(mission, entry: entry)
                case .update, .rollback:
                    logger.info("received \(mission.jobID): \(mission.kind == .rollback ? "rollback" : "update to \(mission.branch)")\(recovering ? " (redelivered)" : "")")
                    updates.append((entry, mission, Date()))
                }
            }
        }
        deferred += updates
        return try runDeferredIfDue()
    }

    /// The signature check, before anything else happens for a mission: nil when it may run.
    /// A copy of a signed mission under another stream entry is a replay.
    private func check(_ entry: StreamEntry, fields: [String: String], mission: Mission, verifier: MissionVerifier) -> String? {
        let expiresAt: Double
        do {
            let keyID = try verifier.verify(fields: fields, binding: bus.binding, entryID: entry.id, joinedAt: bus.own == nil ? joined.floor(for: mission.target, factoryID: configuration.factoryID) : nil)
            expiresAt = fields["expires_at"].flatMap(Double.init) ?? 0
            logger.debug("\(mission.jobID): signature verified (key \(keyID))")
        } catch {
            return "signature check failed: \(error)"
        }
        switch seen.take(jobID: mission.jobID, entryID: entry.id, expiresAt: expiresAt) {
        case .new, .redelivered: return nil
        case .replayed(let first): return "signature check failed: replayed: job \(mission.jobID) was already received as entry \(first)"
        case .unsaved(let why): return "signature check failed: could not record the mission against replays (\(why)); not run"
        }
    }

    private func control(_ mission: Mission, entry: StreamEntry) throws {
        let pause = mission.kind == .pause
        let now = Date().timeIntervalSince1970
        var result: [String: JSONValue] = [
            "factory_id": .string(configuration.factoryID), "mission_kind": .string(mission.kind.rawValue),
            "outcome": .string(pause ? "paused" : "resumed"), "changed": .bool(false),
            "received_at": .double(now), "finished_at": .double(now),
        ]
        var failure: String?
        do {
            // Saved first: a pause that would not survive a restart is not reported as done.
            try state.setPaused(pause)
            // Paused, nothing runs: a mission waiting for its window or the app's lock waits for the resume first.
            if pause { deferral = nil }
            status = pause ? "paused" : "online"
            logger.notice("\(pause ? "paused" : "resumed") by \(mission.jobID)")
        } catch {
            failure = "could not save the \(pause ? "pause" : "resume") (\(error)); the factory is still \(state.paused ? "paused" : "running")"
            logger.error("\(mission.jobID): \(failure!)")
            result["outcome"] = .string("failed")
            result["failure"] = .string("state_not_saved")
        }
        try bus.publishResult(MissionResult(jobID: mission.jobID, succeeded: failure == nil, result: result, error: failure))
        try bus.ack(group: group, [entry.id])
        lastJob = (mission.jobID, failure == nil ? "SUCCESS" : "FAILED")
        try register()
    }

    /// Runs the newest deferred update when not paused and the minimum interval has passed;
    /// older ones are acked and reported as superseded.
    private func runDeferredIfDue() throws -> ConsumerExit? {
        guard !deferred.isEmpty, !state.paused else { return nil }
        if let wait = intervalRemaining(), wait > 0 {
            if announcedWaitFor != deferred.last?.mission.jobID {
                announcedWaitFor = deferred.last?.mission.jobID
                logger.notice("waiting \(wait.fixed(1)) s (minimum interval between updates) before \(deferred.last!.mission.jobID)")
            }
            return nil
        }
        // The newest waits for its window or the app's lock; one that expired unrun is dropped
        // (reported), and the one before it is looked at.
        while let candidate = deferred.last {
            let hold = try holdBack(candidate)
            if hold == .waiting { return nil }
            if hold == .run { break }
        }
        guard !deferred.isEmpty else { return nil }
        let newest = deferred.removeLast()
        let superseded = deferred
        deferred = []
        for old in superseded {
            logger.notice("\(old.mission.jobID) superseded by \(newest.mission.jobID)")
            try bus.publishResult(MissionResult(jobID: old.mission.jobID, succeeded: false, result: [
                "factory_id": .string(configuration.factoryID), "mission_kind": .string(old.mission.kind.rawValue),
                "outcome": .string("superseded"), "failure": .string("superseded"), "superseded_by": .string(newest.mission.jobID),
                "branch": .string(old.mission.branch), "changed": .bool(false),
                "received_at": .double(old.receivedAt.timeIntervalSince1970), "finished_at": .double(Date().timeIntervalSince1970),
            ], error: "superseded by \(newest.mission.jobID)"))
            try bus.ack(group: group, [old.entry.id])
        }
        return try runUpdate(newest.entry, newest.mission, receivedAt: newest.receivedAt)
    }

    private enum Hold { case run, waiting, dropped }

    /// Outside the maintenance window, or while the app holds its update lock, the newest update
    /// mission waits: un-acked, with the registration saying so ("deferred until …"). One that
    /// cannot run before it expires is reported (nothing changed) and acked: `.dropped`.
    private func holdBack(_ candidate: (entry: StreamEntry, mission: Mission, receivedAt: Date)) throws -> Hold {
        let check = DeferralCheck(window: configuration.updateWindow, appLockPath: configuration.appLockPath, clock: configuration.clock)
        let expiresAt = DeferralCheck.expiry(entryID: candidate.entry.id, receivedAt: candidate.receivedAt,
                                             timeoutSeconds: candidate.mission.envelope.timeoutSeconds)
        switch check.decide(candidate.mission, expiresAt: expiresAt, now: Date().timeIntervalSince1970) {
        case .run:
            if let deferral, deferral.jobID == candidate.mission.jobID { logger.notice("\(deferral.jobID): no longer deferred; running it") }
            deferral = nil
            return .run
        case .wait(let next):
            if next != deferral {
                deferral = next
                logger.notice("\(next.jobID): \(next.text)")
                try register()
            }
            return .waiting
        case .expire(let failure, let error):
            deferral = nil
            deferred.removeLast()
            try reportNotRun(candidate, failure: failure, error: error)
            return .dropped
        }
    }

    /// A deferred mission that expired unrun: FAILED (outcome `expired`), nothing changed, acked.
    private func reportNotRun(_ candidate: (entry: StreamEntry, mission: Mission, receivedAt: Date), failure: UpdateFailure,
                              error: String) throws {
        let head = (try? repository.head())?.commit?.hex
        var report = UpdateReport(branch: candidate.mission.branch)
        report.from = head
        report.to = head
        report.failure = failure
        report.error = error
        report.finishedAt = Date().timeIntervalSince1970
        var result = missionResult(report, mission: candidate.mission, receivedAt: candidate.receivedAt)
        result.result["outcome"] = .string("expired")
        logger.error("\(candidate.mission.jobID): \(error)")
        lastJob = (candidate.mission.jobID, result.status)
        try bus.publishResult(result)
        try bus.ack(group: group, [candidate.entry.id])
        try backToIdle()
    }

    private func intervalRemaining() -> Double? {
        // A crash repair is not an update: it does not start the interval.
        guard configuration.minimumInterval > 0,
              let last = history.entries().last(where: { $0.recovery == nil || $0.jobID != nil }) else { return nil }
        let finished = last.finishedAt ?? last.startedAt
        return configuration.minimumInterval - (Date().timeIntervalSince1970 - finished)
    }

    /// Until the next heartbeat is due (or a deferred update is), capped by `blockMilliseconds`.
    private func blockTime() -> Int {
        var block = configuration.blockMilliseconds
        if !deferred.isEmpty, !state.paused, let wait = intervalRemaining(), wait > 0 {
            block = min(block, max(1, Int(wait * 1000) + 1))
        }
        if !deferred.isEmpty, !state.paused, let deferral {
            // Until the window opens, or the next try of the app's lock (or the mission's expiry).
            let due = min(deferral.until ?? Date().timeIntervalSince1970 + configuration.appLockRetrySeconds, deferral.expiresAt)
            block = min(block, max(50, Int(((due - Date().timeIntervalSince1970) * 1000).rounded(.up))))
        }
        let untilHeartbeat = configuration.heartbeatSeconds - Date().timeIntervalSince(lastHeartbeat)
        return min(block, max(1, Int((untilHeartbeat * 1000).rounded(.up))))
    }

    /// An update or rollback mission: reported again if it already ran, else run through the
    /// pipeline, reported, acked, and followed by an exit for systemd's restart when it moved.
    private func runUpdate(_ entry: StreamEntry, _ mission: Mission, receivedAt: Date) throws -> ConsumerExit? {
        if let previous = history.entry(forJob: mission.jobID) {
            return try reportAgain(previous, entry, mission, receivedAt: receivedAt)
        }
        status = "updating"
        currentJobID = mission.jobID
        defer { currentJobID = nil }
        try register()

        var pipeline = makePipeline(branch: mission.branch)
        pipeline.request.commit = mission.commit.flatMap(ObjectID.init(hex:))
        pipeline.request.allowRewind = mission.allowRewind
        if mission.kind == .rollback {
            guard try aimRollback(&pipeline, entry, mission, receivedAt: receivedAt) else { return nil }
        }
        pipeline.request.deadline = receivedAt.addingTimeInterval(Double(mission.envelope.timeoutSeconds))
        pipeline.request.jobID = mission.jobID
        guard let splayed = try waitSplay(mission, deadline: pipeline.request.deadline!) else { return nil }
        // The registry keeps hearing from this factory ("updating") while a long sync runs.
        let heartbeat = UpdateHeartbeat(url: configuration.redisURL, own: registry.own, registration: currentRegistration(),
                                        interval: configuration.heartbeatSeconds, logger: logger)
        pipeline.request.retryQuarantined = mission.retryQuarantined
        // HQ's --wait shows "soaking, N s left" from the heartbeat.
        pipeline.onSoak = { heartbeat.soaking($0) }
        var report = pipeline.run()
        heartbeat.finish()
        // The app took its lock between the check and the pipeline: nothing changed; it waits again.
        if report.failure == .appLockHeld { return try deferAgain(entry, mission, receivedAt: receivedAt) }
        if let splayed { report.stepsMs = (report.stepsMs ?? [:]).merging(["splay": splayed]) { $1 } }
        if report.unfinished {
            // Stopped during the sync or the soak: not reported and not acked. The next start
            // finishes the record (and records its outcome under this job), then this mission
            // comes again and is answered with that outcome.
            logger.notice("\(mission.jobID): stopped part-way (\(report.error ?? "asked to stop")); it is answered after the next start")
            return nil
        }

        let result = missionResult(report, mission: mission, receivedAt: receivedAt)
        logger.notice("\(mission.jobID): \(result.status) \(report.shortFrom ?? "?") → \(report.shortTo ?? "?")\(report.error.map { ": \($0)" } ?? "")")
        lastJob = (mission.jobID, result.status)
        do {
            try bus.publishResult(result)
            try bus.ack(group: group, [entry.id])
        } catch {
            // Kept until Redis is back; a redelivery meanwhile is caught by the history check.
            unreported = (entry, result, report.succeeded && report.changed)
            throw error
        }
        if report.succeeded && report.changed {
            // Exit so systemd restarts the consumer, which registers again on the new commit.
            return .restartRequested(jobID: mission.jobID)
        }
        try backToIdle()
        return nil
    }

    /// A mission the pipeline stopped at the app's lock (nothing changed) goes back to wait,
    /// its splay spent.
    private func deferAgain(_ entry: StreamEntry, _ mission: Mission, receivedAt: Date) throws -> ConsumerExit? {
        var again = mission
        again.splaySeconds = 0
        deferred.append((entry, again, receivedAt))
        logger.notice("\(mission.jobID): the app took its update lock first; deferred, nothing was changed")
        try backToIdle()
        return nil
    }

    /// Idempotent: a redelivered mission that already ran is reported again, not re-run.
    private func reportAgain(_ previous: UpdateReport, _ entry: StreamEntry, _ mission: Mission,
                             receivedAt: Date) throws -> ConsumerExit? {
        logger.notice("\(mission.jobID) already ran (\(previous.status.rawValue)); reporting it again")
        var result = missionResult(previous, mission: mission, receivedAt: receivedAt)
        result.result["duplicate_delivery"] = .bool(true)
        try bus.publishResult(result)
        try bus.ack(group: group, [entry.id])
        lastJob = (mission.jobID, result.status)
        // This process ran it (Redis failed before the ack): it still owes systemd its restart.
        if previous.succeeded, previous.changed, (previous.finishedAt ?? 0) >= startedAt.timeIntervalSince1970 {
            return .restartRequested(jobID: mission.jobID)
        }
        try backToIdle()
        return nil
    }

    /// Points a rollback mission's pipeline at the commit before the last update (or the one it
    /// names). False when there is none: then `nothing_to_roll_back` was reported and acked.
    private func aimRollback(_ pipeline: inout UpdatePipeline, _ entry: StreamEntry, _ mission: Mission,
                             receivedAt: Date) throws -> Bool {
        do {
            let target = try RollbackTarget.resolve(factoryDirectory: configuration.factoryDirectory, explicit: pipeline.request.commit,
                                                    branch: mission.envelope.context["branch"]?.string)
            pipeline.request.branch = target.branch
            pipeline.request.commit = target.commit
            pipeline.request.allowRewind = true
            logger.notice("\(mission.jobID): rolling back to \(target.commit.short)\(target.undoing.map { ", undoing \($0)" } ?? "")")
            return true
        } catch {
            var report = UpdateReport(branch: mission.branch)
            report.failure = .nothingToRollBack
            report.error = "\(error)"
            report.finishedAt = Date().timeIntervalSince1970
            let result = missionResult(report, mission: mission, receivedAt: receivedAt)
            logger.error("\(mission.jobID): \(error)")
            lastJob = (mission.jobID, result.status)
            try bus.publishResult(result)
            try bus.ack(group: group, [entry.id])
            try backToIdle()
            return false
        }
    }

    /// Online (or paused) again, and the registry hears of it.
    private func backToIdle() throws {
        status = state.paused ? "paused" : "online"
        try register()
    }

    /// An update mission's splay: a random delay in [0, splay_seconds) before the fetch, never
    /// into the last minute before the mission's deadline, with the registration saying
    /// "waiting N s (splay)". Returns the milliseconds waited (nil when the mission has no
    /// splay: .some(nil)); nil when asked to stop during it (nothing changed; not acked, so the
    /// mission comes again after the next start).
    private func waitSplay(_ mission: Mission, deadline: Date) throws -> Int?? {
        guard mission.splaySeconds > 0 else { return .some(nil) }
        let delay = min(Double.random(in: 0..<Double(mission.splaySeconds)), max(0, deadline.timeIntervalSinceNow - 60))
        defer { splayLeft = nil }
        logger.info("\(mission.jobID): waiting \(delay.fixed(1)) s (splay \(mission.splaySeconds) s) before fetching")
        let end = Monotonic.now + delay
        // Registered again every heartbeat while it waits: HQ sees it alive and the time left.
        while !stop.isSet, case let left = end - Monotonic.now, left > 0 {
            splayLeft = Int(left.rounded(.up))
            try? register()
            stop.sleep(min(left, configuration.heartbeatSeconds))
        }
        if stop.isSet {
            logger.notice("\(mission.jobID): stopped during the splay; nothing was changed; it runs after the next start")
            return nil
        }
        return .some(Int(delay * 1000))
    }

    private func makePipeline(branch: String) -> UpdatePipeline {
        let request = UpdateRequest(factoryDirectory: configuration.factoryDirectory, branch: branch,
                                    settings: configuration.updateSettings)
        var pipeline = UpdatePipeline(request: request, logger: logger)
        pipeline.shouldCancel = { [stop] in stop.isSet }
        pipeline.shouldStopSync = { [stop] in stop.childShouldStop(grace: UpdatePipeline.syncStopGrace) }
        return pipeline
    }

    private func missionResult(_ report: UpdateReport, mission: Mission, receivedAt: Date) -> MissionResult {
        var result: [String: JSONValue] = [
            "factory_id": .string(configuration.factoryID),
            "mission_kind": .string(mission.kind.rawValue),
            "branch": .string(report.branch),
            "from_commit": report.from.map(JSONValue.string) ?? .null,
            "to_commit": report.to.map(JSONValue.string) ?? .null,
            "attempted_commit": report.attempted.map(JSONValue.string) ?? .null,
            // The update report's names for the same three (one vocabulary; the *_commit names
            // are those HQ already reads).
            "from": report.from.map(JSONValue.string) ?? .null,
            "to": report.to.map(JSONValue.string) ?? .null,
            "attempted": report.attempted.map(JSONValue.string) ?? .null,
            "upstream": report.upstream.map(JSONValue.string) ?? .null,
            "pinned": report.pinned.map(JSONValue.string) ?? .null,
            "needs_attention": .bool(!(report.inactiveAfterRollback ?? []).isEmpty || report.failure == .rollbackFailed
                                     || report.environmentOwed != nil),
            "changed": .bool(report.changed),
            "rolled_back": .bool(report.rolledBack),
            "synced": .bool(report.synced),
            "sync_skipped": .bool(report.syncSkipped ?? false),
            "restarted": .bool(report.restarted),
            // The result is sent after the soak window: soaked means it passed it.
            "soak_seconds": .double(report.soakSeconds),
            "soaked": .bool(report.soaked),
            "integration": .string(report.integration.rawValue),
            "commit_count": .int(Int64(report.commitCount)),
            "duration_ms": .int(Int64(report.durationMs)),
            "steps_ms": .object((report.stepsMs ?? [:]).mapValues { .int(Int64($0)) }),
            "received_at": .double(receivedAt.timeIntervalSince1970),
            "finished_at": .double(report.finishedAt ?? Date().timeIntervalSince1970),
            "restart_requested": .bool(report.succeeded && report.changed),
            "outcome": .string(report.succeeded ? (report.changed ? "updated" : "up_to_date") : (report.rolledBack ? "rolled_back" : "failed")),
        ]
        if let failure = report.failure { result["failure"] = .string(failure.rawValue) }
        if let recovery = report.recovery { result["recovery"] = .string(recovery) }
        return MissionResult(jobID: mission.jobID, succeeded: report.succeeded, result: result, error: report.error)
    }

    // MARK: Registration

    /// A registration to HQ is owed (every 60 s, and on every status change).
    private var hqPostDue: Bool {
        hq != nil && (Date().timeIntervalSince(lastHQPost) >= 60 || status != lastPostedStatus)
    }

    private func register() throws {
        let registration = currentRegistration()
        try registry.register(registration)
        lastHeartbeat = Date(timeIntervalSince1970: registration.lastSeenAt)
        lastRegisteredStatus = status
        if let hq, hqPostDue {
            lastHQPost = Date()
            lastPostedStatus = status
            hq.post(registration)
        }
    }

    private func currentRegistration() -> Registration {
        let head = try? repository.head()
        var capabilities = configuration.capabilities
        capabilities += ["factoryctl", "factoryctl:\(configuration.version)", "system:update_factory",
                         "system:pause_factory", "system:resume_factory"]
        if let commit = head?.commit { capabilities.append("commit:\(commit.short)") }
        let now = Date()
        var metadata: [String: JSONValue] = ["factory_dir": .string(configuration.factoryDirectory), "consumer_group": .string(group)]
        if let currentJobID { metadata["current_job_id"] = .string(currentJobID) }
        if let splayLeft { metadata["splay_seconds_left"] = .int(Int64(splayLeft)) }
        if let deferral { metadata.merge(deferral.metadata) { $1 } }
        // An environment a rollback could not restore: HQ's fleet page says so until a sync succeeds.
        if let owed = EnvironmentDebt.read(gitDirectory: repository.gitDirectory) { metadata["needs_attention"] = .string(owed.summary) }
        // Commits that failed here (the newest few): HQ's fleet page shows them with the factory.
        let quarantined = Quarantine(gitDirectory: repository.gitDirectory).entries().prefix(5)
        if !quarantined.isEmpty {
            metadata["quarantined"] = .array(quarantined.map {
                .object(["commit": .string($0.commit), "failure": .string($0.failure), "failed_at": .double($0.failedAt)])
            })
        }
        let registration = Registration(
            factoryID: configuration.factoryID, factoryRole: configuration.role, registrationStatus: status,
            capabilities: capabilities,
            metadata: metadata,
            branch: head?.branchName, commit: head?.commit?.hex, version: configuration.version,
            pid: getpid(), host: ProcessInfo.processInfo.hostName,
            startedAt: startedAt.timeIntervalSince1970, lastSeenAt: now.timeIntervalSince1970,
            lastJobID: lastJob?.id, lastJobStatus: lastJob?.status)
        return registration
    }
}

/// A boolean shared between threads.
final class Flag: Sendable {
    private let value = Atomic<Bool>(false)

    var isSet: Bool { value.load(ordering: .sequentiallyConsistent) }

    func set(_ newValue: Bool) {
        value.store(newValue, ordering: .sequentiallyConsistent)
    }
}

/// Signed missions this factory has taken, by job id, until they expire (after that the
/// signature check refuses them anyway): `.git/factoryctl/seen-missions.json`.
final class SeenMissions {
    let path: String

    enum Taken: Equatable {
        case new
        /// The same stream entry again (a pending entry re-read after a restart).
        case redelivered
        /// The same job under another entry id.
        case replayed(firstEntry: String)
        case unsaved(String)
    }

    init(gitDirectory: String) {
        path = gitDirectory + "/factoryctl/seen-missions.json"
    }

    func take(jobID: String, entryID: String, expiresAt: Double, now: Date = Date()) -> Taken {
        var entries = (FileManager.default.contents(atPath: path).flatMap { try? JSONValue.parse(bytes: $0) }?.object ?? [:])
            .filter { ($0.value["expires_at"]?.number ?? 0) >= now.timeIntervalSince1970 }
        if let known = entries[jobID] {
            let first = known["entry"]?.string ?? "?"
            return first == entryID ? .redelivered : .replayed(firstEntry: first)
        }
        entries[jobID] = .object(["entry": .string(entryID), "expires_at": .double(expiresAt)])
        do {
            try FileManager.default.createDirectory(atPath: path.deletingLastPathComponent, withIntermediateDirectories: true)
            try FileWriting.replace(path, with: Array(JSONValue.object(entries).pythonJSON.utf8))
        } catch {
            return .unsaved("\(error)")
        }
        return .new
    }
}

/// Consumer state that must survive restarts (pause), in `.git/factoryctl/consumer.json`.
final class ConsumerState {
    let path: String
    private var cached: Bool?

    init(gitDirectory: String) {
        path = gitDirectory + "/factoryctl/consumer.json"
    }

    var paused: Bool {
        if let cached { return cached }
        let value = FileManager.default.contents(atPath: path).flatMap { try? JSONValue.parse(bytes: $0) }?["paused"]?.bool ?? false
        cached = value
        return value
    }

    /// Saves the flag (temp file, then rename); the in-memory value changes only once it is on disk.
    func setPaused(_ value: Bool) throws {
        let directory = path.deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try Data(JSONValue.object(["paused": .bool(value)]).pythonJSON.utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
        cached = value
    }
}

/// Re-registers a fixed registration (status "updating") every `interval` seconds on its own
/// thread and Redis connection while the pipeline runs on the consumer's thread.
final class UpdateHeartbeat: Sendable {
    private let stopRequested = DispatchSemaphore(value: 0)
    private let stopped = DispatchSemaphore(value: 0)
    /// Seconds of the soak window left, once the update is soaking.
    private let soakLeft = Mutex<Int?>(nil)

    /// The update is soaking: the next heartbeats say how long is left.
    func soaking(_ secondsLeft: Double) {
        soakLeft.withLock { $0 = Int(secondsLeft.rounded(.up)) }
    }

    init(url: RedisURL, own: FactoryKeys?, registration: Registration, interval: Double, logger: Logger) {
        detachThread { [self] in
            let registry = FleetRegistry(redis: RedisClient(url: url, connectTimeout: 2, commandTimeout: 5), own: own)
            var registration = registration
            while stopRequested.wait(timeout: .now() + interval) == .timedOut {
                registration.lastSeenAt = Date().timeIntervalSince1970
                if let left = self.soakLeft.withLock({ $0 }) { registration.metadata["soak_seconds_left"] = .int(Int64(left)) }
                do {
                    try registry.register(registration)
                } catch {
                    logger.debug("heartbeat during the update failed: \(error)")
                }
            }
            stopped.signal()
        }
    }

    /// Stops the heartbeat and waits for its thread (at most one Redis command's timeout).
    func finish() {
        stopRequested.signal()
        stopped.wait()
    }
}
