import Crypto
import FactoryKit
import Foundation
import RedisKit
import Testing
import TestSupport

/// Ed25519-signed missions: keys, signing at HQ (publish and serve), verification on the factory.
@Suite struct SignedMissionTests {
    /// The fields of every entry on a stream, oldest first.
    func entries(_ fleet: FleetWorld, _ stream: String = "ua:missions:delegation") throws -> [[String: String]] {
        let client = RedisClient(url: try RedisURL(fleet.redis.url))
        return try client.command(["XRANGE", stream, "-", "+"]).array?.compactMap { entry -> [String: String]? in
            guard let list = entry.array, list.count == 2, let pairs = list[1].array else { return nil }
            var fields: [String: String] = [:]
            var index = 0
            while index + 1 < pairs.count {
                fields[pairs[index].text ?? ""] = pairs[index + 1].text ?? ""
                index += 2
            }
            return fields
        } ?? []
    }

    func add(_ fleet: FleetWorld, _ fields: [String: String], stream: String = "ua:missions:delegation") throws {
        let client = RedisClient(url: try RedisURL(fleet.redis.url))
        try client.command(["XADD", stream, "*"] + fields.sorted { $0.key < $1.key }.flatMap { [$0.key, $0.value] })
    }

    /// Where the suite's factories read missions: the default stream, no fleet id.
    static let production = MissionSigning.Binding(stream: "ua:missions:delegation", fleetID: "")

    func keys(_ fleet: FleetWorld, _ name: String) throws -> (key: String, pub: String) {
        let directory = fleet.world.directory.join(name)
        let result = try FactoryctlBinary.run(["keys", "generate", "--out", directory], environment: fleet.environment)
        #expect(result.status == 0, "\(result.stderr)")
        return (directory + "/mission.key", directory + "/mission.pub")
    }

    @Test func keysGenerateWritesAPrivateKeyOnlyItsOwnerReadsAndNeverOverwrites() throws {
        let fleet = try FleetWorld()
        let (key, pub) = try keys(fleet, "hq")
        let mode = try FileManager.default.attributesOfItem(atPath: key)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        #expect(try String(contentsOfFile: key, encoding: .utf8).hasPrefix("factoryctl-mission-private-key-v1 "))
        #expect(try String(contentsOfFile: pub, encoding: .utf8).hasPrefix("factoryctl-mission-public-key-v1 "))
        let before = try String(contentsOfFile: key, encoding: .utf8)
        let again = try FactoryctlBinary.run(["keys", "generate", "--out", fleet.world.directory.join("hq")],
                                             environment: fleet.environment)
        #expect(again.status == 1 && again.stderr.contains("already exists"))
        #expect(try String(contentsOfFile: key, encoding: .utf8) == before)
        // A signing key others can read is refused.
        chmod(key, 0o644)
        var env = fleet.environment
        env["UA_MISSION_SIGNING_KEY"] = key
        let refused = try FactoryctlBinary.run(["publish", "update", "--allow-unregistered", "--target", "f-1"], environment: env)
        #expect(refused.status == 64 && refused.stderr.contains("readable by others"), "\(refused.stderr)")
        #expect(try fleet.redis.cli(["EXISTS", "ua:missions:delegation"]) == "0")
    }

