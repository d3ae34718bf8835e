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

    /// Runs `change` on a thread of its own once the watch has read the restarted unit's state
    /// (its first `show` after the restart): "during the window", whatever the machine's speed.
    func duringTheWindow(_ world: GitWorld, _ service: String, _ change: @escaping @Sendable () -> Void) -> Thread {
        let thread = Thread {
            guard eventually(timeout: 60, { shows(world, service) >= 1 }) else { return }
            change()
        }
        thread.start()
        return thread
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
        // The service "crashes" once the watch has seen it up; the watch must see the crash and
        // not report it up, long before its 600 s window would have ended.
        _ = duringTheWindow(world, "app") {
            try? "failed\n".write(toFile: stateFile, atomically: true, encoding: .utf8)
        }
        let started = Date()
        let failed = manager(world).restart(["app"], settle: 600)
        #expect(failed == ["app"])
        #expect(Date().timeIntervalSince(started) < 60, "caught when it happened, not at the end of the window")
    }

    @Test func restartedAgainDuringTheWindowRestartsTheWatch() throws {
        let world = try GitWorld()
        // A second start (systemd's Restart= after a crash) changes MainPID: the window starts over,
        // and the service is still reported up only after a full window of the new run.
        let log = world.systemctlState + "/calls.log"
        let restartedAt = Messages()
        _ = duringTheWindow(world, "app") {
            if let handle = FileHandle(forWritingAtPath: log) {
                handle.seekToEndOfFile()
                handle.write(Data("--user start app\n".utf8))
                try? handle.close()
            }
            restartedAt.append("\(Date().timeIntervalSince1970)")
        }
        let messages = Messages()
        let manager = ServiceManager(runner: ProcessRunner(environment: world.environment),
                                     logger: Logger(label: "test") { _ in CollectingHandler(messages: messages) })
        let settle = 2.0
        let failed = manager.restart(["app"], settle: settle)
        #expect(failed.isEmpty)
        // The new run was noticed (the window restarted), not slept through.
        #expect(messages.all.contains("app restarted again while being watched"), "\(messages.all)")
        // And reported up only after a full window of the new run.
        let second = try #require(restartedAt.all.first.flatMap(Double.init))
        #expect(Date().timeIntervalSince1970 - second >= settle, "a full window after the second start")
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
