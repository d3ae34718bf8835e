import Foundation
import Testing
import TestSupport

/// `factoryctl rollback` on a factory and as a `system:rollback_factory` mission.
@Suite struct RollbackTests {
    @Test func rollbackGoesBackOneSuccessfulUpdateAtATimeThroughThePipeline() throws {
        let world = try GitWorld()
        let one = try world.head(world.factory)
        let two = try world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        #expect(try FactoryctlBinary.run(["update", "--no-sync"], factoryDir: world.factory, environment: world.environment).status == 0)
        let three = try world.pushUpstream(["app.py": "print('v3')\n"], message: "v3")
        #expect(try FactoryctlBinary.run(["update", "--no-sync"], factoryDir: world.factory, environment: world.environment).status == 0)
        #expect(try world.head(world.factory) == three)
        let protected = world.protectedSnapshot()

        let back = try FactoryctlBinary.run(["rollback", "--no-sync", "--settle", "0", "--json"],
                                            factoryDir: world.factory, environment: world.environment)
        #expect(back.status == 0, "\(back.stdout) \(back.stderr)")
        #expect(back.stdout.contains("\"integration\":\"rewind\""))
        #expect(try world.head(world.factory) == two)
        #expect(FakeSystemctl.calls(world.systemctlState).contains("--user restart universal-agent-local-factory"), "restarted")
        #expect(world.protectedSnapshot() == protected)
        // Again: further back, not a flip to v3.
        #expect(try FactoryctlBinary.run(["rollback", "--no-sync", "--no-restart"],
                                         factoryDir: world.factory, environment: world.environment).status == 0)
        #expect(try world.head(world.factory) == one)
        // Nothing recorded before v1.
        let none = try FactoryctlBinary.run(["rollback", "--no-sync", "--no-restart"],
                                            factoryDir: world.factory, environment: world.environment)
        #expect(none.status == 1 && none.stderr.contains("nothing to roll back to"), "\(none.stderr)")
        // An explicit commit.
        #expect(try FactoryctlBinary.run(["rollback", "--no-sync", "--no-restart", "--to", three],
                                         factoryDir: world.factory, environment: world.environment).status == 0)
        #expect(try world.head(world.factory) == three)
    }

    @Test func hqRollsAFactoryBackWithAMission() throws {
        let fleet = try FleetWorld()
        let supervisor = Supervisor()
        defer { supervisor.stopAll() }
        try supervisor.supervise("f-1") { try fleet.consumer("f-1", ["--no-sync"]) }
        #expect(try fleet.waitUntilRegistered("f-1"))
        let one = try fleet.world.head(fleet.world.factory)
        let two = try fleet.world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        let update = try fleet.publish(["update", "--target", "f-1"])
        #expect(eventually { (try? fleet.results(update).first?["status"] as? String) == "SUCCESS" })
        #expect(try eventually { (try? fleet.registration("f-1"))?["commit"] as? String == two })

        let rollback = try fleet.publish(["rollback", "--target", "f-1"])
        #expect(rollback.hasPrefix("rollback-"))
        #expect(eventually { (try? fleet.results(rollback).first?["status"] as? String) == "SUCCESS" })
        let result = try fleet.results(rollback).first?["result"] as? [String: Any]
        #expect(result?["mission_kind"] as? String == "system:rollback_factory")
        #expect(result?["to"] as? String == one && result?["integration"] as? String == "rewind", "\(result ?? [:])")
        #expect(try eventually { (try? fleet.registration("f-1"))?["commit"] as? String == one })

        // Nothing further back: the mission fails and says why; the factory keeps running.
        let again = try fleet.publish(["rollback", "--target", "f-1"])
        #expect(eventually { (try? fleet.results(again).count) == 1 })
        let failed = try fleet.results(again).first
        #expect(failed?["status"] as? String == "FAILED")
        #expect((failed?["result"] as? [String: Any])?["failure"] as? String == "nothing_to_roll_back", "\(failed ?? [:])")
        #expect(try fleet.world.head(fleet.world.factory) == one)
    }
}
