import Foundation

/// The package root and the built `factoryctl` binary next to the test bundle.
public enum Package {
    public static let root: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() } // Tests/TestSupport/Binary.swift
        return url.path
    }()

    /// `FACTORYCTL_BIN`, else `factoryctl` in the directory of the running test bundle.
    public static let factoryctl: String = {
        if let path = ProcessInfo.processInfo.environment["FACTORYCTL_BIN"] { return path }
        let runner = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var directory = runner.deletingLastPathComponent()
        // On Linux the runner is `<bin>/factoryctlPackageTests.xctest`; elsewhere it sits deeper in a bundle.
        while directory.path != "/" {
            let candidate = directory.appendingPathComponent("factoryctl").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            directory.deleteLastPathComponent()
        }
        return root + "/.build/debug/factoryctl"
    }()
}
