import FactoryKit
import Foundation
import RedisKit
import Testing
import TestSupport

/// The wire format of DESIGN.md, checked against Python's json module (the existing HQ's encoder)
/// and the HQ's pydantic schema constraints.
@Suite struct MissionWireTests {
    /// Re-serializes with `json.dumps(json.loads(text), sort_keys=True)`.
    func pythonDump(_ text: String) throws -> String {
        try Command.run(["python3", "-c", "import json,sys; print(json.dumps(json.loads(sys.stdin.read()), sort_keys=True), end='')"],
                        input: text).stdout
    }

    /// The MissionEnvelope constraints of universal_agent.delegation.schema, in plain Python.
    static let schemaCheck = """
    import json, sys
    d = json.loads(sys.stdin.read())
    def is_int(v): return isinstance(v, int) and not isinstance(v, bool)
    assert isinstance(d["job_id"], str) and len(d["job_id"]) >= 1
    assert isinstance(d["idempotency_key"], str) and len(d["idempotency_key"]) >= 1
    assert is_int(d.get("priority", 1))
    assert is_int(d.get("timeout_seconds", 3600)) and d.get("timeout_seconds", 3600) >= 1
    assert is_int(d.get("max_retries", 3)) and d.get("max_retries", 3) >= 0
    p = d["payload"]
    assert isinstance(p["task"], str) and len(p["task"]) >= 1
    assert isinstance(p.get("context", {}), dict)
    print("valid")
    """

    @Test func publishedEnvelopeIsWhatPythonWouldWriteAndValidatesAgainstTheHQSchema() throws {
        let mission = Mission.make(kind: .update, target: .all, branch: "main")
        let text = mission.envelope.json.pythonJSON
        #expect(try pythonDump(text) == text)
        #expect(try Command.run(["python3", "-c", Self.schemaCheck], input: text).stdout == "valid\n")
        #expect(mission.jobID.hasPrefix("update-") && mission.jobID.count == "update-".count + 12)
        #expect(mission.envelope.priority == 10 && mission.envelope.timeoutSeconds == 300 && mission.envelope.maxRetries == 0)
        #expect(text.contains("\"task\": \"Update factory to latest code\""))
        #expect(text.contains("\"target_factory_id\": \"\""))
    }

    @Test func pythonCompatibleEncodingOfTrickyValues() throws {
        let value: JSONValue = .object(["b": .string("é \"q\" \\ \n ☃ 😀 \u{7f}"), "a": .array([.int(-3), .double(1.5), .double(2), .bool(true), .null])])
        let text = value.pythonJSON
        #expect(try pythonDump(text) == text)
    }

    @Test func entryWrittenExactlyAsThePythonHQWritesItIsConsumable() throws {
        let server = try RedisServer()
        // What the existing HQ does: json.dumps(envelope.model_dump(mode="json"), sort_keys=True) via XADD.
        let python = """
        import json
        payload = {"job_id": "update-0123456789ab", "idempotency_key": "update-0123456789ab", "priority": 10,
                   "timeout_seconds": 300, "max_retries": 0,
                   "payload": {"task": "Update factory to latest code",
                               "context": {"mission_kind": "system:update_factory", "branch": "main", "target_factory_id": ""}}}
        print(json.dumps(payload, sort_keys=True), end="")
        """
        let envelope = try Command.run(["python3", "-c", python]).stdout
        try server.cli(["XADD", "ua:missions:delegation", "*", "job_id", "update-0123456789ab",
                        "idempotency_key", "update-0123456789ab", "envelope", envelope])
        let bus = MissionBus(redis: RedisClient(url: try RedisURL(server.url)), stream: "ua:missions:delegation",
                             deadLetterStream: "ua:missions:dlq")
        try server.cli(["XGROUP", "CREATE", "ua:missions:delegation", "factoryctl:f1", "0"])
        let entries = try bus.readNew(group: "factoryctl:f1", consumer: "f1", blockMilliseconds: 100)
        #expect(entries.count == 1)
        let parsed = try Mission.parse(fields: entries[0].fields ?? [:])
        guard case .mission(let mission) = parsed else { Issue.record("not a mission: \(parsed)"); return }
        #expect(mission.kind == .update)
        #expect(mission.branch == "main")
        #expect(mission.target == .all)
        #expect(mission.envelope.json.pythonJSON == envelope)
    }

