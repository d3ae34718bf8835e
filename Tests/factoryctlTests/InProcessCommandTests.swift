import FactoryGateway
import FactoryKit
import Foundation
import RedisKit
import Testing
import TestSupport
@testable import factoryctl

/// Commands parsed and run in-process with a context of their own (swiftly's `runCommand`):
/// the environment and directory they are given, stdout and stderr kept for the test to read,
/// the exit status the binary would exit with. The built binary's own runs stay in the other suites.
@Suite struct InProcessCommandTests {
    struct Run {
        let status: Int32
        let stdout: String
        let stderr: String

        /// stdout as the one JSON object a `--json` command prints.
        var json: [String: Any] {
            (try? JSONSerialization.jsonObject(with: Data(stdout.utf8))) as? [String: Any] ?? [:]
        }
    }

    func factoryctl(_ arguments: [String], environment: [String: String], in directory: String = "/",
                    now: @escaping @Sendable () -> Date = { Date() }) async -> Run {
        let context = CommandContext.capturing(arguments, environment: environment, currentDirectory: directory, now: now)
        let status = await Factoryctl.run(context)
        return Run(status: status, stdout: context.stdout.text, stderr: context.stderr.text)
    }

    /// `status --fleet --json`'s own writer prints byte for byte what the generic JSON path does,
    /// for awkward values too: quotes, backslashes, control characters, slashes, non-ASCII,
    /// missing optionals, integral and fractional times.
    @Test func theFleetJSONWriterMatchesTheGenericEncoderByteForByte() throws {
        var entry = FleetEntry(Registration(factoryID: "f-1", factoryRole: "LOCAL_WORKER", registrationStatus: "online",
                                            capabilities: ["update", "a/b"], branch: "feature/ä\"q\\", commit: String(repeating: "c", count: 40),
                                            version: "0.2.0+abc", pid: 42, host: "h\u{01}\n\t\u{7F}😀", startedAt: 1, lastSeenAt: 1_733_561_234.567891,
                                            lastJobID: "update-0123456789ab", lastJobStatus: "SUCCESS"))
        var bare = entry
        (bare.branch, bare.commit, bare.lastJobID, bare.lastJobStatus, bare.capabilities, bare.lastSeenAt) = (nil, nil, nil, nil, [], 1_733_561_234)
        entry.factoryID = "f-2"
        let rows = [FleetRow(entry: bare, now: Date(timeIntervalSince1970: 1_733_561_300.25)),
                    FleetRow(entry: entry, now: Date(timeIntervalSince1970: 1_733_561_300))]
        let buffer = CommandOutput.buffer()
        try JSONOutput(requested: true, stdout: buffer).emit(FleetStatus(factories: rows))
        #expect(String(decoding: FleetJSON.document(rows), as: UTF8.self) == buffer.text)
    }

    /// `publish --wait --json`'s own writer prints byte for byte what the generic JSON path does:
    /// results with nested values, awkward keys and strings, integral and fractional numbers.
    @Test func theWaitJSONWriterMatchesTheGenericEncoderByteForByte() throws {
        let result: JSONValue = .object([
            "job_id": .string("update-0123456789ab"), "status": .string("FAILED"), "error": .string("a/b \"q\" \\ \n ä 😀 \u{01}"),
            "result": .object(["factory_id": .string("f-1"), "steps_ms": .object(["fetch": .int(12), "sync": .double(3.5)]),
                               "a_b": .null, "aB": .bool(true), "a1": .double(2), "a10": .array([.int(-3), .double(1_733_561_234.567891)]),
                               "A": .string("x"), "finished_at": .double(1_733_561_234)]),
        ])
        var ok = result.object!
        ok["status"] = .string("SUCCESS")
        ok["error"] = .null
        ok["result"] = .object(["factory_id": .string("f-2")])
        let text = JSONValue.object(["job_id": .string("update-0123456789ab"), "targeted": .array([.string("f-1"), .string("f-2"), .string("f/3")]),
                                     "results": .array([result, .object(ok)]), "pending": .array([.string("f/3")]), "timed_out": .bool(true),
                                     "unreachable": .object(["f/3": .string("stale: not heard from for 95 s")]),
                                     "deferred": .object(["f/3": .string("deferred until 2026-12-08 02:00:00 +0100 (maintenance window \"02:00-04:00\")")])]).pythonJSON
        let summary = try JSONDecoder().decode(Publisher.WaitSummary.self, from: Data(text.utf8))
        let buffer = CommandOutput.buffer()
        try JSONOutput(requested: true, stdout: buffer).emit(summary, exit: .timedOut, error: "timed out waiting for f/3")
        #expect(String(decoding: FleetJSON.waitDocument(summary, exit: .timedOut, error: "timed out waiting for f/3"), as: UTF8.self) == buffer.text)
    }

