import FactoryKit
import FoundationEssentials
import Dispatch
import FactoryBasics
import Glibc
import Hummingbird
import HummingbirdCore
import NIOCore
import Logging
import RedisKit

/// How the HQ endpoint runs.
public struct GatewayConfiguration: Sendable {
    public var host = "127.0.0.1"
    public var port = 8080
    /// `UA_OPS_TOKEN`; nil only with `insecureNoAuth`.
    public var opsToken: String?
    public var insecureNoAuth = false
    /// `FACTORY_ROLE`: publishing routes need HQ (`FactoryRole.authorize`).
    public var role: FactoryRole
    public var maxBodyBytes = 64 * 1024
    /// A connection whose request head has not arrived this long after it opened (or after the
    /// previous response) is closed: trickling header bytes does not extend it.
    public var idleTimeoutSeconds: Int64 = 10
    /// The longest a request body may take to arrive once its head is in (answered 408, before
    /// the connection's own 10 s limit closes it without an answer).
    public var bodyTimeoutSeconds: Int64 = 5
    /// Connections served at once; more wait in the kernel's backlog. High enough that a few
    /// hundred stuck clients cannot crowd out HQ before the timeouts close them.
    public var maxConnections = 1000
    public var missionTimeoutSeconds: Int64 = 300
    /// Signs every mission the routes publish (`UA_MISSION_SIGNING_KEY`).
    public var signer: MissionSigner?
    /// Where an update or rollout without a commit is pinned to the branch's tip, as `publish`
    /// pins it (`UA_FACTORY_REPO_URL`, else the origin of `UA_FACTORY_DIR`'s checkout).
    public var branchTip = BranchTip(repository: nil, factoryDirectory: nil, environment: [:], timeout: 120)
    /// How long a rollout thread's lease lasts without renewal (`FACTORYCTL_ROLLOUT_LEASE_SECONDS`).
    public var rolloutLeaseSeconds = RolloutLease.defaultSeconds
    /// `/metrics` (`UA_METRICS_TOKEN`) and the webhook (`UA_HQ_WEBHOOK_URL`).
    public var observability = ObservabilitySettings()
    /// How long a publish waits for a replica to confirm it (`UA_REDIS_WAIT_MS`, as `publish`).
    public var replicaWaitMilliseconds = 1000

    public init(role: FactoryRole) {
        self.role = role
    }

    /// A publisher as every route and rollout thread uses it: signing, and waiting for a replica.
    func publisher(_ bus: MissionBus, logger: Logger) -> Publisher {
        var publisher = Publisher(bus: bus, logger: logger, signer: signer)
        publisher.replicaWaitMilliseconds = replicaWaitMilliseconds
        return publisher
    }

    /// Everything the environment says, checked: the role, the signing key, the tip's repository
    /// and fetch timeout, the rollout lease, and the token under the token rule (`OpsToken`).
    /// Throws the first value that is not valid (a configuration error), before anything listens.
    public init(environment: FactoryEnvironment, insecureNoAuth: Bool) throws {
        role = environment.role
        self.insecureNoAuth = insecureNoAuth
        signer = try environment.missionSigner()
        branchTip = try BranchTip(environment: environment)
        rolloutLeaseSeconds = try environment.rolloutLeaseSeconds()
        replicaWaitMilliseconds = try environment.redisWaitMilliseconds()
        opsToken = try OpsToken.forServing(environment, insecureNoAuth: insecureNoAuth)
        observability = try ObservabilitySettings(environment: environment)
    }
}

/// The HQ HTTP endpoint over FactoryKit: the same publish, job and registry code as the CLI.
public struct Gateway: Sendable {
    public let configuration: GatewayConfiguration
    let redis: RedisWorker
    let logger: Logger
    /// Where a rollout's own connection goes (each rollout runs on a thread and connection of its own).
    let busSettings: (url: RedisURL, stream: String, deadLetterStream: String, maxLength: Int, fleetID: String)
    /// Set when `UA_METRICS_TOKEN` is.
    let metricsEndpoint: MetricsEndpoint?

