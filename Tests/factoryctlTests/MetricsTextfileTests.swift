import FactoryKit
import Foundation
import Testing
import TestSupport

/// `UA_FACTORY_METRICS_FILE`: the node_exporter textfile a factory writes after each update.
@Suite struct MetricsTextfileTests {
    @Test func anUpdateWritesAPromtoolCleanTextfile() throws {
        let world = try GitWorld()
        try world.pushUpstream(["app.py": "print('v2')\n"], message: "Ship v2")
        let metricsDirectory = world.directory.join("textfile")
        try FileManager.default.createDirectory(atPath: metricsDirectory, withIntermediateDirectories: true)
        let path = metricsDirectory + "/factoryctl.prom"
        var environment = world.environment
        environment["UA_FACTORY_METRICS_FILE"] = path
        let result = try FactoryctlBinary.run(["update", "--no-sync"], factoryDir: world.factory, environment: environment)
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        let check = try Command.run(["promtool", "check", "metrics"], input: text)
        let head = try world.head(world.factory)
        let files = try FileManager.default.contentsOfDirectory(atPath: metricsDirectory)
        #expect(result.status == 0 && check.status == 0
                && text.contains(#"factoryctl_factory_updates_total{result="success"} 1"#)
                && text.contains(#"factoryctl_factory_commit_info{commit="\#(head)",branch="main"} 1"#)
                && text.contains("factoryctl_factory_provisional 0")
                && files == ["factoryctl.prom"],
                "update: \(result.stderr)\npromtool: \(check.stdout)\(check.stderr)\n\(text)")
    }

    @Test func aFailedUpdateIsCountedAndTheSuccessBeforeItKept() throws {
        let world = try GitWorld()
        let path = world.directory.join("factoryctl.prom")
        var environment = world.environment
        environment["UA_FACTORY_METRICS_FILE"] = path
        try world.pushUpstream(["app.py": "print('v2')\n"], message: "Ship v2")
        _ = try FactoryctlBinary.run(["update", "--no-sync"], factoryDir: world.factory, environment: environment)
        try world.git(["remote", "set-url", "origin", "/nonexistent/origin.git"], in: world.factory)
        let failed = try FactoryctlBinary.run(["update", "--no-sync"], factoryDir: world.factory, environment: environment)
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        #expect(failed.status == 5 && text.contains(#"factoryctl_factory_updates_total{result="failed"} 1"#)
                && text.contains(#"factoryctl_factory_updates_total{result="success"} 1"#)
                && text.contains("factoryctl_factory_last_successful_update_timestamp_seconds"), "\(text)")
    }

    @Test func aRelativeOrNonPromPathIsAConfigurationError() throws {
        let world = try GitWorld()
        var environment = world.environment
        environment["UA_FACTORY_METRICS_FILE"] = "metrics.txt"
        let result = try FactoryctlBinary.run(["update", "--no-sync"], factoryDir: world.factory, environment: environment)
        #expect(result.status == 64 && result.stderr.contains("UA_FACTORY_METRICS_FILE must be an absolute path ending in .prom"), "\(result.stderr)")
    }
}