    @Test func signaturesCoverTheEnvelopeTheIdsTheWindowTheStreamAndTheFleet() throws {
        let signer = MissionSigner.generate()
        let other = MissionSigner.generate()
        let verifier = MissionVerifier(keys: [other.key.publicKey, signer.key.publicKey]) // rotation: both accepted
        let envelope = Mission.make(kind: .update, target: .all).envelope
        let text = envelope.json.pythonJSON
        let prod = MissionSigning.Binding(stream: "ua:missions:delegation", fleetID: "prod")
        var fields = ["job_id": envelope.jobID, "idempotency_key": envelope.idempotencyKey, "envelope": text]
        for (name, value) in try signer.sign(jobID: envelope.jobID, idempotencyKey: envelope.idempotencyKey, envelope: text,
                                             binding: prod, issuedAt: Date(), lifetime: 300) { fields[name] = value }
        #expect(try verifier.verify(fields: fields, binding: prod) == signer.keyID)
        // Read from another stream, or by a factory of another fleet (or of none): not this mission.
        for elsewhere in [MissionSigning.Binding(stream: "ua:missions:staging", fleetID: "prod"),
                          MissionSigning.Binding(stream: "ua:missions:delegation", fleetID: "staging"),
                          MissionSigning.Binding(stream: "ua:missions:delegation", fleetID: "")] {
            #expect(throws: MissionVerifier.Failure.badSignature(signer.keyID)) { try verifier.verify(fields: fields, binding: elsewhere) }
        }
        // Only the legacy signature (what an older HQ sends, and what a copy would keep): refused.
        var legacy = fields
        legacy["signature_v2"] = nil
        #expect(throws: MissionVerifier.Failure.unbound(signer.keyID)) { try verifier.verify(fields: legacy, binding: prod) }
        for (field, value) in [("envelope", text.replacingOccurrences(of: "\"main\"", with: "\"evil\"")),
                               ("job_id", "update-000000000000"), ("idempotency_key", "other"),
                               ("expires_at", String(Int(fields["expires_at"]!)! + 3600))] {
            var altered = fields
            altered[field] = value
            #expect(throws: MissionVerifier.Failure.badSignature(signer.keyID)) { try verifier.verify(fields: altered, binding: prod) }
        }
        #expect(throws: MissionVerifier.Failure.unsigned) { try verifier.verify(fields: ["job_id": "x", "envelope": text], binding: prod) }
        #expect(throws: MissionVerifier.Failure.self) {
            try MissionVerifier(keys: [other.key.publicKey]).verify(fields: fields, binding: prod)
        }
        #expect(throws: MissionVerifier.Failure.self) { try verifier.verify(fields: fields, binding: prod, now: Date().addingTimeInterval(400)) }
        #expect(throws: MissionVerifier.Failure.self) { try verifier.verify(fields: fields, binding: prod, now: Date().addingTimeInterval(-1000)) }
    }

    @Test func aVerifyingFactoryRunsOnlySignedMissionsAndDeadLettersTheRestBeforeAnyGitStep() throws {
        let fleet = try FleetWorld()
        let (oldKey, oldPub) = try keys(fleet, "old")
        let (newKey, newPub) = try keys(fleet, "new")
        var factory = fleet.environment
        factory["UA_MISSION_VERIFY_KEYS"] = oldPub + "," + newPub // a rotation in progress
        let consumerEnvironment = factory
        let supervisor = Supervisor()
        defer { supervisor.stopAll() }
        try supervisor.supervise("f-1") { try fleet.consumer("f-1", ["--no-sync"], environment: consumerEnvironment) }
        #expect(try fleet.waitUntilRegistered("f-1"))
        let start = try fleet.world.head(fleet.world.factory)
        let two = try fleet.world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")

        // Not signed (the existing Python HQ's mission), forged with an unknown key, or altered:
        // all dead-lettered, nothing fetched or changed.
        let unsigned = Mission.make(kind: .update, target: .ids(["f-1"]))
        try add(fleet, ["job_id": unsigned.jobID, "idempotency_key": unsigned.jobID, "envelope": unsigned.envelope.json.pythonJSON])
        let stranger = MissionSigner.generate()
        let forged = Mission.make(kind: .update, target: .ids(["f-1"]))
        var forgedFields = ["job_id": forged.jobID, "idempotency_key": forged.jobID, "envelope": forged.envelope.json.pythonJSON]
        for (k, v) in try stranger.sign(jobID: forged.jobID, idempotencyKey: forged.jobID, envelope: forgedFields["envelope"]!,
                                        binding: Self.production, issuedAt: Date(), lifetime: 300) { forgedFields[k] = v }
        try add(fleet, forgedFields)
        let signer = try MissionSigner.load(path: newKey)
        let expired = Mission.make(kind: .update, target: .ids(["f-1"]))
        var expiredFields = ["job_id": expired.jobID, "idempotency_key": expired.jobID, "envelope": expired.envelope.json.pythonJSON]
        for (k, v) in try signer.sign(jobID: expired.jobID, idempotencyKey: expired.jobID, envelope: expiredFields["envelope"]!,
                                      binding: Self.production, issuedAt: Date().addingTimeInterval(-3600), lifetime: 60) { expiredFields[k] = v }
        try add(fleet, expiredFields)
        #expect(eventually { (try? fleet.redis.cli(["XLEN", "ua:missions:dlq"])) == "3" })
        let dlq = try fleet.redis.cli(["XRANGE", "ua:missions:dlq", "-", "+"])
        #expect(dlq.contains("unsigned"), "\(dlq)")
        #expect(dlq.contains("signed by unknown key \(stranger.keyID)"), "\(dlq)")
        #expect(dlq.contains("expired"), "\(dlq)")
        #expect(try fleet.world.head(fleet.world.factory) == start)
        #expect(try fleet.world.git(["rev-parse", "refs/remotes/origin/main"], in: fleet.world.factory) == start, "not even fetched")

        // Signed by the new key through publish: it runs.
        var hq = fleet.environment
        hq["UA_MISSION_SIGNING_KEY"] = newKey
        let job = try FactoryctlBinary.run(["publish", "update", "--target", "f-1", "--log-level", "error"], environment: hq)
            .stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(eventually { (try? fleet.results(job).first?["status"] as? String) == "SUCCESS" })
        #expect(try eventually { (try? fleet.registration("f-1"))?["commit"] as? String == two })
        let published = try entries(fleet).last { $0["job_id"] == job }
        #expect(published?["key_id"] == signer.keyID && published?["signature"] != nil)

        // A replay of that signed entry (a Redis writer copying it) is refused.
        let replayed = published ?? [:]
        try add(fleet, replayed)
        #expect(eventually { (try? fleet.redis.cli(["XLEN", "ua:missions:dlq"])) == "4" })
        #expect(try fleet.redis.cli(["XRANGE", "ua:missions:dlq", "-", "+"]).contains("replayed: job \(job)"))
        // The same signed fields with the mission altered (another job id and branch): a known key,
        // a signature that does not match.
        var altered = replayed
        altered["job_id"] = "update-0000000000ff"
        altered["envelope"] = replayed["envelope"]?.replacingOccurrences(of: job, with: "update-0000000000ff")
        try add(fleet, altered)
        #expect(eventually { (try? fleet.redis.cli(["XLEN", "ua:missions:dlq"])) == "5" })
        #expect(try fleet.redis.cli(["XRANGE", "ua:missions:dlq", "-", "+"]).contains("bad signature for key \(signer.keyID)"))

        // The old key still verifies during the rotation (a pause, signed with it).
        hq["UA_MISSION_SIGNING_KEY"] = oldKey
        let pause = try FactoryctlBinary.run(["publish", "pause", "--target", "f-1", "--log-level", "error"], environment: hq)
            .stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(eventually { (try? fleet.results(pause).first?["status"] as? String) == "SUCCESS" })
        #expect(try eventually { (try? fleet.registration("f-1"))?["registration_status"] as? String == "paused" })
    }

    @Test func serveSignsWhatItPublishes() throws {
        let fleet = try FleetWorld()
        let (key, pub) = try keys(fleet, "hq")
        var env = fleet.environment
        env["UA_OPS_TOKEN"] = "test-ops-token-0123"
        env["UA_MISSION_SIGNING_KEY"] = key
        let server = try GatewayProcess(fleet: fleet, environment: env)
        defer { server.process.stop() }
        let reply = try server.request("POST", "/api/v1/ops/factory/update", body: #"{"branch": "main"}"#, token: "test-ops-token-0123")
        #expect(reply.status == 200, "\(reply.body)")
        let entry = try entries(fleet).last ?? [:]
        let verifier = try MissionVerifier.load(paths: pub)
        #expect(try verifier.verify(fields: entry, binding: Self.production) == (try MissionSigner.load(path: key)).keyID)
    }

    @Test func aSignedMissionCopiedIntoAnotherStreamOrSignedForAnotherFleetIsDeadLetteredAsABadSignature() throws {
        let fleet = try FleetWorld()
        let (key, pub) = try keys(fleet, "hq")
        var factory = fleet.environment
        factory["UA_MISSION_VERIFY_KEYS"] = pub
        factory["UA_FLEET_ID"] = "prod"
        let consumerEnvironment = factory
        let supervisor = Supervisor()
        defer { supervisor.stopAll() }
        try supervisor.supervise("f-1") { try fleet.consumer("f-1", ["--no-sync"], environment: consumerEnvironment) }
        #expect(try fleet.waitUntilRegistered("f-1"))
        let start = try fleet.world.head(fleet.world.factory)
        let two = try fleet.world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        var hq = fleet.environment
        hq["UA_MISSION_SIGNING_KEY"] = key
        hq["UA_FLEET_ID"] = "prod"
        func publish(_ env: [String: String]) throws -> String {
            // --force: the jobs before were dead-lettered, so they stay in flight for f-1.
            let result = try FactoryctlBinary.run(["publish", "update", "--target", "f-1", "--force", "--log-level", "error"],
                                                  environment: env)
            #expect(result.status == 0, "\(result.stderr)")
            return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        func deadLetters() throws -> String { try fleet.redis.cli(["XRANGE", "ua:missions:dlq", "-", "+"]) }

        // Signed by the same HQ key for the staging stream, then copied into the stream f-1 reads.
        var staging = hq
        staging["UA_DELEGATION_STREAM_NAME"] = "ua:missions:staging"
        let copied = try publish(staging)
        let original = try entries(fleet, "ua:missions:staging").first { $0["job_id"] == copied } ?? [:]
        #expect(original["signature_v2"] != nil && original["signature"] != nil, "\(original)")
        try add(fleet, original)
        #expect(eventually { (try? deadLetters())?.contains(copied) == true })
        let letters = try deadLetters()
        #expect(letters.contains("bad signature for key"), "\(letters)")

        // Signed for another fleet (UA_FLEET_ID), on the right stream.
        var otherFleet = hq
        otherFleet["UA_FLEET_ID"] = "staging"
        let foreign = try publish(otherFleet)
        #expect(eventually { (try? deadLetters())?.contains(foreign) == true })
        #expect(try fleet.redis.cli(["XLEN", "ua:missions:dlq"]) == "2")
        #expect(try fleet.world.head(fleet.world.factory) == start, "neither ran")
        #expect(try fleet.results(copied).isEmpty && fleet.results(foreign).isEmpty)

        // With its legacy signature only (what an older HQ sends): refused, and says why.
        let mission = Mission.make(kind: .update, target: .ids(["f-1"]))
        var legacy = ["job_id": mission.jobID, "idempotency_key": mission.jobID, "envelope": mission.envelope.json.pythonJSON]
        for (k, v) in try MissionSigner.load(path: key).sign(jobID: mission.jobID, idempotencyKey: mission.jobID, envelope: legacy["envelope"]!,
                                                            binding: Self.production, issuedAt: Date(), lifetime: 300) where k != "signature_v2" {
            legacy[k] = v
        }
        try add(fleet, legacy)
        #expect(eventually { (try? deadLetters())?.contains("without a stream binding") == true })

        // Signed for this stream and this fleet: it runs.
        let job = try publish(hq)
        #expect(eventually { (try? fleet.results(job).first?["status"] as? String) == "SUCCESS" })
        #expect(try eventually { (try? fleet.registration("f-1"))?["commit"] as? String == two })
    }

    /// A consumer on f-1 that verifies missions against `pub`.
    func verifyingConsumer(_ fleet: FleetWorld, pub: String, _ supervisor: Supervisor) throws {
        var factory = fleet.environment
        factory["UA_MISSION_VERIFY_KEYS"] = pub
        let consumerEnvironment = factory
        try supervisor.supervise("f-1") { try fleet.consumer("f-1", ["--no-sync"], environment: consumerEnvironment) }
    }

    @Test func aSignedBroadcastFromBeforeAFactoryJoinedCopiedToANewEntryIdIsDeadLettered() throws {
        let fleet = try FleetWorld()
        let (key, pub) = try keys(fleet, "hq")
        let start = try fleet.world.head(fleet.world.factory)
        _ = try fleet.world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        var hq = fleet.environment
        hq["UA_MISSION_SIGNING_KEY"] = key
        let job = try FactoryctlBinary.run(["publish", "update", "--log-level", "error"], environment: hq)
            .stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let original = try entries(fleet).first { $0["job_id"] == job } ?? [:]
        let issued = Int64(original["issued_at"] ?? "") ?? 0
        // f-1 joins in a later second than the broadcast was signed in.
        #expect(eventually { (try? fleet.redis.cli(["TIME"]).split(separator: "\n").first.flatMap { Int64($0) }).map { $0 > issued } == true })
        let supervisor = Supervisor()
        defer { supervisor.stopAll() }
        try verifyingConsumer(fleet, pub: pub, supervisor)
        #expect(try fleet.waitUntilRegistered("f-1"))
        // A Redis writer adds the signed fields again: `XADD … *` gives them an id after f-1's floor.
        try add(fleet, original)
        #expect(eventually { (try? fleet.redis.cli(["XRANGE", "ua:missions:dlq", "-", "+"]))?.contains(job) == true })
        let letters = try fleet.redis.cli(["XRANGE", "ua:missions:dlq", "-", "+"])
        #expect(letters.contains("before this factory joined the fleet"), "\(letters)")
        #expect(try fleet.world.head(fleet.world.factory) == start, "not run")
    }

    @Test func aSignedMissionAddedUnderAnEntryIdFarFromItsIssueTimeIsDeadLettered() throws {
        let fleet = try FleetWorld()
        let (key, pub) = try keys(fleet, "hq")
        let supervisor = Supervisor()
        defer { supervisor.stopAll() }
        try verifyingConsumer(fleet, pub: pub, supervisor)
        #expect(try fleet.waitUntilRegistered("f-1"))
        let start = try fleet.world.head(fleet.world.factory)
        _ = try fleet.world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        // Signed (and still valid) ten minutes ago, naming f-1; added to the stream only now.
        let mission = Mission.make(kind: .update, target: .ids(["f-1"]))
        var fields = ["job_id": mission.jobID, "idempotency_key": mission.jobID, "envelope": mission.envelope.json.pythonJSON]
        for (k, v) in try MissionSigner.load(path: key).sign(jobID: mission.jobID, idempotencyKey: mission.jobID, envelope: fields["envelope"]!,
                                                            binding: Self.production, issuedAt: Date().addingTimeInterval(-600),
                                                            lifetime: 3600) { fields[k] = v }
        try add(fleet, fields)
        #expect(eventually { (try? fleet.redis.cli(["XRANGE", "ua:missions:dlq", "-", "+"]))?.contains(mission.jobID) == true })
        let letters = try fleet.redis.cli(["XRANGE", "ua:missions:dlq", "-", "+"])
        #expect(letters.contains("away from when the mission was signed"), "\(letters)")
        #expect(try fleet.world.head(fleet.world.factory) == start, "not run")
    }
}
