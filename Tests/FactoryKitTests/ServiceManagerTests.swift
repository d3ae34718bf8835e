import FactoryKit
import Foundation
import Logging
import Testing
import TestSupport

/// The restart check reads the unit's state until it is known instead of sleeping a fixed time.
@Suite struct ServiceManagerTests {
    func manager(_ world: GitWorld) -> ServiceManager {
        ServiceManager(runner: ProcessRunner(environment: world.environment), logger: Logger(label: "test"))
    }

    func shows(_ world: GitWorld, _ service: String) -> Int {
        FakeSystemctl.calls(world.systemctlState).filter { $0.hasPrefix("--user show") && $0.hasSuffix(" \(service)") }.count
    }

    @Test func unitThatReportsReadinessIsKnownAtOnce() throws {
        let world = try GitWorld()
        try world.write(world.systemctlState, "app.type", "notify\n")
        // A long settle window does not apply: systemd waited for READY=1 before restart returned.
        let failed = manager(world).restart(["app"], settle: 600)
        #expect(failed.isEmpty)
        #expect(shows(world, "app") == 1)
        #expect(!FakeSystemctl.calls(world.systemctlState).contains { $0.contains("is-active") })
    }

    @Test func simpleUnitIsWatchedForTheSettleWindow() throws {
        let world = try GitWorld()
        let failed = manager(world).restart(["app"], settle: 0.3)
        #expect(failed.isEmpty)
        // Polled while the window ran, not slept through.
        #expect(shows(world, "app") >= 2)
    }

    @Test func crashDuringTheWindowIsCaughtWhenItHappens() throws {
        let world = try GitWorld()
        let stateFile = world.systemctlState + "/app.state"
        // The service "crashes" shortly after the restart; the watch must see it and not report it up.
        let crash = Thread {
            Thread.sleep(forTimeInterval: 0.3)
            try? "failed\n".write(toFile: stateFile, atomically: true, encoding: .utf8)
        }
        crash.start()
        let failed = manager(world).restart(["app"], settle: 600)
        #expect(failed == ["app"])
    }

    @Test func restartedAgainDuringTheWindowRestartsTheWatch() throws {
        let world = try GitWorld()
        // A second start (systemd's Restart= after a crash) changes MainPID: the window starts over,
        // and the service is still reported up only after a full window of the new run.
        let log = world.systemctlState + "/calls.log"
        let restartAgain = Thread {
            Thread.sleep(forTimeInterval: 0.1)
            if let handle = FileHandle(forWritingAtPath: log) {
                handle.seekToEndOfFile()
                handle.write(Data("--user start app\n".utf8))
                try? handle.close()
            }
        }
        restartAgain.start()
        let messages = Messages()
        let manager = ServiceManager(runner: ProcessRunner(environment: world.environment),
                                     logger: Logger(label: "test") { _ in CollectingHandler(messages: messages) })
        let failed = manager.restart(["app"], settle: 0.5)
        #expect(failed.isEmpty)
        // The new run was noticed (the window restarted), not slept through.
        #expect(messages.all.contains("app restarted again while being watched"), "\(messages.all)")
    }

    @Test func unitLeftFailedByTheRestartIsReportedAtOnce() throws {
        let world = try GitWorld()
        _ = FileManager.default.createFile(atPath: world.systemctlState + "/app.fail-next-restart", contents: nil)
        let failed = manager(world).restart(["app"], settle: 600)
        #expect(failed == ["app"])
    }
}

final class Messages: @unchecked Sendable {
    private let lock = NSLock()
    private var messages: [String] = []
    var all: [String] { lock.withLock { messages } }
    func append(_ message: String) { lock.withLock { messages.append(message) } }
}

struct CollectingHandler: LogHandler {
    let messages: Messages
    var logLevel: Logger.Level = .trace
    var metadata: Logger.Metadata = [:]
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String,
             file: String, function: String, line: UInt) {
        messages.append("\(message)")
    }
}
