import FactoryKit
import Foundation
import RedisKit
import Testing
import TestSupport

/// HQ with two enrolled factories, A and B (enrolled directly against the test's redis-server),
/// and `factoryctl serve` on that Redis.
final class EnrolledHQ {
    let fleet: FleetWorld
    let server: GatewayProcess
    let redisURL: RedisURL
    /// Each enrolled factory's registration token (`UA_FACTORY_TOKEN`).
    let tokens: [String: String]
    static let enrolled = ["A", "B"]
    static let route = "/api/v1/factory/registrations"

    init() throws {
        fleet = try FleetWorld()
        redisURL = try RedisURL(fleet.redis.url)
        let enrollment = Enrollment(redis: RedisClient(url: redisURL))
        var tokens: [String: String] = [:]
        for id in Self.enrolled {
            tokens[id] = try enrollment.enroll(id, rotate: false, factoryURL: redisURL).token
        }
        self.tokens = tokens
        server = try GatewayProcess(fleet: fleet, environment: hqEnvironment(fleet))
    }

    deinit { server.process.stop() }

    /// POSTs a registration of `factoryID` (its `deployment_profile` marks who sent it) with
    /// `headers` as the only credentials.
    func register(_ factoryID: String, profile: String = "sent-by-test", headers: [String: String], path: String = route) throws -> HTTPReply {
        try server.request("POST", path, body: #"{"factory_id": "\#(factoryID)", "deployment_profile": "\#(profile)"}"#, headers: headers)
    }

    func factoryToken(of id: String) -> [String: String] { ["x-ua-factory-token": tokens[id]!] }

    /// The raw value of `id`'s own registration key ("" when there is none).
    func ownKey(_ id: String) throws -> String { try fleet.redis.cli(["GET", FactoryKeys(id).registration]) }

    /// Whether the shared registry hash has a record for `id`.
    func inSharedRegistry(_ id: String) throws -> Bool { try fleet.redis.cli(["HEXISTS", FleetRegistry.key, id]) == "1" }

    func registry() -> FleetRegistry { FleetRegistry(redis: RedisClient(url: redisURL)) }
}

@Suite struct FactoryTokenTests {
    @Test func aFactoryTokenRegistersItsOwnFactoryUnderItsOwnKey() throws {
        let hq = try EnrolledHQ()
        let reply = try hq.register("B", profile: "profile-B", headers: hq.factoryToken(of: "B"))
        #expect(reply.status == 200, "\(reply.body)")
        #expect(try hq.registry().get("B")?.deploymentProfile == "profile-B")
        #expect(try hq.ownKey("B").contains(#""deployment_profile": "profile-B""#))
        #expect(try !hq.inSharedRegistry("B"), "not written to the shared registry")
    }

    @Test func aFactoryTokenCannotRegisterAnotherFactory() throws {
        let hq = try EnrolledHQ()
        #expect(try hq.register("A", profile: "profile-A", headers: hq.factoryToken(of: "A")).status == 200)
        let before = try hq.ownKey("A")
        let reply = try hq.register("A", profile: "forged-by-B", headers: hq.factoryToken(of: "B"))
        #expect(reply.status == 403, "\(reply.body)")
        #expect(reply.json?["error"] as? String
            == "x-ua-factory-token is not the token of factory 'A': a factory token registers only the factory it was issued to; nothing was registered")
        #expect(!reply.body.contains(hq.tokens["B"]!), "the token is never echoed")
        #expect(try hq.ownKey("A") == before, "A's registration is unchanged")
        #expect(try hq.registry().get("A")?.deploymentProfile == "profile-A")
        #expect(try !hq.inSharedRegistry("A"))
    }

    /// A token that is not the named factory's: made up, one character short of B's, or B's for
    /// an id that is not enrolled.
    @Test(arguments: ["made up", "truncated", "for an id that is not enrolled"])
    func aFactoryTokenThatIsNotTheFactorysIsRefused(_ kind: String) throws {
        let hq = try EnrolledHQ()
        let b = hq.tokens["B"]!
        let (id, token) = switch kind {
        case "made up": ("B", "uaf_" + String(repeating: "0", count: 64))
        case "truncated": ("B", String(b.dropLast()))
        default: ("not-enrolled", b)
        }
        let reply = try hq.register(id, headers: ["x-ua-factory-token": token])
        #expect(reply.status == 403, "\(kind): \(reply.body)")
        #expect(reply.json?["ok"] as? Bool == false && !reply.body.contains(token), "\(kind): \(reply.body)")
        #expect(try hq.ownKey(id) == "" && !hq.inSharedRegistry(id), "\(kind): nothing registered")
    }

    @Test func aRegistrationWithoutAnyTokenIs401() throws {
        let hq = try EnrolledHQ()
        let reply = try hq.register("B", headers: [:])
        #expect(reply.status == 401, "\(reply.body)")
        #expect(reply.json?["error"] as? String == "missing or invalid x-ua-ops-token")
        #expect(try hq.ownKey("B") == "" && !hq.inSharedRegistry("B"))
    }

    @Test func theOpsTokenCannotRegisterAnEnrolledFactory() throws {
        let hq = try EnrolledHQ()
        let reply = try hq.register("A", headers: ["x-ua-ops-token": opsToken])
        #expect(reply.status == 403, "\(reply.body)")
        #expect((reply.json?["error"] as? String)?.contains("'A' is enrolled: registers with its own token") == true, "\(reply.body)")
        #expect(try hq.ownKey("A") == "" && !hq.inSharedRegistry("A"), "nothing registered")
    }

