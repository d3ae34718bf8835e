import FactoryKit
import Foundation
import RedisKit
import Testing
import TestSupport

/// The in-flight rule reads who reported a job (issue 22: not their results, which at 10,000
/// factories are 46 MB parsed), with each result attributed by the key it was written to.
@Suite struct InflightCheckTests {
    static func result(_ jobID: String, from factory: String) -> String {
        MissionResult(jobID: jobID, succeeded: true, result: ["factory_id": .string(factory)], error: nil).json.pythonJSON
    }

    @Test func aJobStaysInFlightUntilEveryTargetReportedUnderItsOwnKeyThenIsCleared() throws {
        let server = try RedisServer()
        let bus = MissionBus(redis: RedisClient(url: try RedisURL(server.url)), stream: "ua:missions:delegation",
                             deadLetterStream: "ua:missions:dlq")
        let mission = Mission.make(kind: .update, target: .ids(["a", "b", "c"]))
        let job = mission.jobID
        try bus.publish(mission, factories: ["a", "b", "c"], inboxes: ["b", "c"])
        // a reads the shared stream: its result is the job record's field; b and c are enrolled.
        try server.cli(["HSET", MissionBus.keyPrefix + "job:" + job, "result:a", Self.result(job, from: "a")])
        try server.cli(["SET", FactoryKeys("b").job(job), Self.result(job, from: "b")])
        // Under c's key, a result that claims to be b's does not count for c.
        try server.cli(["SET", FactoryKeys("c").job(job), Self.result(job, from: "b")])
        // A result for c in the shared record does not count either: the job went to c's inbox.
        try server.cli(["HSET", MissionBus.keyPrefix + "job:" + job, "result:c", Self.result(job, from: "c")])
        let live = ["a", "b", "c"]
        #expect(try bus.inflightUpdate(overlapping: .ids(["c"]), liveFactories: live) == job)
        #expect(try bus.inflightUpdate(overlapping: .ids(["d"]), liveFactories: live) == nil)
        #expect(try server.cli(["HEXISTS", MissionBus.keyPrefix + "inflight", job]) == "1")
        try server.cli(["SET", FactoryKeys("c").job(job), Self.result(job, from: "c")])
        #expect(try bus.inflightUpdate(overlapping: .ids(["c"]), liveFactories: live) == nil)
        #expect(try server.cli(["HEXISTS", MissionBus.keyPrefix + "inflight", job]) == "0")
    }
}
