import FactoryKit
import Foundation
import RedisKit
import Testing
import TestSupport

let metricsToken = "test-metrics-token-0123"

/// A fleet written the way factories write it (registrations and results on the real wire,
/// through FactoryKit's own writers), and `factoryctl serve` over it.
final class ObservedHQ {
    let fleet: FleetWorld
    let redisURL: RedisURL
    var server: GatewayProcess
    var environment: [String: String]

    init(environment more: [String: String] = ["UA_METRICS_TOKEN": metricsToken], enrolled: [String] = []) throws {
        fleet = try FleetWorld()
        redisURL = try RedisURL(fleet.redis.url)
        for id in enrolled { _ = try Enrollment(redis: RedisClient(url: redisURL)).enroll(id, rotate: false, factoryURL: redisURL) }
        environment = hqEnvironment(fleet).merging(more) { $1 }
        server = try GatewayProcess(fleet: fleet, environment: environment)
        try waitForWatch()
    }

    deinit { server.process.stop() }

    func restartServer() throws {
        _ = server.process.stop()
        server = try GatewayProcess(fleet: fleet, environment: environment)
        try waitForWatch()
    }

    /// When serve watches (a metrics token or a webhook), until its watcher has recorded when
    /// watching began: results written before that moment are not its to report.
    func waitForWatch() throws {
        guard environment["UA_METRICS_TOKEN"] != nil || environment["UA_HQ_WEBHOOK_URL"] != nil else { return }
        let started = eventually { (try? fleet.redis.cli(["HEXISTS", FleetWatch.cursorKey, "started_ms"])) == "1" }
        if !started { throw Command.Failed(argv: ["factoryctl", "serve"], status: -1, output: "the watcher did not start: \(server.process.output)") }
    }

    /// A bus as factory `id` has it: its own keys when `enrolled`, else the shared ones.
    func bus(_ id: String, enrolled: Bool) -> MissionBus {
        let bus = MissionBus(redis: RedisClient(url: redisURL), stream: "ua:missions:delegation", deadLetterStream: "ua:missions:dlq")
        if enrolled { bus.own = FactoryKeys(id) }
        return bus
    }

    func register(_ id: String, enrolled: Bool = false, commit: String = String(repeating: "a", count: 40), lastSeen: Double = Date().timeIntervalSince1970) throws {
        let registration = Registration(factoryID: id, factoryRole: "LOCAL_WORKER", registrationStatus: "online", capabilities: [],
                                        branch: "main", commit: commit, version: "0.2.0", pid: 1, host: "h",
                                        startedAt: lastSeen, lastSeenAt: lastSeen)
        try FleetRegistry(redis: RedisClient(url: redisURL), own: enrolled ? FactoryKeys(id) : nil).register(registration)
    }