    @Test func statusJSONReadsTheCheckoutTheContextIsIn() async throws {
        let world = try GitWorld()
        let run = await factoryctl(["status", "--json"], environment: world.environment, in: world.factory)
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stdout.split(separator: "\n").count == 1, "one object: \(run.stdout)")
        let object = run.json
        #expect(object["schema_version"] as? Int == 1 && object["ok"] as? Bool == true && object["exit_code"] as? Int == 0)
        #expect(object["factory_dir"] as? String == world.factory)
        #expect(object["branch"] as? String == "main")
        #expect(object["head"] as? String == (try world.head(world.factory)))
        #expect(run.stderr.isEmpty, "\(run.stderr)")
    }

    @Test func updateJSONFastForwardsAndPrintsOneObject() async throws {
        let world = try GitWorld()
        let before = try world.head(world.factory)
        let protected = world.protectedSnapshot()
        let two = try world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        let run = await factoryctl(["update", "--json", "--no-sync", "--factory-dir", world.factory], environment: world.environment)
        #expect(run.status == 0, "\(run.stderr)")
        let object = run.json
        #expect(object["ok"] as? Bool == true && object["error"] is NSNull, "\(run.stdout)")
        #expect(object["from"] as? String == before && object["to"] as? String == two, "\(run.stdout)")
        #expect(object["integration"] as? String == "fast_forward", "\(run.stdout)")
        #expect(try world.head(world.factory) == two)
        #expect(world.protectedSnapshot() == protected)
        // Again, in text and with --exit-code: nothing to do is 11, and says so on stdout only.
        let again = await factoryctl(["update", "--no-sync", "--exit-code", "--factory-dir", world.factory], environment: world.environment)
        #expect(again.status == 11, "\(again.stderr)")
        #expect(again.stdout == "Already up to date at \(two.prefix(7))\n", "\(again.stdout)")
        #expect(!again.stderr.contains("factoryctl:"), "no error line: \(again.stderr)")
    }

    @Test func aBadEnvironmentValueIsAUsageErrorWithTheJSONFailureObject() async throws {
        let world = try GitWorld()
        var environment = world.environment
        environment["FACTORYCTL_FETCH_TIMEOUT"] = "soon"
        let run = await factoryctl(["update", "--json", "--factory-dir", world.factory], environment: environment)
        let message = "FACTORYCTL_FETCH_TIMEOUT must be a number of seconds between 0 and 86400, not 'soon'"
        #expect(run.status == 64)
        #expect(run.stderr == "factoryctl: \(message)\n", "\(run.stderr)")
        #expect(run.json["exit_code"] as? Int == 64 && run.json["ok"] as? Bool == false, "\(run.stdout)")
        #expect(run.json["error"] as? String == message)
    }

    @Test func aParseErrorIsReportedAsTheBinaryReportsIt() async throws {
        let run = await factoryctl(["status", "--rollout", "not an id", "--json"], environment: [:])
        #expect(run.status == 64)
        #expect(run.stderr.hasPrefix("Error: invalid rollout id 'not an id'\n"), "\(run.stderr)")
        #expect(run.json["exit_code"] as? Int == 64 && run.json["error"] as? String == "invalid rollout id 'not an id'", "\(run.stdout)")
        let help = await factoryctl(["status", "--help"], environment: [:])
        #expect(help.status == 0 && help.stdout.contains("USAGE: factoryctl status") && help.stderr.isEmpty)
    }

    @Test func publishDryRunListsTheRegisteredFactoriesAndPublishesNothing() async throws {
        let redis = try RedisServer()
        let seen = Date()
        try register("f-1", in: redis, lastSeen: seen)
        let hq = ["FACTORY_ROLE": "HEADQUARTERS", "UA_REDIS_URL": redis.url]
        // At the context's clock, a few seconds after its last heartbeat: live however slow the machine is.
        let now: @Sendable () -> Date = { seen.addingTimeInterval(3) }
        let json = await factoryctl(["publish", "update", "--target", "f-1", "--dry-run", "--json"], environment: hq, now: now)
        #expect(json.status == 0, "\(json.stderr)")
        #expect(json.json["dry_run"] as? Bool == true && json.json["branch"] as? String == "main", "\(json.stdout)")
        #expect((json.json["matches"] as? [[String: Any]])?.map { $0["factory_id"] as? String } == ["f-1"], "\(json.stdout)")
        let text = await factoryctl(["publish", "update", "--target", "f-*", "--dry-run"], environment: hq, now: now)
        #expect(text.status == 0, "\(text.stderr)")
        #expect(text.stdout.hasPrefix("Would publish system:update_factory of main for f-*: 1 registered factory matches (1 live)\n"), "\(text.stdout)")
        #expect(text.stdout.hasSuffix("Dry run: nothing was published\n"))
        // A target nobody registered is refused, the closest id named.
        let unknown = await factoryctl(["publish", "update", "--target", "f-2", "--dry-run"], environment: hq, now: now)
        #expect(unknown.status == 8 && unknown.stderr.contains("f-1"), "\(unknown.stderr)")
        #expect(try redis.cli(["EXISTS", "ua:missions:delegation"]) == "0", "nothing was published")
    }

    @Test func theRoleAndTheStreamLengthAreCheckedBeforeAnythingIsPublished() async throws {
        let redis = try RedisServer()
        let worker = await factoryctl(["publish", "pause", "--target", "f-1"], environment: ["UA_REDIS_URL": redis.url])
        #expect(worker.status == 8)
        #expect(worker.stderr == "factoryctl: delegation publish not allowed on this machine (FACTORY_ROLE=LOCAL_WORKER); publish from HQ, where FACTORY_ROLE=HEADQUARTERS\n",
                "\(worker.stderr)")
        let hq = ["FACTORY_ROLE": "HEADQUARTERS", "UA_REDIS_URL": redis.url, "UA_DELEGATION_STREAM_MAXLEN": "lots"]
        let badLength = await factoryctl(["publish", "pause", "--target", "f-1", "--allow-unregistered"], environment: hq)
        #expect(badLength.status == 64)
        #expect(badLength.stderr.contains("UA_DELEGATION_STREAM_MAXLEN must be a whole number of at least 100, not 'lots'"), "\(badLength.stderr)")
        #expect(try redis.cli(["EXISTS", "ua:missions:delegation"]) == "0", "nothing was published")
    }

    @Test func forgetAppliesTheLivenessRuleAtTheContextsClock() async throws {
        let redis = try RedisServer()
        let seen = Date()
        try register("f-1", in: redis, lastSeen: seen)
        let hq = ["FACTORY_ROLE": "HEADQUARTERS", "UA_REDIS_URL": redis.url]
        let live = await factoryctl(["forget", "f-1"], environment: hq, now: { seen.addingTimeInterval(5) })
        #expect(live.status == 8 && live.stderr.contains("'f-1' is live (online, heard from 5 s ago on host-1)"), "\(live.stderr)")
        #expect(try redis.cli(["HEXISTS", "factoryctl:registry", "f-1"]) == "1", "nothing was removed")
        // Ten minutes later by the same registration, it is stale: forgotten without --force.
        let stale = await factoryctl(["forget", "f-1", "--json"], environment: hq, now: { seen.addingTimeInterval(600) })
        #expect(stale.status == 0, "\(stale.stderr)")
        #expect(stale.json["factory_id"] as? String == "f-1" && stale.json["was_live"] as? Bool == false, "\(stale.stdout)")
        #expect(try redis.cli(["HEXISTS", "factoryctl:registry", "f-1"]) == "0")
    }

    @Test func publishAndTheGatewayPinTheSameTipFallingBackToTheFactoryDirectorysOrigin() throws {
        let world = try GitWorld()
        let two = try world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        var environment = world.environment
        environment["UA_FACTORY_DIR"] = world.factory // no UA_FACTORY_REPO_URL: its origin is asked
        let configuration = FactoryEnvironment(environment)
        let cli = try BranchTip(environment: configuration)
        let gateway = try GatewayConfiguration(environment: configuration, insecureNoAuth: true).branchTip
        for tip in [cli, gateway] {
            #expect(tip.repositoryURL == world.origin)
            guard case .pinned(let commit, _)? = try? tip.resolve("main") else {
                Issue.record("not pinned")
                continue
            }
            #expect(commit == two)
            #expect(throws: BranchTip.Failure.self) { try tip.resolve("nope") }
        }
        // An explicit repository wins, and "" means none (not the fallback).
        #expect(try BranchTip(repository: "", environment: configuration).repositoryURL == nil)
        environment.removeValue(forKey: "UA_FACTORY_DIR")
        #expect(try BranchTip(environment: FactoryEnvironment(environment)).resolve("main") == .unpinned)
    }

    private func register(_ id: String, in redis: RedisServer, lastSeen: Date) throws {
        let registration = Registration(factoryID: id, factoryRole: "LOCAL_WORKER", registrationStatus: "online", capabilities: [],
                                        branch: "main", version: FactoryctlVersion.full, pid: 1, host: "host-1",
                                        startedAt: lastSeen.timeIntervalSince1970, lastSeenAt: lastSeen.timeIntervalSince1970)
        try FleetRegistry(redis: RedisClient(url: try RedisURL(redis.url))).register(registration)
    }
}
