import FactoryKit
import Foundation
import Testing
import TestSupport

@Suite struct GatewayTests {
    @Test func updateRoutePublishesTheMissionAConsumerRuns() throws {
        let fleet = try FleetWorld()
        let server = try GatewayProcess(fleet: fleet, environment: hqEnvironment(fleet))
        defer { server.process.stop() }
        #expect(server.port > 0, "\(server.process.output)")
        let consumer = try fleet.consumer("f-1")
        defer { consumer.stop() }
        #expect(try fleet.waitUntilRegistered("f-1"))
        let target = try fleet.world.pushUpstream(["app.py": "print('v2')\n"], message: "Ship v2")

        // Exactly the documented curl call.
        let curl = try Command.run(["curl", "-s", "-X", "POST", "-H", "x-ua-ops-token: test-ops-token-0123",
                                    "-H", "Content-Type: application/json", "-d", #"{"branch": "main"}"#,
                                    "http://127.0.0.1:\(server.port)/api/v1/ops/factory/update"])
        let reply = try JSONSerialization.jsonObject(with: Data(curl.stdout.utf8)) as? [String: Any]
        #expect(reply?["ok"] as? Bool == true)
        #expect(reply?["branch"] as? String == "main")
        #expect(reply?["target_factory_id"] is NSNull)
        let jobID = try #require(reply?["job_id"] as? String)
        #expect(jobID.hasPrefix("update-"))
        #expect(Set(reply?.keys.map { $0 } ?? []) == ["ok", "job_id", "branch", "target_factory_id"])

        #expect(consumer.waitForExit(timeout: 30) == 10)
        #expect(try fleet.world.head(fleet.world.factory) == target)
        let job = try server.request("GET", "/api/v1/ops/factory/jobs/\(jobID)")
        #expect(job.status == 200)
        let results = job.json?["results"] as? [[String: Any]]
        #expect(results?.first?["status"] as? String == "SUCCESS")
        #expect((results?.first?["result"] as? [String: Any])?["to_commit"] as? String == target)
        #expect(!server.process.output.contains("test-ops-token-0123"), "the token never reaches the log")
        #expect(server.process.output.contains("POST /api/v1/ops/factory/update 200"))
    }

    @Test func everyAPIRouteNeedsTheToken() throws {
        let fleet = try FleetWorld()
        let server = try GatewayProcess(fleet: fleet, environment: hqEnvironment(fleet))
        defer { server.process.stop() }
        let routes = [("POST", "/api/v1/ops/factory/update"), ("POST", "/api/v1/ops/factory/control"),
                      ("GET", "/api/v1/ops/factory/jobs/update-000000000000"), ("POST", "/api/v1/factory/registrations"),
                      ("GET", "/api/v1/factory/registrations")]
        for (method, path) in routes {
            for token in [nil, "wrong", "test-ops-token-0123-longer", ""] as [String?] {
                let reply = try server.request(method, path, body: method == "POST" ? "{}" : nil, token: token)
                #expect(reply.status == 401, "\(method) \(path) with \(token ?? "no token")")
                #expect(reply.json?["error"] as? String == "missing or invalid x-ua-ops-token")
            }
        }
        #expect(try server.request("GET", "/healthz", token: nil).status == 200)
        #expect(try fleet.nothingPublished(), "nothing published")
    }

    /// Spellings of a path that a router may fold into a protected route.
    static func spellings(of path: String) -> [String] {
        let inner = String(path.dropFirst()) // "api/v1/..."
        let segments = inner.split(separator: "/").map(String.init)
        var variants = [
            "/" + path, "//" + inner, "///" + segments.joined(separator: "///"),
            "/" + segments.joined(separator: "//"), path + "/", path + "//", path + "/.",
            "/./" + inner, "/" + segments[0] + "/./" + segments.dropFirst().joined(separator: "/"),
            "/x/../" + inner, "/" + segments[0] + "/x/../" + segments.dropFirst().joined(separator: "/"),
            "/%61pi/" + segments.dropFirst().joined(separator: "/"), "/api%2Fv1/" + segments.dropFirst(2).joined(separator: "/"),
            "/%2F" + inner, path.uppercased(), "/API/" + segments.dropFirst().joined(separator: "/"),
            path + "%20", path + ";x", path + "?", path + "#frag", path + "%00",
        ]
        variants.append("/" + inner.replacingOccurrences(of: "/", with: "%2F"))
        return variants
    }