    @Test func publishWritesTheHQFieldsAndBoundsTheStream() throws {
        let server = try RedisServer()
        let bus = MissionBus(redis: RedisClient(url: try RedisURL(server.url)), stream: "s", deadLetterStream: "dlq", maxLength: 100)
        for _ in 0..<400 { try bus.publish(Mission.make(kind: .update, target: .ids(["f1"]))) }
        let length = Int(try server.cli(["XLEN", "s"])) ?? 0
        #expect(length >= 100 && length < 400)
        let fields = try server.cli(["XRANGE", "s", "-", "+", "COUNT", "1"]).split(separator: "\n").map(String.init)
        #expect(fields.contains("job_id") && fields.contains("idempotency_key") && fields.contains("envelope"))
    }

    @Test(arguments: [
        ("{not json", "not valid JSON"),
        ("[1]", "not a JSON object"),
        (#"{"idempotency_key": "k", "payload": {"task": "t"}}"#, "missing field job_id"),
        (#"{"job_id": 7, "idempotency_key": "k", "payload": {"task": "t"}}"#, "job_id must be a string"),
        (#"{"job_id": "j", "idempotency_key": "k", "priority": "10", "payload": {"task": "t"}}"#, "priority must be an integer"),
        (#"{"job_id": "j", "idempotency_key": "k", "timeout_seconds": 0, "payload": {"task": "t"}}"#, "timeout_seconds must be >= 1"),
        (#"{"job_id": "j", "idempotency_key": "k", "max_retries": true, "payload": {"task": "t"}}"#, "max_retries must be an integer"),
        (#"{"job_id": "j", "idempotency_key": "k", "payload": {"task": ""}}"#, "payload.task must not be empty"),
        (#"{"job_id": "j", "idempotency_key": "k", "payload": {"task": "t", "context": []}}"#, "payload.context must be an object"),
        (#"{"job_id": "j k", "idempotency_key": "k", "payload": {"task": "t"}}"#, "not a valid id"),
        (#"{"job_id": "j", "idempotency_key": "k", "payload": {"task": "t", "context": {"mission_kind": "system:reboot"}}}"#, "unknown system mission kind"),
        (#"{"job_id": "j", "idempotency_key": "k", "payload": {"task": "t", "context": {"mission_kind": "system:update_factory", "branch": "--upload-pack=x"}}}"#, "starts with '-'"),
        (#"{"job_id": "j", "idempotency_key": "k", "payload": {"task": "t", "context": {"mission_kind": "system:update_factory", "branch": "a..b"}}}"#, "contains '..'"),
        (#"{"job_id": "j", "idempotency_key": "k", "payload": {"task": "t", "context": {"mission_kind": "system:update_factory", "branch": 5}}}"#, "branch must be a string"),
        (#"{"job_id": "j", "idempotency_key": "k", "payload": {"task": "t", "context": {"mission_kind": "system:update_factory", "target_factory_id": 1}}}"#, "target_factory_id must be a string"),
    ])
    func malformedEntriesAreRejectedWithAReason(envelope: String, reason: String) {
        do {
            let parsed = try Mission.parse(fields: ["job_id": "j", "envelope": envelope])
            Issue.record("accepted: \(parsed)")
        } catch {
            #expect(error.description.contains(reason), "\(error.description)")
        }
    }

    @Test func unknownExtraFieldsAreToleratedAndNonSystemKindsAreNotOurs() throws {
        let extra = #"{"job_id": "j", "idempotency_key": "k", "new_field": {"x": 1}, "payload": {"task": "t", "extra": 1, "context": {"mission_kind": "system:pause_factory", "target_factory_id": "f1"}}}"#
        guard case .mission(let mission) = try Mission.parse(fields: ["envelope": extra]) else { Issue.record("not parsed"); return }
        #expect(mission.kind == .pause && mission.target == .ids(["f1"]))
        let agentWork = #"{"job_id": "j", "idempotency_key": "k", "payload": {"task": "write code", "context": {"mission_kind": "coding_task"}}}"#
        #expect(try Mission.parse(fields: ["envelope": agentWork]) == .notForFactoryctl(jobID: "j", kind: "coding_task"))
    }

    @Test func targetsMatchIdsGlobsAndEveryone() throws {
        #expect(MissionTarget.all.matches("anything"))
        #expect(try MissionTarget(arguments: ["eu-*"]) == .glob("eu-*"))
        #expect(MissionTarget.glob("eu-*").matches("eu-1") && !MissionTarget.glob("eu-*").matches("us-1"))
        #expect(MissionTarget.ids(["a", "b"]).matches("b") && !MissionTarget.ids(["a", "b"]).matches("c"))
        #expect(throws: FactoryError.self) { try MissionTarget(arguments: ["bad id"]) }
        // Several ids travel in a field old consumers ignore; target_factory_id names no factory.
        let fields = MissionTarget.ids(["a", "b"]).contextFields
        #expect(fields["target_factory_id"] == .string(MissionTarget.multiTargetMarker))
        #expect(try MissionTarget(context: fields) == .ids(["a", "b"]))
        #expect(try MissionTarget(context: MissionTarget.glob("eu-*").contextFields) == .glob("eu-*"))
        #expect(MissionTarget.ids(["eu-1"]).overlaps(.glob("eu-*")))
        #expect(!MissionTarget.ids(["us-1"]).overlaps(.glob("eu-*")))
        #expect(!MissionTarget.ids(["a"]).overlaps(.ids(["b"])))
    }

    @Test func resultEnvelopeHasTheHQShape() throws {
        let result = MissionResult(jobID: "update-1", succeeded: true, result: ["factory_id": .string("f1")], error: nil)
        let text = result.json.pythonJSON
        #expect(text == #"{"error": null, "job_id": "update-1", "result": {"factory_id": "f1"}, "status": "SUCCESS"}"#)
        #expect(MissionResult(json: result.json) == result)
    }

    @Test func pinnedCommitAndAllowRewindAreReadAndValidated() throws {
        let commit = String(repeating: "a1", count: 20)
        let mission = Mission.make(kind: .update, target: .all, branch: "main", commit: commit, allowRewind: true)
        #expect(mission.envelope.context["commit"] == .string(commit))
        let fields = ["job_id": mission.jobID, "idempotency_key": mission.jobID, "envelope": mission.envelope.json.pythonJSON]
        guard case .mission(let parsed) = try Mission.parse(fields: fields) else { Issue.record("not a mission"); return }
        #expect(parsed.commit == commit && parsed.allowRewind)
        // An envelope without them (the existing HQ's) is unpinned.
        let plain = Mission.make(kind: .update, target: .all)
        #expect(plain.envelope.context["commit"] == nil && plain.envelope.context["allow_rewind"] == nil)
        for (key, value) in [("commit", JSONValue.string("abc")), ("commit", .string(commit.uppercased())), ("commit", .int(5)),
                             ("allow_rewind", .string("yes"))] {
            var envelope = plain.envelope
            envelope.context[key] = value
            let bad = ["job_id": plain.jobID, "idempotency_key": plain.jobID, "envelope": envelope.json.pythonJSON]
            #expect(throws: MissionRejection.self) { try Mission.parse(fields: bad) }
        }
    }

    @Test func splaySecondsIsCarriedOnUpdatesAndValidated() throws {
        let mission = Mission.make(kind: .update, target: .all, splaySeconds: 30)
        let fields = ["job_id": mission.jobID, "idempotency_key": mission.jobID, "envelope": mission.envelope.json.pythonJSON]
        guard case .mission(let parsed) = try Mission.parse(fields: fields) else { Issue.record("not a mission"); return }
        let plain = Mission.make(kind: .update, target: .all)
        var rejected = 0
        let bad: [JSONValue] = [.string("30"), .int(-1), .int(Int64(Mission.maximumSplaySeconds) + 1), .double(1.5), .bool(true)]
        for value in bad {
            var envelope = plain.envelope
            envelope.context["splay_seconds"] = value
            let entry = ["job_id": plain.jobID, "idempotency_key": plain.jobID, "envelope": envelope.json.pythonJSON]
            if (try? Mission.parse(fields: entry)) == nil { rejected += 1 }
        }
        #expect(mission.envelope.context["splay_seconds"] == .int(30) && parsed.splaySeconds == 30
                && plain.envelope.context["splay_seconds"] == nil && Mission.make(kind: .pause, target: .all, splaySeconds: 30).envelope.context["splay_seconds"] == nil
                && rejected == bad.count)
    }

    @Test func ignoreWindowIsCarriedOnUpdatesAndRollbacksOnlyWhenTrueAndValidated() throws {
        func parse(_ mission: Mission) throws -> Mission? {
            let fields = ["job_id": mission.jobID, "idempotency_key": mission.jobID, "envelope": mission.envelope.json.pythonJSON]
            guard case .mission(let parsed) = try Mission.parse(fields: fields) else { return nil }
            return parsed
        }
        let update = Mission.make(kind: .update, target: .all, ignoreWindow: true)
        let rollback = Mission.make(kind: .rollback, target: .all, ignoreWindow: true)
        let plain = Mission.make(kind: .update, target: .all)
        var bad = plain
        bad.envelope.context["ignore_window"] = .string("yes")
        #expect(try parse(update)?.ignoreWindow == true && parse(rollback)?.ignoreWindow == true
                && parse(plain)?.ignoreWindow == false && plain.envelope.context["ignore_window"] == nil
                && Mission.make(kind: .pause, target: .all, ignoreWindow: true).envelope.context["ignore_window"] == nil
                && (try? parse(bad)) == nil)
    }
}