    /// A result of update job `job` written by factory `writer` (claiming to be `claimed`).
    func report(_ job: String, by writer: String, claiming claimed: String? = nil, enrolled: Bool = false, succeeded: Bool,
                failure: String = "sync_failed", publishedByHQ: Bool = true) throws {
        var result: [String: JSONValue] = [
            "factory_id": .string(claimed ?? writer), "mission_kind": .string("system:update_factory"),
            "duration_ms": .int(4200), "finished_at": .double(Date().timeIntervalSince1970),
            "to_commit": .string(String(repeating: "b", count: 40)),
        ]
        if !succeeded { result["failure"] = .string(failure) }
        // The job's record, as publish leaves it: HQ counts results only of jobs it published.
        if publishedByHQ { _ = try fleet.redis.cli(["SET", "factoryctl:jobs:" + job, #"{"job_id": "\#(job)", "kind": "system:update_factory"}"#]) }
        try bus(writer, enrolled: enrolled).publishResult(MissionResult(jobID: job, succeeded: succeeded, result: result,
                                                                        error: succeeded ? nil : "uv sync exited 1"))
    }

    func scrape(token: String? = metricsToken) throws -> HTTPReply {
        try server.request("GET", "/metrics", headers: token.map { ["Authorization": "Bearer \($0)"] } ?? [:])
    }
}

/// A receiver of `UA_HQ_WEBHOOK_URL` that answers `statuses` in turn and logs each body.
final class WebhookReceiver {
    let process: ConsumerProcess
    let url: String
    let log: String

    init(_ world: GitWorld, statuses: [Int]) throws {
        let portFile = world.directory.join("webhook-port-\(UUID().uuidString.prefix(6))")
        log = world.directory.join("webhook-\(UUID().uuidString.prefix(6)).log")
        process = try ConsumerProcess(binary: "/usr/bin/python3",
                                      arguments: [Package.root + "/Tests/fixtures/webhook-receiver.py", portFile, log] + statuses.map(String.init),
                                      environment: world.environment, log: world.directory.join("webhook-receiver.log"))
        guard eventually(timeout: 20, { FileManager.default.fileExists(atPath: portFile) }),
              let port = try? String(contentsOfFile: portFile, encoding: .utf8) else {
            throw Command.Failed(argv: ["webhook-receiver.py"], status: -1, output: "did not start: \(process.output)")
        }
        url = "http://127.0.0.1:\(port)/hooks/secret-path"
    }

    /// SIGKILL: http.server has no state to lose, and a SIGTERM the test runner's signal mask
    /// blocks would wait out stop()'s 15 s.
    deinit {
        process.signal(SIGKILL)
        _ = process.waitForExit(timeout: 5)
    }

    /// Every POST as (status answered, body as JSON).
    var posts: [(status: Int, body: [String: Any])] {
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { line in
            guard let space = line.firstIndex(of: " "), let status = Int(line[..<space]),
                  let body = try? JSONSerialization.jsonObject(with: Data(line[line.index(after: space)...].utf8)) as? [String: Any] else { return nil }
            return (status, body)
        }
    }

    func delivered(job: String) -> [[String: Any]] {
        posts.filter { $0.status == 200 && $0.body["job"] as? String == job }.map(\.body)
    }
}

@Suite struct ObservabilityTests {
    @Test func metricsIsNotFoundWithoutAToken() throws {
        let hq = try ObservedHQ(environment: [:])
        #expect(try hq.scrape().status == 404)
    }

    @Test(arguments: ["none", "wrong", "ops token", "not bearer"])
    func metricsNeedsItsBearerToken(_ kind: String) throws {
        let hq = try ObservedHQ()
        let reply: HTTPReply = switch kind {
        case "none": try hq.scrape(token: nil)
        case "wrong": try hq.scrape(token: metricsToken + "x")
        case "ops token": try hq.server.request("GET", "/metrics", headers: ["x-ua-ops-token": opsToken])
        default: try hq.server.request("GET", "/metrics", headers: ["Authorization": metricsToken])
        }
        #expect(reply.status == 401, "\(reply.body)")
    }

    /// A shared factory, an enrolled one and a stale one, their results (one forged by the shared
    /// factory for the enrolled one): the scrape counts what each wrote about itself only, and
    /// promtool finds nothing to complain about.
    @Test func metricsOfAFleetPassPromtool() throws {
        let hq = try ObservedHQ(enrolled: ["e-1"])
        try hq.register("s-1")
        try hq.register("e-1", enrolled: true, commit: String(repeating: "c", count: 40))
        try hq.register("old", lastSeen: Date().timeIntervalSince1970 - 3600)
        let job = "update-0123456789ab"
        try hq.report(job, by: "s-1", claiming: "e-1", succeeded: true)
        try hq.report(job, by: "s-1", succeeded: true)
        try hq.report(job, by: "e-1", enrolled: true, succeeded: false)
        var text = ""
        let counted = eventually(timeout: 30) {
            text = (try? hq.scrape().body) ?? ""
            return text.contains(#"factoryctl_mission_results_total{kind="update",outcome="failed"} 1"#)
                && text.contains(#"factoryctl_mission_results_total{kind="update",outcome="success"} 1"#)
        }
        #expect(counted, "\(text)")
        let check = try Command.run(["promtool", "check", "metrics"], input: text)
        #expect(check.status == 0 && text.contains(#"factoryctl_factory_info{factory="e-1",commit="cccccccccccccccccccccccccccccccccccccccc",branch="main",status="online"} 1"#)
                && text.contains("factoryctl_factories_stale 1") && text.contains("factoryctl_update_duration_seconds_count 2"),
                "promtool: \(check.stdout) \(check.stderr)\n\(text)")
    }

    /// The receiver answers 500 first: the failed result's event arrives after a retry, once,
    /// and a restarted serve does not send it again (it sends only the next failure's).
    @Test func aFailedResultIsDeliveredOnceAfterARetryAndNeverAgain() throws {
        let hq = try ObservedHQ(environment: [:])
        let receiver = try WebhookReceiver(hq.fleet.world, statuses: [500, 200])
        hq.environment["UA_HQ_WEBHOOK_URL"] = receiver.url
        try hq.restartServer()
        try hq.register("s-1")
        try hq.report("update-00000000000a", by: "s-1", succeeded: false)
        #expect(eventually(timeout: 30) { receiver.delivered(job: "update-00000000000a").count == 1 })
        // Acknowledged in the outbox before serve goes (a kill between the POST and the ack
        // would send it again, by design: at least once).
        #expect(eventually { (try? hq.fleet.redis.cli(["XPENDING", "factoryctl:hq:webhooks", "factoryctl-webhook"]))?.hasPrefix("0") == true })
        try hq.restartServer()
        try hq.report("update-00000000000b", by: "s-1", succeeded: false)
        #expect(eventually(timeout: 30) { receiver.delivered(job: "update-00000000000b").count == 1 })
        let first = receiver.posts.filter { $0.body["job"] as? String == "update-00000000000a" }
        #expect(first.map(\.status) == [500, 200] && first.last?.body["event"] as? String == "mission_failed"
                && (first.last?.body["text"] as? String)?.contains("FAILED on s-1") == true
                && first.last?.body["reason"] as? String == "sync_failed: uv sync exited 1",
                "\(receiver.posts)")
    }

    /// A factory not heard from in an hour: one `factory_stale` event, and only one.
    @Test func aStaleFactoryRaisesOneEvent() throws {
        let hq = try ObservedHQ(environment: [:])
        let receiver = try WebhookReceiver(hq.fleet.world, statuses: [200])
        try hq.register("gone", lastSeen: Date().timeIntervalSince1970 - 3600)
        hq.environment["UA_HQ_WEBHOOK_URL"] = receiver.url
        try hq.restartServer()
        #expect(eventually(timeout: 30) { receiver.posts.contains { $0.body["event"] as? String == "factory_stale" } })
        try hq.register("s-1")
        try hq.report("update-00000000000c", by: "s-1", succeeded: false)
        #expect(eventually(timeout: 30) { receiver.delivered(job: "update-00000000000c").count == 1 })
        let stale = receiver.posts.filter { $0.body["event"] as? String == "factory_stale" }
        #expect(stale.count == 1 && stale.first?.body["factory"] as? String == "gone", "\(receiver.posts)")
    }

    /// An enrolled factory replays its own result entry and reports on a job HQ never published:
    /// the scrape counts its result once, and nothing for the made-up job.
    @Test func replayedAndMadeUpResultsAreNotCounted() throws {
        let hq = try ObservedHQ(enrolled: ["e-1"])
        try hq.register("e-1", enrolled: true)
        try hq.report("update-000000000001", by: "e-1", enrolled: true, succeeded: false)
        let stream = FactoryKeys("e-1").results
        let envelope = try hq.fleet.redis.cli(["XRANGE", stream, "-", "+"]).split(separator: "\n").last.map(String.init) ?? ""
        for _ in 0..<5 { _ = try hq.fleet.redis.cli(["XADD", stream, "*", "job_id", "update-000000000001", "status", "FAILED", "envelope", envelope]) }
        try hq.report("update-00000000beef", by: "e-1", enrolled: true, succeeded: false, publishedByHQ: false)
        try hq.report("update-000000000002", by: "e-1", enrolled: true, succeeded: true)
        var text = ""
        let settled = eventually(timeout: 30) {
            text = (try? hq.scrape().body) ?? ""
            return text.contains(#"factoryctl_mission_results_total{kind="update",outcome="success"} 1"#)
        }
        #expect(settled && text.contains(#"factoryctl_mission_results_total{kind="update",outcome="failed"} 1"#), "\(text)")
    }

    /// A factory's registration with an absurd `last_seen_at`, and another factory's results
    /// stream turned into a string: serve keeps serving and still reads the other factories.
    @Test func hostileRecordsDoNotStopTheWatcher() throws {
        let hq = try ObservedHQ(environment: [:], enrolled: ["a", "b"])
        let receiver = try WebhookReceiver(hq.fleet.world, statuses: [200])
        try hq.register("b", enrolled: true)
        _ = try hq.fleet.redis.cli(["SET", FactoryKeys("a").registration,
            #"{"factory_id": "a", "factory_role": "LOCAL_WORKER", "registration_status": "online", "capabilities": [], "version": "x", "pid": 1, "host": "h", "started_at": 0, "last_seen_at": -1e300}"#])
        _ = try hq.fleet.redis.cli(["SET", FactoryKeys("a").results, "not a stream"])
        hq.environment["UA_HQ_WEBHOOK_URL"] = receiver.url
        hq.environment["UA_METRICS_TOKEN"] = metricsToken
        try hq.restartServer()
        try hq.report("update-000000000003", by: "b", enrolled: true, succeeded: false)
        #expect(eventually(timeout: 30) { receiver.delivered(job: "update-000000000003").count == 1 && hq.server.process.status == nil },
                "\(hq.server.process.output.suffix(2000))")
    }
}