    @Test func theOpsTokenStillRegistersAFactoryThatIsNotEnrolled() throws {
        let hq = try EnrolledHQ()
        let reply = try hq.register("legacy-1", profile: "vps", headers: ["x-ua-ops-token": opsToken])
        #expect(reply.status == 200, "\(reply.body)")
        #expect(try hq.inSharedRegistry("legacy-1"))
        #expect(try hq.registry().get("legacy-1")?.deploymentProfile == "vps")
    }

    /// Every route but the registration POST, each with a body that the ops token would have it act on.
    static let otherRoutes = [
        ("POST", "/api/v1/ops/factory/update", #"{"branch": "main", "target_factory_id": "B"}"#),
        ("POST", "/api/v1/ops/factory/control", #"{"target_factory_id": "", "action": "pause"}"#),
        ("POST", "/api/v1/ops/factory/rollout", #"{"canary": 1}"#),
        ("GET", "/api/v1/ops/factory/jobs/x", ""),
        ("GET", "/api/v1/factory/registrations", ""),
    ]

    @Test(arguments: otherRoutes)
    func aFactoryTokenReachesNoOtherRoute(_ method: String, _ path: String, _ body: String) throws {
        let hq = try EnrolledHQ()
        let reply = try hq.server.request(method, path, body: method == "POST" ? body : nil, headers: hq.factoryToken(of: "B"))
        #expect(reply.status == 401, "\(method) \(path) → \(reply.status) \(reply.body.prefix(200))")
        #expect((reply.json?["error"] as? String)?.hasPrefix("missing or invalid x-ua-ops-token") == true, "\(reply.body)")
        #expect(try hq.fleet.nothingPublished(inboxesOf: EnrolledHQ.enrolled), "nothing published")
    }

    /// The registration route as the router might fold it; a query or a fragment leaves the raw
    /// path as it is, so those two spellings are the route itself.
    static let registrationSpellings = ["//api/v1/factory/registrations", "/api/v1/factory/registrations/",
                                        "/api/v1/factory/%72egistrations"]
        + GatewayTests.spellings(of: EnrolledHQ.route).filter { !$0.hasPrefix(EnrolledHQ.route + "?") && !$0.hasPrefix(EnrolledHQ.route + "#") }

    @Test(arguments: registrationSpellings)
    func aFactoryTokenReachesNoOtherSpellingOfTheRegistrationRoute(_ spelling: String) throws {
        let hq = try EnrolledHQ()
        let reply = try hq.register("B", headers: hq.factoryToken(of: "B"), path: spelling)
        #expect(reply.status == 401, "POST \(spelling) → \(reply.status) \(reply.body.prefix(200))")
        #expect(try hq.ownKey("B") == "" && !hq.inSharedRegistry("B"), "nothing registered")
    }

    @Test func anEnrolledConsumerRegistersWithHQUsingItsOwnToken() throws {
        let fleet = try FleetWorld()
        let server = try GatewayProcess(fleet: fleet, environment: hqEnvironment(fleet))
        defer { server.process.stop() }
        var credentials = try fleet.enroll("f-1")
        #expect(credentials["UA_FACTORY_TOKEN"]?.hasPrefix("uaf_") == true)
        credentials["UA_HQ_BASE_URL"] = "http://127.0.0.1:\(server.port)"
        credentials["UA_FACTORY_CAPABILITIES"] = "posted-over-http"
        let consumer = try fleet.enrolledConsumer("f-1", credentials: credentials)
        defer { consumer.stop() }
        #expect(eventually { server.process.output.contains("POST /api/v1/factory/registrations 200") }, "\(consumer.output)")
        #expect(!consumer.output.contains("HQ registration POST failed"), "\(consumer.output)")
        #expect(try fleet.redis.cli(["HEXISTS", FleetRegistry.key, "f-1"]) == "0", "nothing in the shared registry")
        #expect(!server.process.output.contains(credentials["UA_FACTORY_TOKEN"]!), "the token never reaches the log")
    }

    /// The fleet page reads the same attributed registry: A (registered under its own key) is
    /// listed; B, enrolled, is not listed from a row someone wrote for it in the shared hash.
    @Test func theFleetPageListsAnEnrolledFactoryFromItsOwnKeyOnly() throws {
        let hq = try EnrolledHQ()
        #expect(try hq.register("A", headers: hq.factoryToken(of: "A")).status == 200)
        let forged = #"{"factory_id":"B","factory_role":"LOCAL_WORKER","deployment_profile":"forged-row","registration_status":"online","capabilities":[],"metadata":{},"version":"","pid":0,"host":"h","started_at":1,"last_seen_at":1}"#
        try hq.fleet.redis.cli(["HSET", FleetRegistry.key, "B", forged])
        let page = try hq.server.request("GET", "/", token: nil)
        #expect(page.status == 200 && page.body.contains("<td data-label=\"Factory\">A</td>")
                && !page.body.contains("<td data-label=\"Factory\">B</td>") && !page.body.contains("forged-row"),
                "\(page.body.prefix(3000))")
    }
}
