import FactoryKit
import Foundation
import Testing
import TestSupport

/// Pinned update missions end to end: publish --commit, a real consumer, real redis-server.
@Suite struct PinnedMissionTests {
    func result(_ fleet: FleetWorld, _ job: String) throws -> [String: Any]? {
        #expect(eventually { (try? fleet.results(job).count) == 1 })
        return try fleet.results(job).first
    }

    @Test func everyFactoryMovesToThePinnedCommitAndOlderCodeNeedsAllowRewind() throws {
        let fleet = try FleetWorld()
        let supervisor = Supervisor()
        defer { supervisor.stopAll() }
        try supervisor.supervise("f-1") { try fleet.consumer("f-1", ["--no-sync"]) }
        #expect(try fleet.waitUntilRegistered("f-1"))
        let two = try fleet.world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        let three = try fleet.world.pushUpstream(["app.py": "print('v3')\n"], message: "v3")

        // Pinned to v2 while origin is already at v3.
        let pinned = try FactoryctlBinary.run(["publish", "update", "--commit", two, "--json", "--log-level", "error"],
                                              environment: fleet.environment)
        let outcome = JSONDoc.object(pinned, exit: 0)
        #expect(outcome["commit"] as? String == two)
        let job = outcome["job_id"] as? String ?? ""
        let first = try result(fleet, job)
        #expect(first?["status"] as? String == "SUCCESS", "\(first ?? [:])")
        let inner = first?["result"] as? [String: Any]
        #expect(inner?["pinned"] as? String == two && inner?["to"] as? String == two)
        #expect(try eventually { (try? fleet.registration("f-1"))?["commit"] as? String == two })
        #expect(try fleet.world.head(fleet.world.factory) == two)

        // Forward to v3, then an older pin is refused: nothing changes, the result says why.
        let forward = try fleet.publish(["update", "--commit", three])
        #expect(try result(fleet, forward)?["status"] as? String == "SUCCESS")
        #expect(try eventually { (try? fleet.registration("f-1"))?["commit"] as? String == three })
        let back = try fleet.publish(["update", "--commit", two])
        let refused = try result(fleet, back)
        #expect(refused?["status"] as? String == "FAILED")
        #expect((refused?["result"] as? [String: Any])?["failure"] as? String == "rewind_refused", "\(refused ?? [:])")
        #expect(try fleet.world.head(fleet.world.factory) == three)

        // A deliberate fleet rollback.
        let rollback = try fleet.publish(["update", "--commit", two, "--allow-rewind"])
        let rolled = try result(fleet, rollback)
        #expect(rolled?["status"] as? String == "SUCCESS", "\(rolled ?? [:])")
        #expect((rolled?["result"] as? [String: Any])?["integration"] as? String == "rewind")
        #expect(try eventually { (try? fleet.registration("f-1"))?["commit"] as? String == two })

        // The same commit again: changed false at once, and the consumer keeps running.
        let same = try fleet.publish(["update", "--commit", two])
        let deduped = try result(fleet, same)
        #expect((deduped?["result"] as? [String: Any])?["changed"] as? Bool == false)
        #expect(((deduped?["result"] as? [String: Any])?["steps_ms"] as? [String: Any])?["fetch"] == nil)
    }

    @Test func aCommitNotOnTheBranchFailsTheMissionAndPublishValidatesTheID() throws {
        let fleet = try FleetWorld()
        let consumer = try fleet.consumer("f-1", ["--no-sync"])
        defer { consumer.stop() }
        #expect(try fleet.waitUntilRegistered("f-1"))
        let before = try fleet.world.head(fleet.world.factory)
        let side = try fleet.world.pushUpstream(["side.py": "x = 1\n"], message: "side", branch: "side")
        let job = try fleet.publish(["update", "--commit", side])
        let failed = try result(fleet, job)
        #expect((failed?["result"] as? [String: Any])?["failure"] as? String == "commit_not_on_branch", "\(failed ?? [:])")
        #expect(try fleet.world.head(fleet.world.factory) == before)
        #expect(consumer.status == nil, "nothing changed: it keeps consuming")
        for bad in ["abc123", String(repeating: "G", count: 40), String(repeating: "A", count: 40)] {
            #expect(try FactoryctlBinary.run(["publish", "update", "--commit", bad], environment: fleet.environment).status == 64)
        }
        #expect(try FactoryctlBinary.run(["publish", "update", "--allow-rewind"],
                                         environment: fleet.environment).status == 64, "a rollback names its commit")
    }

    @Test func publishPinsTheBranchTipItReadsFromTheRepository() throws {
        let fleet = try FleetWorld()
        let consumer = try fleet.consumer("f-1", ["--no-sync"])
        defer { consumer.signal(SIGCONT); consumer.stop() }
        #expect(try fleet.waitUntilRegistered("f-1"))
        consumer.signal(SIGSTOP) // it takes the mission only after origin has moved on
        let two = try fleet.world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        var hq = fleet.environment
        hq["UA_FACTORY_REPO_URL"] = fleet.world.origin
        let pinned = JSONDoc.object(try FactoryctlBinary.run(["publish", "update", "--target", "f-1", "--json"], environment: hq), exit: 0)
        #expect(pinned["commit"] as? String == two)
        try fleet.world.pushUpstream(["app.py": "print('v3')\n"], message: "v3")
        consumer.signal(SIGCONT)
        let job = pinned["job_id"] as? String ?? ""
        #expect(eventually { (try? fleet.results(job).first?["status"] as? String) == "SUCCESS" })
        #expect(try fleet.world.head(fleet.world.factory) == two)
        // --no-pin leaves it to each factory; a branch the repository lacks is refused.
        let unpinned = JSONDoc.object(try FactoryctlBinary.run(["publish", "update", "--target", "f-1", "--no-pin", "--force", "--json"],
                                                               environment: hq), exit: 0)
        #expect(unpinned["commit"] is NSNull)
        let missing = try FactoryctlBinary.run(["publish", "update", "--branch", "nope", "--target", "f-1", "--force"], environment: hq)
        #expect(missing.status == 1 && missing.stderr.contains("has no branch 'nope'"), "\(missing.stderr)")
    }

    @Test(arguments: ["http", "ssh"])
    func aRepositoryThatNeverAnswersEndsThePublishWithNothingWritten(scheme: String) throws {
        let fleet = try FleetWorld()
        let silent = try SilentServer()
        var hq = fleet.environment
        hq["FACTORYCTL_FETCH_TIMEOUT"] = "1"
        let result = try FactoryctlBinary.run(["publish", "update", "--allow-unregistered", "--target", "f-1",
                                               "--repo", "\(scheme)://git@127.0.0.1:\(silent.port)/factory.git"],
                                              environment: hq)
        #expect(result.status == 5, "\(result.stderr)")
        #expect(result.stderr.contains("nothing was published"), "\(result.stderr)")
        #expect(try fleet.redis.cli(["EXISTS", "ua:missions:delegation"]) == "0")
    }
}