    public init(configuration: GatewayConfiguration, bus: MissionBus, logger: Logger) {
        self.configuration = configuration
        self.redis = RedisWorker(bus: bus)
        self.logger = logger
        busSettings = (bus.redis.url, bus.stream, bus.deadLetterStream, bus.maxLength, bus.fleetID)
        metricsEndpoint = configuration.observability.metricsToken == nil ? nil : MetricsEndpoint()
    }

    /// The only routes the ops token is not asked for: liveness, readiness and the fleet page,
    /// which are public, and `/metrics`, which checks its own bearer token (`UA_METRICS_TOKEN`).
    public static let publicRoutes: Set<String> = ["GET /healthz", "GET /readyz", "GET /", "GET /metrics"]
    /// The only route an enrolled factory's own token (`x-ua-factory-token`) reaches, exactly as
    /// spelled here; every other route needs the ops token.
    public static let factoryTokenRoutes: Set<String> = ["POST /api/v1/factory/registrations"]

    /// Public routes on the router; everything else in the protected group. The router-wide
    /// middleware denies any request that is not exactly a public route and has no valid token,
    /// so a route added anywhere later is protected unless it is added to `publicRoutes` too.
    public func makeRouter() -> Router<BasicRequestContext> {
        let router = Router()
        let token = configuration.insecureNoAuth ? nil : configuration.opsToken
        router.add(middleware: AccessLogMiddleware(logger: logger))
        router.add(middleware: OpsTokenMiddleware(token: token, publicRoutes: Self.publicRoutes, factoryTokenRoutes: Self.factoryTokenRoutes))
        router.get("/healthz") { _, _ in jsonResponse(.ok, ["ok": .bool(true)]) }
        router.get("/readyz") { _, _ in await self.readiness() }
        router.get("/metrics") { request, _ in await self.metrics(request) }
        router.get("/") { request, _ in
            try await self.fleetPage(FleetPage.Query(parameters: request.uri.queryParameters.map { (String($0.key), String($0.value)) }))
        }

        let api = router.group("api/v1").add(middleware: OpsTokenMiddleware(token: token, factoryTokenRoutes: Self.factoryTokenRoutes))
        api.post("ops/factory/update") { request, context in try await self.update(request, context) }
        api.post("ops/factory/control") { request, context in try await self.control(request, context) }
        api.post("ops/factory/rollout") { request, context in try await self.rollout(request, context) }
        api.get("ops/factory/jobs/:job_id") { _, context in try await self.job(context.parameters.get("job_id") ?? "") }
        api.post("factory/registrations") { request, context in try await self.register(request, context) }
        api.get("factory/registrations") { _, _ in try await self.registrations() }
        return router
    }

