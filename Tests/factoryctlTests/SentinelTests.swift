import Foundation
import Testing
import TestSupport

/// Redis high availability: a primary, a replica and three real Sentinels (`redis-server
/// --sentinel`) on loopback; factoryctl reaches them through `redis-sentinel://…#factory`.
@Suite struct SentinelTests {
    /// The servers, each a process stopped by its pid (SIGKILL: throwaway data).
    final class Cluster {
        let directory = TemporaryDirectory("factoryctl-sentinel")
        var processes: [String: ConsumerProcess] = [:]
        let primaryPort = freeLoopbackPort(), replicaPort = freeLoopbackPort()
        let sentinelPorts = [freeLoopbackPort(), freeLoopbackPort(), freeLoopbackPort()]

        var url: String { "redis-sentinel://" + sentinelPorts.map { "127.0.0.1:\($0)" }.joined(separator: ",") + "/0#factory" }

        init() throws {
            try server("primary", ["--port", String(primaryPort), "--repl-diskless-sync-delay", "0"])
            try server("replica", ["--port", String(replicaPort), "--replicaof", "127.0.0.1", String(primaryPort)])
            for (index, port) in sentinelPorts.enumerated() {
                let config = directory.join("sentinel-\(index).conf")
                try """
                    port \(port)
                    bind 127.0.0.1
                    sentinel monitor factory 127.0.0.1 \(primaryPort) 2
                    sentinel down-after-milliseconds factory 1000
                    sentinel failover-timeout factory 10000

                    """.write(toFile: config, atomically: true, encoding: .utf8)
                try process("sentinel-\(index)", [config, "--sentinel", "--dir", directory.path, "--logfile", directory.join("sentinel-\(index).log")])
            }
            guard eventually(timeout: 30, { (try? self.cli(self.primaryPort, ["INFO", "replication"]))?.contains("state=online") == true
                      && self.sentinelPorts.allSatisfy { (try? self.cli($0, ["SENTINEL", "replicas", "factory"]))?.contains(String(self.replicaPort)) == true } }) else {
                throw Failure("the primary, replica and Sentinels did not come up")
            }
        }

        private func server(_ name: String, _ arguments: [String]) throws {
            let own = directory.join(name)
            try FileManager.default.createDirectory(atPath: own, withIntermediateDirectories: true)
            try process(name, ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", own,
                               "--logfile", directory.join("\(name).log")] + arguments)
        }

        private func process(_ name: String, _ arguments: [String]) throws {
            processes[name] = try ConsumerProcess(binary: "/usr/bin/redis-server", arguments: arguments,
                                                  environment: ProcessInfo.processInfo.environment, log: directory.join("\(name).out"))
        }

        func cli(_ port: Int, _ arguments: [String]) throws -> String {
            try Command.check(["redis-cli", "-h", "127.0.0.1", "-p", String(port)] + arguments)
        }

        func kill(_ name: String) {
            processes[name]?.signal(SIGKILL)
        }

        deinit {
            for process in processes.values { process.signal(SIGKILL) }
        }
    }

    struct Failure: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    @Test func aMissionPublishedJustBeforeThePrimaryDiesRunsAfterTheFailoverAndStatusWorksThroughTheSentinels() throws {
        let cluster = try Cluster()
        let fleet = try FleetWorld(factories: ["s-1"])
        var env = fleet.environment
        env["UA_REDIS_URL"] = cluster.url
        let consumer = try ConsumerProcess(binary: FactoryctlBinary.path, factoryID: "s-1", factoryDirectory: fleet.world.factory,
                                           redisURL: cluster.url, environment: env,
                                           extraArguments: ["--min-interval", "0", "--heartbeat", "1"], log: fleet.world.directory.join("consume.log"))
        defer { _ = consumer.stop() }
        let registered = eventually(timeout: 30) {
            (try? FactoryctlBinary.run(["status", "--fleet", "--json"], environment: env))?.stdout.contains("\"s-1\"") == true
        }
        let target = try fleet.world.pushUpstream(["app.py": "print('v2')\n"], message: "Ship v2")
        // ROLE (what publish asks) lists a replica only once its first sync is done.
        let replicated = eventually(timeout: 30) { (try? cluster.cli(cluster.primaryPort, ["INFO", "replication"]))?.contains("state=online") == true }
        // The consumer is frozen in its blocked read: it sees the mission only after the failover.
        consumer.signal(SIGSTOP)
        let published = try FactoryctlBinary.run(["publish", "update", "--json", "--log-level", "debug"], environment: env)
        let acked = (try? published.json())?["replicas_acked"] as? Int
        // The primary dies right after HQ said "published": the replica that confirmed it takes over.
        cluster.kill("primary")
        consumer.signal(SIGCONT)
        let updated = eventually(timeout: 60) { (try? fleet.world.head(fleet.world.factory)) == target }
        // Once the Sentinels have promoted the replica, HQ's views work through them again.
        var status = try FactoryctlBinary.run(["status", "--fleet"], environment: env)
        let failedOver = eventually(timeout: 60) {
            status = (try? FactoryctlBinary.run(["status", "--fleet"], environment: env)) ?? status
            return status.status == 0 && status.stdout.contains("s-1")
        }
        #expect(registered && replicated && published.status == 0 && acked == 1 && updated && failedOver,
                "published: \(published.stdout) \(published.stderr.suffix(1500)) status: \(status.stdout) \(status.stderr) consumer: \(consumer.output.suffix(3000))")
    }
}
