import Foundation
import Testing
import TestSupport

@Suite struct SystemdUnitTests {
    /// `systemd-analyze verify` on the shipped unit, with ExecStart pointed at the built binary;
    /// any warning is a failure. Skipped only where systemd-analyze is not installed.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/systemd-analyze")),
          arguments: [("factoryctl-consume.service", "Restart=always"), ("factoryctl-serve.service", "Restart=on-failure")])
    func unitPassesSystemdAnalyzeVerify(name: String, restart: String) throws {
        let directory = TemporaryDirectory()
        let runtime = directory.join("runtime")
        try FileManager.default.createDirectory(atPath: runtime, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let unit = try String(contentsOfFile: Package.root + "/deploy/" + name, encoding: .utf8)
        #expect(unit.contains(restart))
        #expect(unit.contains("ExecStart=/usr/local/bin/factoryctl "))
        let path = directory.join(name)
        try unit.replacingOccurrences(of: "/usr/local/bin/factoryctl", with: FactoryctlBinary.path)
            .write(toFile: path, atomically: true, encoding: .utf8)
        var environment = ProcessInfo.processInfo.environment
        environment["XDG_RUNTIME_DIR"] = runtime
        let result = try Command.run(["systemd-analyze", "--user", "--man=no", "verify", path], environment: environment)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stderr.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "warnings: \(result.stderr)")
    }

    @Test func unitsRequireTheirEnvironmentFileAndDoNotRestartOnUsageOrBindErrors() throws {
        for (name, file) in [("factoryctl-consume.service", "env"), ("factoryctl-serve.service", "serve.env")] {
            let unit = try String(contentsOfFile: Package.root + "/deploy/" + name, encoding: .utf8)
            #expect(unit.contains("\nEnvironmentFile=%h/.config/factoryctl/\(file)\n"), "\(name): required, without '-'")
        }
        let serve = try String(contentsOfFile: Package.root + "/deploy/factoryctl-serve.service", encoding: .utf8)
        #expect(serve.contains("\nRestartPreventExitStatus=64 12\n"))
    }
}