    @Test func noPathSpellingReachesAProtectedRouteWithoutTheToken() throws {
        let fleet = try FleetWorld()
        let server = try GatewayProcess(fleet: fleet, environment: hqEnvironment(fleet))
        defer { server.process.stop() }
        let routes = [("POST", "/api/v1/ops/factory/update", #"{"branch": "main"}"#),
                      ("POST", "/api/v1/ops/factory/control", #"{"target_factory_id": "", "action": "pause"}"#),
                      ("POST", "/api/v1/factory/registrations", #"{"factory_id": "intruder"}"#),
                      ("GET", "/api/v1/factory/registrations", ""),
                      ("GET", "/api/v1/ops/factory/jobs/update-000000000000", "")]
        var tried = 0
        for (method, path, body) in routes {
            for spelling in [path] + Self.spellings(of: path) {
                for token in (spelling == path ? [nil, "wrong", ""] : [nil]) as [String?] {
                    let reply = try server.request(method, spelling, body: method == "POST" ? body : nil, token: token)
                    tried += 1
                    // Denied by the router-wide check before any route is matched, however spelled.
                    #expect(reply.status == 401,
                            "\(method) \(spelling) without a valid token → \(reply.status) \(reply.body.prefix(120))")
                    #expect(reply.json?["error"] as? String == "missing or invalid x-ua-ops-token", "\(method) \(spelling)")
                    #expect(reply.json?["ok"] as? Bool == false, "\(method) \(spelling)")
                }
            }
        }
        #expect(tried > 100)
        #expect(try fleet.nothingPublished(), "nothing published")
        #expect(try fleet.redis.cli(["HEXISTS", "factoryctl:registry", "intruder"]) == "0", "nothing registered")
        // The public list is exact: only GET of these three paths answers without a token.
        for path in ["/healthz", "/readyz", "/"] {
            #expect(try server.request("GET", path, token: nil).status == 200, "GET \(path)")
            #expect(try server.request("POST", path, body: "{}", token: nil).status == 401, "POST \(path)")
        }
        #expect(try server.request("GET", "/nosuch", token: nil).status == 401, "unknown routes are denied too")
        #expect(try server.request("GET", "/nosuch").status == 404)
    }

    @Test func invalidUTF8AndDeepNestingAreRejectedAndNumbersEchoExactly() throws {
        let fleet = try FleetWorld()
        let server = try GatewayProcess(fleet: fleet, environment: hqEnvironment(fleet))
        defer { server.process.stop() }
        let bodyFile = fleet.world.directory.join("bad-utf8.json")
        try Data(#"{"branch": "ma"#.utf8 + [0xFF, 0xFE] + #"in"}"#.utf8).write(to: URL(fileURLWithPath: bodyFile))
        let raw = try Command.run(["curl", "-s", "-X", "POST", "-w", "\n%{http_code}", "-H", "x-ua-ops-token: test-ops-token-0123",
                                   "--data-binary", "@" + bodyFile, "http://127.0.0.1:\(server.port)/api/v1/ops/factory/update"])
        #expect(raw.stdout.hasSuffix("\n400"), "\(raw.stdout)")
        #expect(raw.stdout.contains("invalid UTF-8"))
        let deep = String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
        #expect(try server.request("POST", "/api/v1/ops/factory/update", body: deep).status == 400)
        #expect(try server.request("POST", "/api/v1/ops/factory/update", body: #"{"branch": "\udcff"}"#).status == 400)
        #expect(try fleet.nothingPublished(), "nothing published")
        let body = #"{"factory_id": "n-1", "metadata": {"a": 1.0, "b": 1, "c": 2.5, "d": -0.0, "e": 1e3}}"#
        let posted = try server.request("POST", "/api/v1/factory/registrations", body: body)
        #expect(posted.status == 200, "\(posted.body)")
        #expect(posted.body.contains(#""metadata": {"a": 1.0, "b": 1, "c": 2.5, "d": -0.0, "e": 1000.0}"#), "\(posted.body)")
        let listed = try server.request("GET", "/api/v1/factory/registrations")
        #expect(listed.body.contains(#""a": 1.0, "b": 1"#), "\(listed.body)")
        #expect(try server.request("GET", "/readyz", token: nil).status == 200)
        fleet.redis.stop()
        #expect(try server.request("GET", "/readyz", token: nil).status == 503)
        #expect(try server.request("GET", "/healthz", token: nil).status == 200)
    }

    @Test func refusesToStartWithoutATokenUnlessInsecure() throws {
        let fleet = try FleetWorld()
        var env = hqEnvironment(fleet)
        env.removeValue(forKey: "UA_OPS_TOKEN")
        let refused = try FactoryctlBinary.run(["serve", "--port", "0", "--redis-url", fleet.redis.url], environment: env)
        #expect(refused.status == 64)
        #expect(refused.stderr.contains("UA_OPS_TOKEN"))
        let insecure = try GatewayProcess(fleet: fleet, environment: env, arguments: ["--insecure-no-auth"])
        defer { insecure.process.stop() }
        #expect(insecure.process.output.contains("INSECURE"))
        #expect(try insecure.request("GET", "/api/v1/factory/registrations", token: nil).status == 200)
    }

    @Test func publishingNeedsTheHeadquartersRole() throws {
        let fleet = try FleetWorld()
        let server = try GatewayProcess(fleet: fleet, environment: hqEnvironment(fleet, role: "LOCAL_WORKER"))
        defer { server.process.stop() }
        for (path, body) in [("/api/v1/ops/factory/update", #"{"branch": "main"}"#),
                             ("/api/v1/ops/factory/control", #"{"target_factory_id": "f-1", "action": "pause"}"#)] {
            let reply = try server.request("POST", path, body: body)
            #expect(reply.status == 403)
            #expect(reply.json?["error"] as? String == "delegation publish not allowed on this machine")
        }
        #expect(try server.request("GET", "/api/v1/factory/registrations").status == 200)
        #expect(try fleet.nothingPublished())
    }

    @Test func badInputIsRejectedNamingTheFieldAndPublishesNothing() throws {
        let fleet = try FleetWorld()
        let server = try GatewayProcess(fleet: fleet, environment: hqEnvironment(fleet))
        defer { server.process.stop() }
        let cases: [(String, String, Int, String)] = [
            ("/api/v1/ops/factory/update", "{not json", 400, "body"),
            ("/api/v1/ops/factory/update", "[1, 2]", 400, "body"),
            ("/api/v1/ops/factory/update", #"{"branch": 7}"#, 422, "branch"),
            ("/api/v1/ops/factory/update", #"{"branch": "-x"}"#, 422, "branch"),
            ("/api/v1/ops/factory/update", #"{"branch": "a..b"}"#, 422, "branch"),
            ("/api/v1/ops/factory/update", #"{"target_factory_id": 5}"#, 422, "target_factory_id"),
            ("/api/v1/ops/factory/update", #"{"target_factory_id": "bad id"}"#, 422, "target_factory_id"),
            ("/api/v1/ops/factory/update", #"{"force": "yes"}"#, 422, "force"),
            ("/api/v1/ops/factory/control", #"{"target_factory_id": "f-1", "action": "reboot"}"#, 422, "action"),
            ("/api/v1/ops/factory/control", #"{"target_factory_id": "f-1"}"#, 422, "action"),
            ("/api/v1/ops/factory/control", #"{"action": "pause"}"#, 422, "target_factory_id"),
            ("/api/v1/factory/registrations", #"{"factory_role": "X"}"#, 422, "factory_id"),
            ("/api/v1/factory/registrations", #"{"factory_id": "f-1", "capabilities": "all"}"#, 422, "capabilities"),
            ("/api/v1/factory/registrations", #"{"factory_id": "f-1", "metadata": []}"#, 422, "metadata"),
            ("/api/v1/ops/factory/update", "{\"branch\": \"" + String(repeating: "x", count: 70_000) + "\"}", 400, "body"),
        ]
        for (path, body, status, field) in cases {
            let reply = try server.request("POST", path, body: body)
            #expect(reply.status == status, "\(path) \(body.prefix(60)) → \(reply.status) \(reply.body.prefix(200))")
            #expect(reply.json?["field"] as? String == field, "\(path) \(body.prefix(60)): \(reply.body.prefix(200))")
            #expect(reply.json?["ok"] as? Bool == false)
        }
        #expect(try server.request("GET", "/api/v1/ops/factory/jobs/bad%20id").status == 422)
        #expect(try server.request("GET", "/api/v1/ops/factory/jobs/update-000000000000").status == 404)
        #expect(try fleet.nothingPublished(), "nothing published")
        #expect(server.process.status == nil, "the server is still running")
    }

    @Test func inFlightUpdateIsAConflictUnlessForced() throws {
        let fleet = try FleetWorld()
        let server = try GatewayProcess(fleet: fleet, environment: hqEnvironment(fleet))
        defer { server.process.stop() }
        // A live registration for f-1 that will not report (no consumer).
        #expect(try server.request("POST", "/api/v1/factory/registrations", body: #"{"factory_id": "f-1"}"#).status == 200)
        let first = try server.request("POST", "/api/v1/ops/factory/update", body: #"{"target_factory_id": "f-1"}"#)
        #expect(first.status == 200)
        let second = try server.request("POST", "/api/v1/ops/factory/update", body: #"{"target_factory_id": "f-1"}"#)
        #expect(second.status == 409)
        #expect(second.json?["inflight_job_id"] as? String == first.json?["job_id"] as? String)
        let forced = try server.request("POST", "/api/v1/ops/factory/update", body: #"{"target_factory_id": "f-1", "force": true}"#)
        #expect(forced.status == 200)
        #expect(try fleet.redis.cli(["XLEN", "ua:missions:delegation"]) == "2")
    }

    @Test func controlRoutePausesAFactory() throws {
        let fleet = try FleetWorld()
        let server = try GatewayProcess(fleet: fleet, environment: hqEnvironment(fleet))
        defer { server.process.stop() }
        let consumer = try fleet.consumer("f-1")
        defer { consumer.stop() }
        #expect(try fleet.waitUntilRegistered("f-1"))
        let reply = try server.request("POST", "/api/v1/ops/factory/control", body: #"{"target_factory_id": "f-1", "action": "pause"}"#)
        #expect(reply.status == 200)
        #expect(reply.json?["action"] as? String == "pause")
        #expect(try fleet.waitUntilRegistered("f-1", status: "paused"))
    }

    @Test func registrationsRoundTripIntoTheRegistryStatusReads() throws {
        let fleet = try FleetWorld()
        let server = try GatewayProcess(fleet: fleet, environment: hqEnvironment(fleet))
        defer { server.process.stop() }
        let body = #"{"factory_id": "legacy-1", "factory_role": "LOCAL_WORKER", "deployment_profile": "vps", "registration_status": "online", "capabilities": ["delegation_redis", "gpu"], "metadata": {"hostname": "box", "version": 3}}"#
        let posted = try server.request("POST", "/api/v1/factory/registrations", body: body)
        #expect(posted.status == 200, "\(posted.body)")
        #expect(posted.json?["factory_id"] as? String == "legacy-1")
        let listed = try server.request("GET", "/api/v1/factory/registrations")
        let rows = listed.json?["registrations"] as? [[String: Any]]
        let row = rows?.first { $0["factory_id"] as? String == "legacy-1" }
        #expect(row?["deployment_profile"] as? String == "vps")
        #expect(row?["capabilities"] as? [String] == ["delegation_redis", "gpu"])
        #expect((row?["metadata"] as? [String: Any])?["version"] as? Int == 3)
        #expect(row?["stale"] as? Bool == false)
        let status = try FactoryctlBinary.run(["status", "--fleet", "--json"], environment: fleet.environment)
        #expect(status.stdout.contains("legacy-1"))
    }

    @Test func redisOutageIs503AndTheServerRecovers() throws {
        let fleet = try FleetWorld()
        let server = try GatewayProcess(fleet: fleet, environment: hqEnvironment(fleet))
        defer { server.process.stop() }
        fleet.redis.stop()
        let down = try server.request("POST", "/api/v1/ops/factory/update", body: #"{"branch": "main"}"#)
        #expect(down.status == 503)
        #expect((down.json?["error"] as? String)?.contains("Redis unavailable") == true)
        #expect(try server.request("GET", "/api/v1/factory/registrations").status == 503)
        #expect(try server.request("GET", "/healthz", token: nil).status == 200)
        try fleet.redis.start()
        let up = try server.request("POST", "/api/v1/ops/factory/update", body: #"{"branch": "main"}"#)
        #expect(up.status == 200, "\(up.body)")
    }

    @Test func fleetPageListsFactoriesWithoutExternalAssets() throws {
        let fleet = try FleetWorld()
        let server = try GatewayProcess(fleet: fleet, environment: hqEnvironment(fleet))
        defer { server.process.stop() }
        let consumer = try fleet.consumer("f-1")
        defer { consumer.stop() }
        #expect(try fleet.waitUntilRegistered("f-1"))
        let stale = #"{"factory_id":"old-1","factory_role":"LOCAL_WORKER","deployment_profile":"x","registration_status":"online","capabilities":[],"metadata":{},"version":"","pid":0,"host":"h","started_at":1,"last_seen_at":1}"#
        try fleet.redis.cli(["HSET", "factoryctl:registry", "old-1", stale])
        let page = try server.request("GET", "/", token: nil)
        #expect(page.status == 200)
        #expect(page.body.contains("<td data-label=\"Factory\">f-1</td>"))
        #expect(page.body.contains(String(try fleet.world.head(fleet.world.factory).prefix(7))))
        #expect(page.body.contains("stale"))
        #expect(page.body.contains("http-equiv=\"refresh\""))
        #expect(!page.body.contains("src=\"http") && !page.body.contains("href=\"http"), "no external assets")
        for secret in ["test-ops-token-0123", "secret-token", "postgres://"] {
            #expect(!page.body.contains(secret), "the public page shows no secret (\(secret))")
        }
    }

    /// Issue 20: a factory in its soak window shows the time left; quarantined commits show by its commit.
    @Test func fleetPageShowsProvisionalFactoriesAndQuarantinedCommits() throws {
        let fleet = try FleetWorld()
        let server = try GatewayProcess(fleet: fleet, environment: hqEnvironment(fleet))
        defer { server.process.stop() }
        let now = Date().timeIntervalSince1970
        let bad = String(repeating: "b", count: 40)
        let soaking = #"{"factory_id":"soaker","factory_role":"LOCAL_WORKER","deployment_profile":"x","registration_status":"updating","capabilities":[],"metadata":{"current_job_id":"update-000000000001","soak_seconds_left":42},"version":"","pid":1,"host":"h","started_at":\#(now),"last_seen_at":\#(now)}"#
        let held = #"{"factory_id":"holder","factory_role":"LOCAL_WORKER","deployment_profile":"x","registration_status":"online","capabilities":[],"metadata":{"quarantined":[{"commit":"\#(bad)","failure":"soak_failed","failed_at":1}]},"version":"","pid":1,"host":"h","started_at":\#(now),"last_seen_at":\#(now)}"#
        try fleet.redis.cli(["HSET", "factoryctl:registry", "soaker", soaking, "holder", held])
        let page = try server.request("GET", "/", token: nil)
        #expect(page.status == 200 && page.body.contains("provisional, 42 s left") && page.body.contains("quarantined: bbbbbbb"),
                "\(page.body.prefix(4000))")
    }

    @Test func fleetPageShowsTheWantedCommitWhoIsBehindWhyAJobFailedAndLinksTheJob() throws {
        let fleet = try FleetWorld(factories: ["f-1", "f-2"])
        let server = try GatewayProcess(fleet: fleet, environment: hqEnvironment(fleet))
        defer { server.process.stop() }
        let supervisor = Supervisor()
        defer { supervisor.stopAll() }
        var failing = fleet.environment
        failing["UA_FACTORY_SYNC_COMMAND"] = try fleet.world.script("bad-sync", "echo 'resolver <b>exploded</b>' >&2\nexit 1\n")
        let failingEnvironment = failing
        try supervisor.supervise("f-1") { try fleet.consumer("f-1", ["--no-sync"]) }
        try supervisor.supervise("f-2") { try fleet.consumer("f-2", environment: failingEnvironment) }
        #expect(try fleet.waitUntilRegistered("f-1") && fleet.waitUntilRegistered("f-2"))
        let target = try fleet.world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        let waited = try FactoryctlBinary.run(["publish", "update", "--wait", "--timeout", "60", "--log-level", "error"],
                                              environment: fleet.environment)
        #expect(waited.status == 1, "f-2 fails: \(waited.stderr)")
        let job = waited.stdout.split(separator: "\n").first.map(String.init) ?? ""
        #expect(eventually { (try? fleet.registration("f-2"))?["last_job_status"] as? String == "FAILED" })
        #expect(eventually { (try? fleet.registration("f-1"))?["commit"] as? String == target })
        let page = try server.request("GET", "/", token: nil)
        #expect(page.status == 200)
        let short = String(target.prefix(7))
        #expect(page.body.contains("main: <code>\(short)</code> (from <a href=\"#job-\(job)\">\(job)</a>)"), "\(page.body)")
        #expect(page.body.contains("1 behind"))
        #expect(page.body.contains("<span class=\"behind\" title=\"HQ wants \(short)\">behind</span>"))
        #expect(page.body.contains("sync_failed"), "why the job failed")
        #expect(page.body.contains("resolver &lt;b&gt;exploded&lt;/b&gt;") && !page.body.contains("<b>exploded"), "escaped")
        #expect(page.body.contains("<a href=\"#job-\(job)\">") && page.body.contains("<section class=\"job\" id=\"job-\(job)\">"))
        #expect(page.body.contains("@media (max-width: 640px)"), "a narrow layout")
        for secret in ["test-ops-token-0123", "secret-token", "postgres://"] { #expect(!page.body.contains(secret)) }
    }

    @Test func updateRoutePinsTheTipAndTakesACommitOrARewind() throws {
        let fleet = try FleetWorld()
        let two = try fleet.world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        var env = hqEnvironment(fleet)
        env["UA_FACTORY_REPO_URL"] = fleet.world.origin
        let server = try GatewayProcess(fleet: fleet, environment: env)
        defer { server.process.stop() }
        let pinned = try server.request("POST", "/api/v1/ops/factory/update", body: #"{"branch": "main"}"#)
        #expect(pinned.status == 200, "\(pinned.body)")
        #expect(pinned.json?["commit"] as? String == two)
        #expect(try fleet.redis.cli(["XRANGE", "ua:missions:delegation", "-", "+"]).contains("\"commit\": \"\(two)\""))
        let explicit = try server.request("POST", "/api/v1/ops/factory/update",
                                          body: #"{"branch": "main", "force": true, "commit": "\#(two)", "allow_rewind": true}"#)
        #expect(explicit.status == 200 && explicit.json?["commit"] as? String == two, "\(explicit.body)")
        for (body, field) in [(#"{"commit": "abc"}"#, "commit"), (#"{"commit": 5}"#, "commit"), (#"{"allow_rewind": true}"#, "allow_rewind"),
                              (#"{"branch": "nope"}"#, "branch"), (#"{"splay_seconds": -1}"#, "splay_seconds"),
                              (#"{"splay_seconds": 99999}"#, "splay_seconds"), (#"{"splay_seconds": "5"}"#, "splay_seconds")] {
            let reply = try server.request("POST", "/api/v1/ops/factory/update", body: body)
            #expect(reply.status == 422, "\(body): \(reply.status) \(reply.body)")
            #expect(reply.json?["field"] as? String == field, "\(body): \(reply.body)")
        }
        #expect(try fleet.redis.cli(["XLEN", "ua:missions:delegation"]) == "2", "nothing published for bad input")
    }

    @Test func updateRouteCarriesIgnoreWindowAndRefusesANonBoolean() throws {
        let fleet = try FleetWorld()
        let server = try GatewayProcess(fleet: fleet, environment: hqEnvironment(fleet))
        defer { server.process.stop() }
        let reply = try server.request("POST", "/api/v1/ops/factory/update", body: #"{"ignore_window": true}"#)
        let refused = try server.request("POST", "/api/v1/ops/factory/update", body: #"{"ignore_window": "yes", "force": true}"#)
        let stream = try fleet.redis.cli(["XRANGE", "ua:missions:delegation", "-", "+"])
        let length = try fleet.redis.cli(["XLEN", "ua:missions:delegation"])
        #expect(reply.status == 200 && stream.contains("\"ignore_window\": true") && refused.status == 422
                && refused.json?["field"] as? String == "ignore_window" && length == "1",
                "\(reply.body) \(refused.body)")
    }

    @Test func rolloutRouteStartsAStagedRolloutThatRunsToTheEnd() throws {
        let fleet = try FleetWorld(factories: ["f-1", "f-2"])
        let supervisor = Supervisor()
        defer { supervisor.stopAll() }
        for id in ["f-1", "f-2"] {
            try supervisor.supervise(id) { try fleet.consumer(id, ["--no-sync"]) }
            #expect(try fleet.waitUntilRegistered(id))
        }
        let target = try fleet.world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        var env = hqEnvironment(fleet)
        env["UA_FACTORY_REPO_URL"] = fleet.world.origin
        let server = try GatewayProcess(fleet: fleet, environment: env)
        defer { server.process.stop() }
        for (body, field) in [(#"{"canary": 0}"#, "canary"), (#"{"batch": "x%"}"#, "batch"), (#"{"commit": "abc"}"#, "commit"),
                              (#"{"rollback_on_halt": "yes"}"#, "rollback_on_halt"), (#"{"max_in_flight": "0%"}"#, "max_in_flight"),
                              (#"{"batch": 1, "max_in_flight": 1}"#, "max_in_flight"), (#"{"max_failure_rate": "3/600"}"#, "max_failure_rate"),
                              (#"{"max_in_flight": 2, "max_failure_rate": "3 per minute"}"#, "max_failure_rate")] {
            let reply = try server.request("POST", "/api/v1/ops/factory/rollout", body: body)
            #expect(reply.status == 422 && reply.json?["field"] as? String == field, "\(body): \(reply.body)")
        }
        let started = try server.request("POST", "/api/v1/ops/factory/rollout", body: #"{"canary": 1, "batch": 1, "rollback_on_halt": true}"#)
        #expect(started.status == 202, "\(started.body)")
        #expect(started.json?["commit"] as? String == target)
        #expect((started.json?["waves"] as? [[String]]) == [["f-1"], ["f-2"]])
        let id = started.json?["rollout_id"] as? String ?? ""
        #expect(eventually(timeout: 60) {
            (try? FactoryctlBinary.run(["status", "--rollout", id, "--json"],
                                       environment: fleet.environment).stdout.contains("\"state\":\"succeeded\"")) == true
        })
        for id in ["f-1", "f-2"] { #expect(try fleet.world.head(fleet.factories[id]!) == target) }
        let page = try server.request("GET", "/", token: nil)
        #expect(page.body.contains(id) && page.body.contains("succeeded"), "the fleet page shows the rollout")
    }

    @Test func aRolloutServeIsDrivingRefusesResumeRolloutNamingServe() throws {
        let fleet = try FleetWorld(factories: ["f-1", "f-2"])
        let supervisor = Supervisor()
        defer { supervisor.stopAll() }
        for id in ["f-1", "f-2"] {
            try supervisor.supervise(id) { try fleet.consumer(id, ["--no-sync"]) }
            #expect(try fleet.waitUntilRegistered(id))
        }
        try fleet.world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        var env = hqEnvironment(fleet)
        env["UA_FACTORY_REPO_URL"] = fleet.world.origin
        let server = try GatewayProcess(fleet: fleet, environment: env)
        defer { server.process.stop() }
        let started = try server.request("POST", "/api/v1/ops/factory/rollout", body: #"{"canary": 1, "batch": 1, "pause_seconds": 600}"#)
        #expect(started.status == 202, "\(started.body)")
        let id = started.json?["rollout_id"] as? String ?? ""
        // In the pause after the canary wave, serve's thread still drives it.
        #expect(eventually(timeout: 60) { (try? fleet.redis.cli(["HGET", "factoryctl:rollout:\(id)", "wave"])) == "1" })
        let resume = try FactoryctlBinary.run(["publish", "resume-rollout", id, "--log-level", "error"], environment: env)
        #expect(resume.status == 8, "\(resume.stderr)")
        #expect(resume.stderr.contains("already being driven by factoryctl serve, pid \(server.process.pid)"), "\(resume.stderr)")
        #expect(try fleet.redis.cli(["HEXISTS", "factoryctl:rollout:\(id)", "wave:1:job"]) == "0", "wave 2 not sent by either")
        #expect(try FactoryctlBinary.run(["publish", "abort-rollout", id, "--log-level", "error"], environment: env).status == 0)
    }

    @Test func consumerPostsItsRegistrationToHQWithTheOpsToken() throws {
        let fleet = try FleetWorld()
        // HQ has its own Redis: what arrives there came over HTTP.
        let hqRedis = try RedisServer()
        var headquarters = hqEnvironment(fleet)
        headquarters["UA_REDIS_URL"] = hqRedis.url
        let server = try GatewayProcess(fleet: fleet, environment: headquarters, arguments: ["--redis-url", hqRedis.url])
        defer { server.process.stop() }
        var factoryEnvironment = fleet.environment
        factoryEnvironment["UA_HQ_BASE_URL"] = "http://127.0.0.1:\(server.port)"
        factoryEnvironment["UA_OPS_TOKEN"] = "test-ops-token-0123"
        factoryEnvironment["UA_FACTORY_CAPABILITIES"] = "gpu, delegation_redis"
        let consumer = try fleet.consumer("f-1", environment: factoryEnvironment)
        defer { consumer.stop() }
        #expect(try eventually { (try? hqRedis.cli(["HGET", "factoryctl:registry", "f-1"]))?.contains("gpu") == true })
        #expect(server.process.output.contains("POST /api/v1/factory/registrations 200"))

        // A wrong token is logged by the consumer and is not fatal.
        factoryEnvironment["UA_OPS_TOKEN"] = "wrong-token"
        let other = try ConsumerProcess(binary: FactoryctlBinary.path, factoryID: "f-2", factoryDirectory: fleet.world.factory,
                                        redisURL: fleet.redis.url, environment: factoryEnvironment,
                                        extraArguments: ["--heartbeat", "1"], log: fleet.world.directory.join("f2.log"))
        defer { other.stop() }
        #expect(try fleet.waitUntilRegistered("f-2"))
        #expect(eventually { other.output.contains("HQ registration POST failed: HTTP 401") })
        #expect(other.status == nil)
        #expect(!other.output.contains("wrong-token"), "the token is never logged")
    }

    @Test func sigtermShutsDownGracefully() throws {
        let fleet = try FleetWorld()
        let server = try GatewayProcess(fleet: fleet, environment: hqEnvironment(fleet))
        #expect(server.port > 0)
        #expect(server.process.stop() == 0)
    }
}
