import Foundation

/// A child process (`factoryctl consume`, `factoryctl serve`) with its output in a log file.
/// Stopped by pid (SIGTERM, then SIGKILL) when the test lets go.
public final class ConsumerProcess: @unchecked Sendable {
    public let log: String
    private let process = Process()
    private let exited = DispatchSemaphore(value: 0)
    private let lock = NSLock()
    private var exitCode: Int32?

    /// `factoryctl consume` for one factory, as systemd runs it.
    public convenience init(binary: String, factoryID: String, factoryDirectory: String, redisURL: String,
                            environment: [String: String], extraArguments: [String] = [], log: String) throws {
        try self.init(binary: binary, arguments: [
            "consume", "--factory-dir", factoryDirectory, "--redis-url", redisURL,
            "--factory-id", factoryID, "--settle", "0", "--log-level", "debug",
        ] + extraArguments, environment: environment, log: log)
    }

    public init(binary: String, arguments: [String], environment: [String: String], log: String) throws {
        self.log = log
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        process.environment = environment
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        handle.seekToEndOfFile()
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        process.terminationHandler = { [weak self] process in
            guard let self else { return }
            self.lock.lock()
            self.exitCode = process.terminationStatus
            self.lock.unlock()
            self.exited.signal()
        }
        try process.run()
    }

    deinit { stop() }

    public var pid: Int32 { process.processIdentifier }

    public var status: Int32? {
        lock.lock()
        defer { lock.unlock() }
        return exitCode
    }

    /// Waits for the process to exit on its own; nil on timeout.
    public func waitForExit(timeout: Double) -> Int32? {
        if let status { return status }
        guard exited.wait(timeout: .now() + timeout) == .success else { return nil }
        exited.signal()
        return status
    }

    public func signal(_ number: Int32) {
        if status == nil { kill(pid, number) }
    }

    /// SIGTERM, then SIGKILL after 15 s; returns the exit status.
    @discardableResult
    public func stop() -> Int32? {
        if let status { return status }
        signal(SIGTERM)
        if let status = waitForExit(timeout: 15) { return status }
        signal(SIGKILL)
        return waitForExit(timeout: 5)
    }

    public var output: String {
        (FileManager.default.contents(atPath: log)).map { String(decoding: $0, as: UTF8.self) } ?? ""
    }
}

/// Restarts consumers when they exit, as systemd's `Restart=always` does, until stopped.
public final class Supervisor: @unchecked Sendable {
    private let lock = NSLock()
    private var running = true
    private var current: [String: ConsumerProcess] = [:]
    private var exits: [String: [Int32]] = [:]
    private var threads: [Thread] = []
    /// Entered for each supervising thread, left when it ends.
    private let watching = DispatchGroup()

    public init() {}

    /// Supervises one consumer; `make` starts a fresh process.
    public func supervise(_ id: String, _ make: @escaping @Sendable () throws -> ConsumerProcess) throws {
        let first = try make()
        lock.lock(); current[id] = first; lock.unlock()
        let watching = self.watching
        watching.enter()
        let thread = Thread { [weak self] in
            defer { watching.leave() }
            var process = first
            while true {
                guard let status = process.waitForExit(timeout: 0.2) else {
                    if self?.isRunning != true { return }
                    continue
                }
                guard let self, self.isRunning else { return }
                self.lock.lock(); self.exits[id, default: []].append(status); self.lock.unlock()
                Thread.sleep(forTimeInterval: 0.2) // RestartSec
                guard self.isRunning, let next = try? make() else { return }
                self.lock.lock(); self.current[id] = next; self.lock.unlock()
                process = next
            }
        }
        threads.append(thread)
        thread.start()
    }

    var isRunning: Bool {
        lock.lock()
        defer { lock.unlock() }
        return running
    }

    public func exitCodes(_ id: String) -> [Int32] {
        lock.lock()
        defer { lock.unlock() }
        return exits[id] ?? []
    }

    public func process(_ id: String) -> ConsumerProcess? {
        lock.lock()
        defer { lock.unlock() }
        return current[id]
    }

    /// Stops supervising and stops every consumer by pid, then waits for the supervising threads
    /// to end (one may have been starting a consumer just then: that one is stopped too).
    public func stopAll() {
        lock.lock(); running = false; let processes = Array(current.values); lock.unlock()
        for process in processes { process.stop() }
        _ = watching.wait(timeout: .now() + 10)
        lock.lock(); let late = Array(current.values); lock.unlock()
        for process in late { process.stop() }
    }

    deinit { stopAll() }
}

/// Polls `condition` until it holds or `timeout` passes.
public func eventually(timeout: Double = 20, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try condition() { return true }
        Thread.sleep(forTimeInterval: 0.05)
    }
    return try condition()
}

/// Gone, or a zombie nobody reaped yet (a killed child is seen here before Foundation reaps it).
public func processEnded(_ pid: Int32) -> Bool {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return true }
    return stat.split(separator: ")").last?.split(separator: " ").first == "Z"
}
