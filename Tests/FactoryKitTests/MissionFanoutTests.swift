import FactoryKit
import Foundation
import RedisKit
import Testing
import TestSupport

/// How a mission is written (issue 22): each enrolled factory's inbox entry names only that
/// factory, the shared stream's target list only the factories that read it, and a list too long
/// for a consumer's field limit is refused before anything is written.
@Suite struct MissionFanoutTests {
    /// 2,500 ids of 40 characters: a quarter of a 10,000-factory fleet with long ids.
    static let longIDs = (0..<2500).map { "factory-" + String(repeating: "x", count: 27) + String(format: "%05d", $0) }

    static func bus(_ server: RedisServer) throws -> MissionBus {
        MissionBus(redis: RedisClient(url: try RedisURL(server.url)), stream: "ua:missions:delegation", deadLetterStream: "ua:missions:dlq")
    }

    /// The fields of the entries in `key`, oldest first.
    static func entries(_ bus: MissionBus, _ key: String) throws -> [[String: String]] {
        try (bus.redis.command(["XRANGE", key, "-", "+"]).array ?? []).compactMap { $0.array?.last?.fieldMap }
    }

    static func target(_ fields: [String: String]) throws -> MissionTarget {
        guard case .mission(let mission) = try Mission.parse(fields: fields) else { throw FactoryError.failed("not a mission") }
        return mission.target
    }

    @Test func aWaveOfLongIdsThatUsedToExceedTheFieldLimitReachesEveryInboxNamingOnlyItsFactory() throws {
        let mission = Mission.make(kind: .update, target: .ids(Self.longIDs), commit: String(repeating: "a", count: 40))
        // One envelope naming every member (what every inbox got before) is over the limit.
        #expect(mission.envelope.json.pythonJSON.utf8.count > StreamEntry.maxFieldBytes)
        let server = try RedisServer()
        let bus = try Self.bus(server)
        let signer = MissionSigner.generate()
        try bus.publish(mission, signer: signer, factories: Self.longIDs, inboxes: Self.longIDs)
        let verifier = MissionVerifier(keys: [signer.key.publicKey])
        var wrong: [String] = []
        for id in Self.longIDs {
            let fields = try Self.entries(bus, FactoryKeys(id).inbox)
            let exact = fields.count == 1 && fields[0]["envelope"] == mission.retargeted(.ids([id])).envelope.json.pythonJSON
            let verified = exact && (try? verifier.verify(fields: fields[0], binding: bus.binding)) != nil
            if !verified || (fields[0]["envelope"]?.utf8.count ?? .max) > 1024 || fields[0]["job_id"] != mission.jobID
                || (try? Self.target(fields[0])) != .ids([id]) {
                wrong.append(id)
            }
        }
        let shared = try Self.entries(bus, bus.stream)
        #expect(wrong.isEmpty && shared.isEmpty, "\(wrong.count) inboxes wrong, e.g. \(wrong.prefix(2))")
    }

    @Test func theSharedStreamNamesOnlyTheTargetsThatAreNotEnrolled() throws {
        let server = try RedisServer()
        let bus = try Self.bus(server)
        try bus.publish(Mission.make(kind: .update, target: .ids(["a", "b", "c", "d"])), factories: ["a", "b", "c", "d"], inboxes: ["b", "d"])
        let shared = try Self.entries(bus, bus.stream).map(Self.target)
        let inboxes = try ["b", "d"].map { try Self.entries(bus, FactoryKeys($0).inbox).map(Self.target) }
        #expect(shared == [.ids(["a", "c"])] && inboxes == [[.ids(["b"])], [.ids(["d"])]])
    }

    @Test func aBroadcastKeepsItsSharedEntryAndEachInboxNamesItsFactory() throws {
        let server = try RedisServer()
        let bus = try Self.bus(server)
        try bus.publish(Mission.make(kind: .update, target: .all), factories: ["a", "b"], inboxes: ["b"])
        let shared = try Self.entries(bus, bus.stream).map(Self.target)
        let inbox = try Self.entries(bus, FactoryKeys("b").inbox).map(Self.target)
        #expect(shared == [.all] && inbox == [.ids(["b"])])
    }

    @Test func aSharedTargetListOverTheFieldLimitIsRefusedAndNothingIsWritten() throws {
        let server = try RedisServer()
        let bus = try Self.bus(server)
        let mission = Mission.make(kind: .update, target: .ids(Self.longIDs))
        #expect(throws: OversizedMission.self) { try bus.publish(mission, factories: Self.longIDs) }
        let keys = try server.cli(["DBSIZE"])
        #expect(keys == "0")
    }

    @Test func fittingGroupsKeepEachSharedListUnderTheLimitAndPutTheEnrolledInTheFirst() throws {
        let enrolled = Set(Self.longIDs.prefix(100))
        let groups = Publisher.fittingGroups(Self.longIDs, enrolled: enrolled)
        let sizes = groups.map { group in
            Mission.make(kind: .update, target: .ids(group.filter { !enrolled.contains($0) }), commit: String(repeating: "a", count: 40),
                         allowRewind: true).envelope.json.pythonJSON.utf8.count
        }
        #expect(groups.count > 1 && groups.flatMap { $0 } .sorted() == Self.longIDs.sorted()
                && enrolled.isSubset(of: groups[0]) && sizes.allSatisfy { $0 <= StreamEntry.maxFieldBytes }, "\(sizes)")
    }

    @Test func aRolloutPlanWhoseWaveWouldNotFitOnTheSharedStreamIsRefused() throws {
        let plan = Rollout.Plan(id: "rollout-test", branch: "main", commit: String(repeating: "a", count: 40), waves: [Self.longIDs],
                                pauseSeconds: 0, maxFailures: 0, rollbackOnHalt: false, waveTimeout: 60, missionTimeout: 300,
                                createdAt: 0)
        #expect(throws: OversizedMission.self) { try RolloutStart.checkSharedEnvelopes(plan, enrolled: []) }
    }

    @Test func theSamePlanPassesWhenItsMembersAreEnrolledOrItsWindowIsSmall() throws {
        var plan = Rollout.Plan(id: "rollout-test", branch: "main", commit: String(repeating: "a", count: 40), waves: [Self.longIDs],
                                pauseSeconds: 0, maxFailures: 0, rollbackOnHalt: false, waveTimeout: 60, missionTimeout: 300,
                                createdAt: 0)
        try RolloutStart.checkSharedEnvelopes(plan, enrolled: Set(Self.longIDs))
        plan.maxInFlight = 500
        try RolloutStart.checkSharedEnvelopes(plan, enrolled: [])
    }
}
