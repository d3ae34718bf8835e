import FactoryKit
import Foundation
import Logging
import RedisKit
import Testing
import TestSupport

/// A rollout runner that stalled past its lease (SIGSTOP, swap) while another runner took the
/// rollout over writes nothing when it wakes: Redis checks the lease in the same script as the
/// write (issue 17: one runner at a time, never two waves in flight).
@Suite struct RolloutFenceTests {
    @Test func aPublishUnderALeaseThatIsNowAnotherRunnersIsRefusedAndWritesNothing() throws {
        let server = try RedisServer()
        let redis = RedisClient(url: try RedisURL(server.url))
        let logger = Logger(label: "test")
        let lease = try RolloutLease.acquire(redis: redis, rolloutID: "rollout-00000000000a", runner: "stalled", seconds: 30, logger: logger)
        defer { lease.release(redis) }
        // The lease expired while this runner was stopped, and another runner took it.
        try server.cli(["SET", RolloutLease.key("rollout-00000000000a"), #"{"runner": "the other one"}"#])
        let bus = MissionBus(redis: redis, stream: "ua:missions:delegation", deadLetterStream: "ua:missions:dlq")
        let publisher = Publisher(bus: bus, logger: logger)
        var code: String?
        do {
            _ = try publisher.publish(kind: .update, target: .ids(["f-1"]), branch: "main", force: true, fence: lease.fence)
        } catch let error as RedisError {
            code = error.replyCode
        }
        let written = try server.cli(["EVAL", "return #redis.call('KEYS', 'factoryctl:jobs:*') + redis.call('EXISTS', KEYS[1])", "1", "ua:missions:delegation"])
        #expect(code == WriteFence.replyCode && written == "0", "refusal \(code ?? "none"), keys written \(written)")
    }

    @Test func aPublishUnderTheRunnersOwnLeaseGoesOut() throws {
        let server = try RedisServer()
        let redis = RedisClient(url: try RedisURL(server.url))
        let logger = Logger(label: "test")
        let lease = try RolloutLease.acquire(redis: redis, rolloutID: "rollout-00000000000b", runner: "holder", seconds: 30, logger: logger)
        defer { lease.release(redis) }
        let bus = MissionBus(redis: redis, stream: "ua:missions:delegation", deadLetterStream: "ua:missions:dlq")
        _ = try Publisher(bus: bus, logger: logger).publish(kind: .update, target: .ids(["f-1"]), branch: "main", force: true, fence: lease.fence)
        #expect(try server.cli(["XLEN", "ua:missions:delegation"]) == "1")
    }
}
