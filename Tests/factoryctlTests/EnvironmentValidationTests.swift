import Foundation
import Testing
import TestSupport

/// Environment values every command reads are parsed in one place and refused the same way.
@Suite struct EnvironmentValidationTests {
    static let message = "FACTORYCTL_FETCH_TIMEOUT must be a number of seconds between 0 and 86400"

    @Test(arguments: ["soon", "0", "-5", "90000"])
    func serveAndPublishRefuseABadFetchTimeoutAsUpdateDoes(value: String) throws {
        let fleet = try FleetWorld()
        var env = fleet.environment
        env["FACTORYCTL_FETCH_TIMEOUT"] = value
        env["UA_OPS_TOKEN"] = "test-ops-token-0123"
        let update = try FactoryctlBinary.run(["update"], factoryDir: fleet.world.factory, environment: env)
        #expect(update.status == 64 && update.stderr.contains(Self.message), "\(update.stderr)")
        // publish, pinned to the tip or not, and a mission that never fetches: refused before Redis is written.
        env["UA_FACTORY_REPO_URL"] = fleet.world.origin
        for arguments in [["update", "--target", "f-1", "--allow-unregistered"], ["update", "--no-pin"], ["pause", "--target", "f-1"]] {
            let publish = try FactoryctlBinary.run(["publish"] + arguments, environment: env)
            #expect(publish.status == 64 && publish.stderr.contains(Self.message), "\(arguments): \(publish.stderr)")
        }
        #expect(try fleet.redis.cli(["EXISTS", "ua:missions:delegation"]) == "0", "nothing was published")
        // serve exits instead of listening with the default.
        let serve = try ConsumerProcess(binary: FactoryctlBinary.path, arguments: ["serve", "--port", "0", "--redis-url", fleet.redis.url],
                                        environment: env, log: fleet.world.directory.join("serve.log"))
        defer { serve.stop() }
        #expect(serve.waitForExit(timeout: 20) == 64, "\(serve.output)")
        #expect(serve.output.contains(Self.message) && !serve.output.contains("listening"), "\(serve.output)")
    }

    @Test func aBadRolloutLeaseIsRefusedBeforeARolloutStarts() throws {
        let fleet = try FleetWorld()
        var env = fleet.environment
        env["FACTORYCTL_ROLLOUT_LEASE_SECONDS"] = "0"
        let refused = try FactoryctlBinary.run(["publish", "resume-rollout", "rollout-000000000000"], environment: env)
        #expect(refused.status == 64 && refused.stderr.contains("FACTORYCTL_ROLLOUT_LEASE_SECONDS must be"), "\(refused.stderr)")
    }
}
