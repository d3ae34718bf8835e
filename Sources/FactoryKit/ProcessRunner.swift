import Foundation

/// The result of one child process.
public struct ProcessResult: Sendable {
    public let argv: [String]
    public let exitCode: Int32
    public let timedOut: Bool
    /// The last part of stdout+stderr, for error messages.
    public let outputTail: String
    public let duration: Double

    public var succeeded: Bool { exitCode == 0 && !timedOut }

    /// "uv sync exited with 1: <last line>".
    public var failureSummary: String {
        let command = argv.joined(separator: " ")
        let last = outputTail.split(separator: "\n").suffix(3).joined(separator: " | ")
        let what = timedOut ? "timed out after \(Int(duration)) s" : "exited with \(exitCode)"
        return last.isEmpty ? "\(command) \(what)" : "\(command) \(what): \(last)"
    }
}

public enum ProcessRunnerError: Error, CustomStringConvertible, Sendable {
    case notFound(String, searched: [String])
    case launchFailed(String, String)

    public var description: String {
        switch self {
        case .notFound(let name, let searched):
            "\(name) not found (searched \(searched.joined(separator: ":")))"
        case .launchFailed(let name, let why): "could not start \(name): \(why)"
        }
    }
}

/// Spawns programs with an argv (never a shell), an explicit environment and a timeout.
public struct ProcessRunner: Sendable {
    public var environment: [String: String]

    public init(environment: [String: String]) {
        self.environment = environment
    }

    /// Directories searched for a bare program name: `PATH`, then where uv and friends usually live,
    /// since `systemd --user` starts services with a minimal PATH.
    public var searchPath: [String] {
        let home = environment["HOME"] ?? NSHomeDirectory()
        let path = (environment["PATH"] ?? "").split(separator: ":").map(String.init)
        var seen = Set<String>()
        return (path + ["\(home)/.local/bin", "\(home)/.cargo/bin", "/usr/local/bin", "/usr/bin", "/bin"])
            .filter { !$0.isEmpty && seen.insert($0).inserted }
    }

    public func resolve(_ program: String) throws -> String {
        if program.contains("/") { return program }
        for directory in searchPath {
            let candidate = directory + "/" + program
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw ProcessRunnerError.notFound(program, searched: searchPath)
    }

    /// Runs `argv` in `directory` and waits up to `timeout` seconds (then SIGTERM, then SIGKILL).
    public func run(_ argv: [String], in directory: String? = nil, timeout: Double = 600) throws -> ProcessResult {
        precondition(!argv.isEmpty, "empty argv")
        let executable = try resolve(argv[0])
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = Array(argv.dropFirst())
        process.environment = environment
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        process.standardInput = FileHandle.nullDevice

        let output = OutputTail()
        let finished = DispatchSemaphore(value: 0)
        let drained = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in finished.signal() }

        let start = Date()
        do {
            try process.run()
        } catch {
            throw ProcessRunnerError.launchFailed(argv[0], error.localizedDescription)
        }
        let reader = pipe.fileHandleForReading
        Thread.detachNewThread {
            while true {
                let chunk = reader.availableData
                if chunk.isEmpty { break }
                output.append(chunk)
            }
            drained.signal()
        }

        var timedOut = false
        if finished.wait(timeout: .now() + timeout) == .timedOut {
            timedOut = true
            process.terminate()
            if finished.wait(timeout: .now() + 5) == .timedOut {
                kill(process.processIdentifier, SIGKILL)
                finished.wait()
            }
        }
        // Grandchildren may keep the pipe open; don't wait for them forever.
        _ = drained.wait(timeout: .now() + 2)
        return ProcessResult(
            argv: argv, exitCode: process.terminationStatus, timedOut: timedOut,
            outputTail: output.text, duration: Date().timeIntervalSince(start))
    }
}

/// Keeps the last 8 KiB of a child's output.
final class OutputTail: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()
    private let limit = 8192

    func append(_ chunk: Data) {
        lock.lock()
        defer { lock.unlock() }
        data.append(chunk)
        if data.count > limit { data = data.suffix(limit) }
    }

    var text: String {
        lock.lock()
        defer { lock.unlock() }
        return String(decoding: data, as: UTF8.self)
    }
}