    /// Runs until SIGTERM/SIGINT (graceful shutdown). `onRunning` gets the bound port.
    public func run(onRunning: @escaping @Sendable (Int) -> Void = { _ in }) async throws {
        Self.raiseOpenFileLimit(to: UInt(configuration.maxConnections) + 64)
        let app = Application(
            router: makeRouter(),
            server: .http1(configuration: .init(idleTimeout: .seconds(configuration.idleTimeoutSeconds))),
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "factoryctl",
                                 availableConnectionsDelegate: MaximumAvailableConnections(configuration.maxConnections)),
            onServerRunning: { channel in onRunning(channel.localAddress?.port ?? 0) },
            logger: logger)
        let stop = StopSignal()
        defer { stop.set() }
        startWatching(stop: stop)
        do {
            try await app.runService()
        } catch let error as IOError where [EADDRINUSE, EACCES, EADDRNOTAVAIL].contains(error.errnoCode) {
            throw ListenError(host: configuration.host, port: configuration.port, errno: error.errnoCode)
        }
    }

    /// The address could not be listened on: in use, not permitted, or not on this machine.
    public struct ListenError: Error, CustomStringConvertible, Sendable {
        public let host: String
        public let port: Int
        public let errno: Int32

        public var description: String {
            let address = "\(host):\(port)"
            switch errno {
            case EADDRINUSE:
                return "address already in use: another process is listening on \(address) (find it with `ss -ltnp 'sport = :\(port)'`, stop it, or pass another --port)"
            case EACCES:
                return "not permitted to listen on \(address) (ports below 1024 need privileges; pick --port 1024 or above)"
            default:
                return "cannot listen on \(address): no such address on this machine (check --host)"
            }
        }
    }

    /// Each connection is a descriptor: lift the soft limit (often 1,024) toward the hard one.
    static func raiseOpenFileLimit(to wanted: UInt) {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < wanted else { return }
        limit.rlim_cur = min(wanted, limit.rlim_max)
        _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }

    // MARK: Publishing routes

    func update(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        if let refusal = roleRefusal() { return refusal }
        let body: [String: JSONValue]
        switch await readObject(request) {
        case .failure(let response): return response
        case .success(let object): body = object
        }
        let target: MissionTarget
        switch body["target_factory_id"] {
        case nil, .null?: target = .all
        case .string(let id)?:
            if id.isEmpty { target = .all } else {
                guard MissionID.isValid(id) else { return invalid("target_factory_id", "'\(id.prefix(80))' is not a valid factory id") }
                target = .ids([id])
            }
        default: return invalid("target_factory_id", "must be a string or null")
        }
        var branch = "main"
        if let refusal = readBranch(body, into: &branch) { return refusal }
        guard let force = field(body, "force", \.bool) else { return invalid("force", "must be a boolean") }
        guard var commit = field(body, "commit", Self.commitID) else { return invalid("commit", Self.commitIDRule) }
        guard let allowRewind = field(body, "allow_rewind", \.bool) else { return invalid("allow_rewind", "must be a boolean") }
        if allowRewind == true, commit == nil { return invalid("allow_rewind", "needs commit (the commit to roll back to)") }
        guard let retryQuarantined = field(body, "retry_quarantined", \.bool) else { return invalid("retry_quarantined", "must be a boolean") }
        guard let splay = field(body, "splay_seconds", splaySeconds) else { return invalid("splay_seconds", splayRule) }
        guard let ignoreWindow = field(body, "ignore_window", \.bool) else { return invalid("ignore_window", "must be a boolean") }
        if let refusal = await pin(&commit, branch: branch) { return refusal }
        let timeout = configuration.missionTimeoutSeconds
        let publisher: @Sendable (MissionBus) throws -> Publisher.Outcome = { [branch, commit] bus in
            try self.configuration.publisher(bus, logger: self.logger).publish(
                kind: .update, target: target, branch: branch, timeoutSeconds: timeout, force: force ?? false,
                commit: commit, allowRewind: allowRewind ?? false, retryQuarantined: retryQuarantined ?? false,
                splaySeconds: splay ?? 0, ignoreWindow: ignoreWindow ?? false)
        }
        do {
            let outcome = try await redis.run(publisher)
            var answer: [String: JSONValue] = [
                "ok": .bool(true), "job_id": .string(outcome.jobID), "branch": .string(outcome.branch),
                "target_factory_id": target == .all ? .null : .string(outcome.targetFactoryID),
            ]
            // The existing HQ's answer has exactly the four keys above; a pinned one adds `commit`.
            if let commit = outcome.commit { answer["commit"] = .string(commit) }
            return jsonResponse(.ok, answer)
        } catch let refusal as Publisher.Refusal {
            return jsonResponse(.conflict, ["ok": .bool(false), "error": .string(refusal.description),
                                            "inflight_job_id": .string(refusal.inflightJobID)])
        } catch {
            return redisFailure(error)
        }
    }

    /// A body field: `.some(nil)` when absent or null, nil when `read` finds it of the wrong type or value.
    private func field<T>(_ body: [String: JSONValue], _ name: String, _ read: (JSONValue) -> T?) -> T?? {
        guard let value = body[name], value != .null else { return .some(nil) }
        guard let parsed = read(value) else { return nil }
        return .some(parsed)
    }

    /// `splay_seconds`: a whole number of seconds, 0...3600 and shorter than the mission timeout.
    func splaySeconds(_ value: JSONValue) -> Int? {
        guard let seconds = value.number, seconds == seconds.rounded(), seconds >= 0, seconds <= Double(Mission.maximumSplaySeconds),
              seconds == 0 || seconds < Double(configuration.missionTimeoutSeconds) else { return nil }
        return Int(seconds)
    }
    var splayRule: String { "must be whole seconds from 0 to \(Mission.maximumSplaySeconds), shorter than the mission timeout (\(configuration.missionTimeoutSeconds) s)" }

    static func commitID(_ value: JSONValue) -> String? { value.string.flatMap { Mission.isCommitID($0) ? $0 : nil } }
    static let commitIDRule = "must be a full commit id (40 lowercase hex digits) or null"

    /// `branch` from the body (default kept), validated like git does; the 422 when it is not.
    private func readBranch(_ body: [String: JSONValue], into branch: inout String) -> Response? {
        guard let value = body["branch"], value != .null else { return nil }
        guard let name = value.string else { return invalid("branch", "must be a string") }
        do { try BranchName.validate(name) } catch { return invalid("branch", "\(error)") }
        branch = name
        return nil
    }

    /// Without an explicit commit, the branch's tip now (`BranchTip`, as `publish` pins it); the
    /// answer (422, 502) when it cannot be read. Nothing is published then.
    private func pin(_ commit: inout String?, branch: String) async -> Response? {
        guard commit == nil else { return nil }
        switch await configuration.branchTip.resolveDetached(branch) {
        case .success(.unpinned):
            return nil
        case .success(.pinned(let tip, _)):
            commit = tip
            return nil
        case .failure(let failure):
            guard case .unreadable(let error) = failure.reason else {
                return invalid("branch", "the repository has no branch '\(branch)'")
            }
            logger.error("could not read the tip of \(branch): \(error)")
            return jsonResponse(.badGateway, ["ok": .bool(false),
                                              "error": .string("could not read the tip of \(branch) from the repository; nothing was published")])
        }
    }

    /// Starts a staged rollout (`RolloutStart`, as `publish` does) and answers at once (202) with
    /// its id and waves; the rollout runs on a thread of its own. `status --rollout ID` (or
    /// `publish resume-rollout ID`, should this server stop) follows it.
    func rollout(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        if let refusal = roleRefusal() { return refusal }
        let body: [String: JSONValue]
        switch await readObject(request) {
        case .failure(let response): return response
        case .success(let object): body = object
        }
        var start: RolloutStart
        switch rolloutStart(body) {
        case .failure(let response): return response
        case .success(let parsed): start = parsed
        }
        if let refusal = await pin(&start.commit, branch: start.branch) { return refusal }
        guard start.commit != nil else {
            return invalid("commit", "is needed (or UA_FACTORY_REPO_URL for the branch's tip): a rollout moves every wave to one commit")
        }
        let plan: Rollout.Plan
        switch await record(start) {
        case .failure(let response): return response
        case .success(let recorded): plan = recorded
        }
        drive(plan)
        return jsonResponse(.accepted, [
            "ok": .bool(true), "rollout_id": .string(plan.id), "commit": .string(plan.commit), "branch": .string(plan.branch),
            "waves": .array(plan.waves.map { .array($0.map(JSONValue.string)) }),
        ])
    }

    private enum Parsed<Value> {
        case success(Value)
        case failure(Response)
    }

    /// The rollout the body asks for (its commit nil when the body names none); the 422 for the
    /// first field that is not valid. The route never refuses unregistered targets and has no
    /// `force`: an update in flight for the targets refuses the rollout (409).
    private func rolloutStart(_ body: [String: JSONValue]) -> Parsed<RolloutStart> {
        let target: MissionTarget
        switch body["target_factory_id"] {
        case nil, .null?: target = .all
        case .string(let id)? where id.count <= 128:
            do { target = try MissionTarget(arguments: [id]) } catch { return .failure(invalid("target_factory_id", "\(error)")) }
        default: return .failure(invalid("target_factory_id", "must be a factory id, a glob, or null"))
        }
        var branch = "main"
        if let refusal = readBranch(body, into: &branch) { return .failure(refusal) }
        var start = RolloutStart(target: target, branch: branch)
        if let refusal = readWaves(body, into: &start) { return .failure(refusal) }
        guard let commit = field(body, "commit", Self.commitID) else { return .failure(invalid("commit", Self.commitIDRule)) }
        start.commit = commit
        guard let splay = field(body, "splay_seconds", splaySeconds) else { return .failure(invalid("splay_seconds", splayRule)) }
        start.splaySeconds = splay ?? 0
        guard let ignoreWindow = field(body, "ignore_window", \.bool) else { return .failure(invalid("ignore_window", "must be a boolean")) }
        start.ignoreWindow = ignoreWindow ?? false
        start.missionTimeout = configuration.missionTimeoutSeconds
        start.force = false
        start.requireRegistered = false
        return .success(start)
    }

    /// The waves and their pacing from the body: canary, batch, max_in_flight, max_failure_rate,
    /// canary_targets, pause_seconds, max_failures, wave_timeout, rollback_on_halt. The 422 for the first that is not valid.
    private func readWaves(_ body: [String: JSONValue], into start: inout RolloutStart) -> Response? {
        /// nil for a bad value; `.some(nil)` for absent.
        func size(_ field: String) -> Rollout.Size?? {
            switch body[field] {
            case nil, .null?: return .some(nil)
            case .int(let n)? where n > 0 && n <= 100_000: return .some(.count(Int(n)))
            case .string(let text)?: if let size = Rollout.Size(text) { return .some(size) }
            default: break
            }
            return nil
        }
        func number(_ field: String, _ fallback: Double) -> Double? {
            switch body[field] {
            case nil, .null?: fallback
            case let value?: value.number.flatMap { $0 >= 0 && $0 <= 86_400 ? $0 : nil }
            }
        }
        guard let canary = size("canary") else { return invalid("canary", "must be a positive number or a percentage such as \"25%\"") }
        guard let batch = size("batch") else { return invalid("batch", "must be a positive number or a percentage such as \"25%\"") }
        guard let maxInFlight = size("max_in_flight") else { return invalid("max_in_flight", "must be a positive number or a percentage such as \"10%\"") }
        if maxInFlight != nil, batch != nil { return invalid("max_in_flight", "is a sliding window instead of batches: send one of max_in_flight and batch") }
        switch body["max_failure_rate"] {
        case nil, .null?: start.maxFailureRate = nil
        case .string(let text)? where Rollout.FailureRate(text) != nil && maxInFlight != nil: start.maxFailureRate = Rollout.FailureRate(text)
        default: return invalid("max_failure_rate", "must be \"K/SECONDS\" (e.g. \"3/600\"), with max_in_flight")
        }
        start.maxInFlight = maxInFlight
        if let list = body["canary_targets"], list != .null {
            guard let ids = list.array?.compactMap(\.string), ids.count == list.array?.count, ids.allSatisfy(MissionID.isValid) else {
                return invalid("canary_targets", "must be a list of factory ids")
            }
            start.canaryTargets = ids
        }
        guard let pause = number("pause_seconds", 0) else { return invalid("pause_seconds", "must be 0...86400") }
        guard let maxFailures = number("max_failures", 0) else { return invalid("max_failures", "must be 0 or more") }
        guard let waveTimeout = number("wave_timeout", 600), waveTimeout > 0 else { return invalid("wave_timeout", "must be 1...86400") }
        guard let rollbackOnHalt = field(body, "rollback_on_halt", \.bool).map({ $0 ?? false }) else {
            return invalid("rollback_on_halt", "must be a boolean")
        }
        (start.canary, start.batch, start.pauseSeconds, start.maxFailures) = (canary, batch, pause, Int(maxFailures))
        (start.waveTimeout, start.rollbackOnHalt) = (waveTimeout, rollbackOnHalt)
        return nil
    }

    /// Plans and records the rollout on the Redis worker; the answer (409, 422, 503) when it is refused.
    private func record(_ start: RolloutStart) async -> Parsed<Rollout.Plan> {
        let (configuration, logger) = (self.configuration, self.logger)
        do {
            return .success(try await redis.run { bus in
                try start.start(with: Rollout(publisher: configuration.publisher(bus, logger: logger), logger: logger))
            })
        } catch let conflict as Rollout.Conflict {
            return .failure(jsonResponse(.conflict, ["ok": .bool(false), "error": .string(conflict.description), "rollout_id": .string(conflict.rolloutID)]))
        } catch let refusal as Publisher.Refusal {
            return .failure(jsonResponse(.conflict, ["ok": .bool(false), "error": .string(refusal.description), "inflight_job_id": .string(refusal.inflightJobID)]))
        } catch let none as RolloutStart.NoLiveFactory {
            return .failure(jsonResponse(.unprocessableContent, ["ok": .bool(false), "error": .string(none.description)]))
        } catch let oversized as OversizedMission {
            return .failure(jsonResponse(.unprocessableContent, ["ok": .bool(false), "error": .string(oversized.description)]))
        } catch let error as FactoryError {
            return .failure(jsonResponse(.unprocessableContent, ["ok": .bool(false), "error": .string("\(error)")]))
        } catch {
            return .failure(redisFailure(error))
        }
    }

    /// Runs the rollout to its end on a thread and connection of its own, under the rollout's
    /// lease like any runner: a resume-rollout meanwhile is refused.
    private func drive(_ plan: Rollout.Plan) {
        let (configuration, logger, settings) = (self.configuration, self.logger, busSettings)
        detachThread {
            let bus = MissionBus(redis: RedisClient(url: settings.url), stream: settings.stream,
                                 deadLetterStream: settings.deadLetterStream, maxLength: settings.maxLength, fleetID: settings.fleetID)
            let runner = Rollout(publisher: configuration.publisher(bus, logger: logger), logger: logger,
                                 leaseSeconds: configuration.rolloutLeaseSeconds, runnerName: "factoryctl serve")
            do {
                let summary = try runner.run(plan.id, stop: StopSignal()) { line in logger.info("\(plan.id): \(line)") }
                logger.notice("rollout \(plan.id) ended: \(summary.state.rawValue)")
            } catch {
                logger.error("rollout \(plan.id) stopped: \(error); resume it with factoryctl publish resume-rollout \(plan.id)")
            }
        }
    }

    func control(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        if let refusal = roleRefusal() { return refusal }
        let body: [String: JSONValue]
        switch await readObject(request) {
        case .failure(let response): return response
        case .success(let object): body = object
        }
        let kind: Mission.Kind
        switch body["action"] {
        case .string("pause")?: kind = .pause
        case .string("resume")?: kind = .resume
        case nil, .null?: return invalid("action", "is required: \"pause\" or \"resume\"")
        case .string(let other)?: return invalid("action", "unknown action '\(other.prefix(40))': use \"pause\" or \"resume\"")
        default: return invalid("action", "must be a string")
        }
        let target: MissionTarget
        switch body["target_factory_id"] {
        case .string(let id)? where id.isEmpty: target = .all
        case .string(let id)?:
            guard MissionID.isValid(id) else { return invalid("target_factory_id", "'\(id.prefix(80))' is not a valid factory id") }
            target = .ids([id])
        case nil, .null?: return invalid("target_factory_id", "is required (\"\" for every factory)")
        default: return invalid("target_factory_id", "must be a string")
        }
        do {
            let outcome = try await redis.run { bus in
                try self.configuration.publisher(bus, logger: self.logger).publish(kind: kind, target: target, branch: "main", force: true)
            }
            return jsonResponse(.ok, [
                "ok": .bool(true), "job_id": .string(outcome.jobID), "action": .string(kind == .pause ? "pause" : "resume"),
                "target_factory_id": target == .all ? .null : .string(outcome.targetFactoryID),
            ])
        } catch {
            return redisFailure(error)
        }
    }

    // MARK: Reading routes

    /// 200 when Redis answers PING, else 503 (`/healthz` stays liveness only).
    func readiness() async -> Response {
        do {
            _ = try await redis.run { bus in try bus.redis.command(["PING"]) }
            return jsonResponse(.ok, ["ok": .bool(true), "redis": .string("ok")])
        } catch {
            return jsonResponse(.serviceUnavailable, ["ok": .bool(false), "redis": .string("unavailable")])
        }
    }

    func job(_ jobID: String) async throws -> Response {
        guard MissionID.isValid(jobID) else { return invalid("job_id", "'\(jobID.prefix(80))' is not a valid job id") }
        do {
            let (record, live) = try await redis.run { bus in
                (try bus.job(jobID), try FleetRegistry(redis: bus.redis).liveFactoryIDs())
            }
            guard record.known else {
                return jsonResponse(.notFound, ["ok": .bool(false), "error": .string("no record of job \(jobID)")])
            }
            let pending = record.pending(among: live)
            return jsonResponse(.ok, [
                "ok": .bool(true), "job_id": .string(jobID), "meta": record.meta ?? .null,
                "results": .array(record.results.map(\.json)), "pending": .array(pending.map(JSONValue.string)),
            ])
        } catch {
            return redisFailure(error)
        }
    }

    func register(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let body: [String: JSONValue]
        switch await readObject(request) {
        case .failure(let response): return response
        case .success(let object): body = object
        }
        guard let factoryID = body["factory_id"]?.string else {
            return invalid("factory_id", body["factory_id"] == nil ? "is required" : "must be a string")
        }
        guard MissionID.isValid(factoryID) else { return invalid("factory_id", "'\(factoryID.prefix(80))' is not a valid factory id") }
        let own: FactoryKeys?
        switch await authorizeRegistration(of: factoryID, by: RegistrationCredential(request)) {
        case .failure(let response): return response
        case .success(let keys): own = keys
        }
        var strings: [String: String] = [:]
        for field in ["factory_role", "deployment_profile", "registration_status"] {
            switch body[field] {
            case nil, .null?: break
            case .string(let value)? where value.utf8.count <= 200: strings[field] = value
            default: return invalid(field, "must be a string of at most 200 bytes")
            }
        }
        var capabilities: [String]?
        switch body["capabilities"] {
        case nil, .null?: break
        case .array(let items)?:
            let names = items.compactMap(\.string)
            guard names.count == items.count else { return invalid("capabilities", "must be a list of strings") }
            capabilities = names
        default: return invalid("capabilities", "must be a list of strings")
        }
        var metadata: [String: JSONValue]?
        switch body["metadata"] {
        case nil, .null?: break
        case .object(let object)?: metadata = object
        default: return invalid("metadata", "must be an object")
        }
        let (fields, newCapabilities, newMetadata) = (strings, capabilities, metadata)
        do {
            let stored = try await redis.run { bus in
                let registry = FleetRegistry(redis: bus.redis, own: own)
                let now = Date().timeIntervalSince1970
                var registration = try registry.get(factoryID) ?? Registration(
                    factoryID: factoryID, factoryRole: FactoryRole.localWorker.name, registrationStatus: "online", capabilities: [],
                    version: "", pid: 0, host: "", startedAt: now, lastSeenAt: now)
                registration.factoryRole = fields["factory_role"] ?? registration.factoryRole
                registration.deploymentProfile = fields["deployment_profile"] ?? registration.deploymentProfile
                registration.registrationStatus = fields["registration_status"] ?? registration.registrationStatus
                registration.capabilities = newCapabilities ?? registration.capabilities
                if let newMetadata { registration.metadata = newMetadata }
                registration.lastSeenAt = now
                try registry.register(registration)
                return registration
            }
            return jsonResponse(.ok, ["ok": .bool(true), "factory_id": .string(factoryID), "registration": stored.json])
        } catch {
            return redisFailure(error)
        }
    }

    /// Whether `credential` may register `factoryID`, and where: a factory token only for the
    /// enrolled factory it was issued to (its own key), the ops token only for a factory that is
    /// not enrolled (the shared registry). The answer (403, 503) when it may not.
    private func authorizeRegistration(of factoryID: String, by credential: RegistrationCredential) async -> Parsed<FactoryKeys?> {
        do {
            switch credential {
            case .factory(let token):
                guard try await redis.run({ bus in try Enrollment(redis: bus.redis).accepts(token: token, for: factoryID) }) else {
                    return .failure(jsonResponse(.forbidden, ["ok": .bool(false), "error": .string(
                        "x-ua-factory-token is not the token of factory '\(factoryID)': a factory token registers only the factory it was issued to; nothing was registered")]))
                }
                return .success(FactoryKeys(factoryID))
            case .operators:
                // Enrolled as the registry reads it (`FleetRegistry`): such a factory is read from its own key only.
                guard try await redis.run({ bus in try Enrollment(redis: bus.redis).enrolled(among: [factoryID]).isEmpty }) else {
                    return .failure(jsonResponse(.forbidden, ["ok": .bool(false), "error": .string(
                        "factory '\(factoryID)' is enrolled: registers with its own token (x-ua-factory-token), not the ops token; nothing was registered")]))
                }
                return .success(nil)
            }
        } catch {
            return .failure(redisFailure(error))
        }
    }

    func registrations() async throws -> Response {
        do {
            let all = try await redis.run { bus in try FleetRegistry(redis: bus.redis).all() }
            let now = Date()
            let rows = all.map { registration -> JSONValue in
                var object = registration.json.object ?? [:]
                object["stale"] = .bool(registration.isStale(now: now, after: FleetRegistry.staleAfter))
                return .object(object)
            }
            return jsonResponse(.ok, ["ok": .bool(true), "registrations": .array(rows)])
        } catch {
            return redisFailure(error)
        }
    }

    func fleetPage(_ query: FleetPage.Query = FleetPage.Query()) async throws -> Response {
        do {
            let overview = try await redis.run { bus in try FleetOverview.read(bus) }
            let html = FleetPage(overview: overview, now: Date(), query: query).html
            return Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-store"],
                            body: .init(byteBuffer: ByteBuffer(string: html)))
        } catch {
            let html = FleetPage.unavailable("\(error)")
            return Response(status: .serviceUnavailable, headers: [.contentType: "text/html; charset=utf-8"],
                            body: .init(byteBuffer: ByteBuffer(string: html)))
        }
    }

    // MARK: Helpers

    /// The HEADQUARTERS rule: a publishing route on a machine that is not HQ answers 403.
    private func roleRefusal() -> Response? {
        do throws(FactoryRole.Refusal) {
            try configuration.role.authorize(.publish)
            return nil
        } catch {
            return jsonResponse(.forbidden, ["ok": .bool(false), "error": .string(error.summary)])
        }
    }

    private struct BodyTimeout: Error {}

    private enum BodyResult {
        case success([String: JSONValue])
        case failure(Response)
    }

    private func readObject(_ request: Request) async -> BodyResult {
        let buffer: ByteBuffer
        do {
            let limit = configuration.maxBodyBytes
            let body = request.body
            buffer = try await withThrowingTaskGroup(of: ByteBuffer?.self) { group in
                group.addTask { try await body.collect(upTo: limit) }
                group.addTask {
                    try await Task.sleep(for: .seconds(configuration.bodyTimeoutSeconds))
                    return nil
                }
                defer { group.cancelAll() }
                guard let first = try await group.next(), let collected = first else {
                    throw BodyTimeout()
                }
                return collected
            }
        } catch is BodyTimeout {
            return .failure(jsonResponse(.requestTimeout, ["ok": .bool(false), "field": .string("body"),
                                                           "error": .string("the request body did not arrive within \(configuration.bodyTimeoutSeconds) s")]))
        } catch is NIOTooManyBytesError {
            return .failure(jsonResponse(.badRequest, ["ok": .bool(false), "field": .string("body"),
                                                       "error": .string("request body is larger than \(configuration.maxBodyBytes) bytes")]))
        } catch {
            return .failure(jsonResponse(.badRequest, ["ok": .bool(false), "field": .string("body"),
                                                       "error": .string("the request body could not be read: \(error)")]))
        }
        let bytes = buffer.readableBytesView
        if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) { return .success([:]) }
        let value: JSONValue
        do {
            value = try JSONValue.parse(bytes: bytes)
        } catch {
            return .failure(jsonResponse(.badRequest, ["ok": .bool(false), "field": .string("body"),
                                                       "error": .string("body is not valid JSON (\(error))")]))
        }
        guard let object = value.object else {
            return .failure(jsonResponse(.badRequest, ["ok": .bool(false), "field": .string("body"), "error": .string("body must be a JSON object")]))
        }
        return .success(object)
    }

    private func invalid(_ field: String, _ message: String) -> Response {
        jsonResponse(.unprocessableContent, ["ok": .bool(false), "field": .string(field), "error": .string("\(field) \(message)")])
    }

    func redisFailure(_ error: Error) -> Response {
        logger.error("Redis: \(error)")
        if let error = error as? RedisError, !error.isConnectionError {
            return jsonResponse(.internalServerError, ["ok": .bool(false), "error": .string("\(error)")])
        }
        return jsonResponse(.serviceUnavailable, ["ok": .bool(false), "error": .string("Redis unavailable: \(error); nothing was published")])
    }
}

func jsonResponse(_ status: HTTPResponse.Status, _ object: [String: JSONValue]) -> Response {
    Response(status: status, headers: [.contentType: "application/json"],
             body: .init(byteBuffer: ByteBuffer(string: JSONValue.object(object).pythonJSON + "\n")))
}
