import CSupport
import FoundationEssentials
import Dispatch
import FactoryBasics
import Glibc
import Synchronization

/// The result of one child process.
public struct ProcessResult: Sendable {
    public let argv: [String]
    public let exitCode: Int32
    public let timedOut: Bool
    /// Ended early because the caller asked (`shouldStop`).
    public var stopped = false
    /// The last part of stdout+stderr, for error messages.
    public let outputTail: String
    public let duration: Double

    public var succeeded: Bool { exitCode == 0 && !timedOut && !stopped }

    /// "uv sync exited with 1: <last line>".
    public var failureSummary: String {
        let command = argv.joined(separator: " ")
        let last = outputTail.split(separator: "\n").suffix(3).joined(separator: " | ")
        let what = stopped ? "was stopped" : timedOut ? "timed out after \(Int(duration)) s" : "exited with \(exitCode)"
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
        let home = homeDirectory(environment: environment)
        let path = (environment["PATH"] ?? "").split(separator: ":").map(String.init)
        var seen = Set<String>()
        return (path + ["\(home)/.local/bin", "\(home)/.cargo/bin", "/usr/local/bin", "/usr/bin", "/bin"])
            .filter { !$0.isEmpty && seen.insert($0).inserted }
    }

    public func resolve(_ program: String) throws -> String {
        if program.contains("/") {
            guard FileManager.default.isExecutableFile(atPath: program) else {
                throw ProcessRunnerError.notFound(program, searched: [program.deletingLastPathComponent])
            }
            return program
        }
        for directory in searchPath {
            let candidate = directory + "/" + program
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw ProcessRunnerError.notFound(program, searched: searchPath)
    }

    /// Starts `argv` with posix_spawn in a process group of its own (its pid is the group id):
    /// stdin /dev/null, stdout (and stderr when `stderrToPipe`, else /dev/null) into a new pipe,
    /// default signal dispositions and an empty signal mask. Returns the pid and the pipe's read
    /// end, which the caller closes.
    func spawn(_ argv: [String], in directory: String? = nil, stderrToPipe: Bool) throws -> (pid: pid_t, output: Int32) {
        precondition(!argv.isEmpty, "empty argv")
        let executable = try resolve(argv[0])
        var pipeFDs: [Int32] = [-1, -1]
        guard pipe(&pipeFDs) == 0 else {
            throw ProcessRunnerError.launchFailed(argv[0], String(cString: strerror(errno)))
        }
        // Close-on-exec: other children spawned meanwhile must not hold this pipe open.
        for fd in pipeFDs { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        let (readEnd, writeEnd) = (pipeFDs[0], pipeFDs[1])

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, writeEnd, 1)
        if stderrToPipe {
            posix_spawn_file_actions_adddup2(&actions, writeEnd, 2)
        } else {
            posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        }
        if let directory { factoryctl_spawn_addchdir(&actions, directory) }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t(), allSignals = sigset_t()
        sigemptyset(&noSignals)
        sigfillset(&allSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        posix_spawnattr_setsigdefault(&attributes, &allSignals)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP))

        let arguments = argv.map { strdup($0) } + [nil]
        let environ = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            arguments.forEach { free($0) }
            environ.forEach { free($0) }
        }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, executable, &actions, &attributes, arguments, environ)
        close(writeEnd)
        guard spawned == 0 else {
            close(readEnd)
            throw ProcessRunnerError.launchFailed(argv[0], String(cString: strerror(spawned)))
        }
        return (pid, readEnd)
    }

    /// Runs `argv` in `directory` and waits up to `timeout` seconds (then SIGTERM, then SIGKILL).
    ///
    /// Spawned with posix_spawn: the child gets default signal dispositions and an empty signal
    /// mask, whatever the parent ignores or blocks (the consumer ignores SIGTERM itself), so a
    /// timeout's SIGTERM reaches it. It leads a process group of its own, and a timeout ends the
    /// whole group, so grandchildren (a build backend under `uv sync`) cannot outlive it.
    /// stdin is /dev/null; stdout and stderr share one pipe. `onSpawn` gets the child's pid (which
    /// is also its process group id) as soon as it runs.
    ///
    /// `shouldStop` is polled (five times a second) while the child runs: when it turns true, the
    /// group is ended as on a timeout and the result says `stopped`.
    public func run(_ argv: [String], in directory: String? = nil, timeout: Double = 600,
                    shouldStop: () -> Bool = { false },
                    onSpawn: (pid_t) -> Void = { _ in }) throws -> ProcessResult {
        let start = Date()
        let (spawnedPID, readEnd) = try spawn(argv, in: directory, stderrToPipe: true)

        let output = OutputTail()
        let drained = DispatchSemaphore(value: 0)
        detachThread {
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let count = read(readEnd, &buffer, buffer.count)
                if count > 0 { output.append(Data(buffer[0..<count])); continue }
                if count < 0 && errno == EINTR { continue }
                break
            }
            close(readEnd)
            drained.signal()
        }

        let pid = spawnedPID
        onSpawn(pid)
        let exit = ChildExit()
        let finished = DispatchSemaphore(value: 0)
        detachThread {
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            exit.set(status)
            finished.signal()
        }
        var timedOut = false
        var stopped = false
        let end = Monotonic.now + timeout
        while finished.wait(timeout: .now() + min(0.2, max(0, end - Monotonic.now))) == .timedOut {
            if shouldStop() { stopped = true } else if Monotonic.now < end { continue }
            timedOut = !stopped
            kill(-pid, SIGTERM)
            if finished.wait(timeout: .now() + 5) == .timedOut {
                kill(-pid, SIGKILL)
                finished.wait()
            }
            // Whatever of the group is still there (children that ignored SIGTERM) goes too.
            kill(-pid, SIGKILL)
            break
        }
        // Grandchildren may keep the pipe open; don't wait for them forever.
        _ = drained.wait(timeout: .now() + 2)
        return ProcessResult(
            argv: argv, exitCode: exit.exitCode, timedOut: timedOut, stopped: stopped,
            outputTail: output.text, duration: Date().timeIntervalSince(start))
    }
}

/// A child's wait status, handed from the waiting thread.
final class ChildExit: Sendable {
    private let status = Mutex<Int32>(0)

    func set(_ value: Int32) {
        status.withLock { $0 = value }
    }

    /// The exit code, or 128 + signal number for a killed child (as shells report it).
    var exitCode: Int32 {
        let status = status.withLock { $0 }
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal
    }
}

/// Keeps the last 8 KiB of a child's output.
final class OutputTail: Sendable {
    private let data = Mutex(Data())
    private let limit = 8192

    func append(_ chunk: Data) {
        data.withLock { data in
            data.append(chunk)
            if data.count > limit { data = data.suffix(limit) }
        }
    }

    var text: String {
        data.withLock { String(decoding: $0, as: UTF8.self) }
    }
}

/// Ends a process group a dead factoryctl left running (recorded in its intent record), after
/// checking that its leader is still the program that was started, so a reused pid is spared.
enum OrphanGroup {
    static func end(_ pgid: pid_t, program: String) -> Bool {
        guard pgid > 1, kill(-pgid, 0) == 0 else { return false }
        let cmdline = FileManager.default.contents(atPath: "/proc/\(pgid)/cmdline") ?? Data()
        // The program is argv[0], or argv[1] under an interpreter (a script's `#!`).
        let leading = cmdline.split(separator: 0).prefix(2).map { String(decoding: $0, as: UTF8.self).lastPathComponent }
        let name = program.lastPathComponent
        // The leader may already be gone while its group lives on; then the group id is unused
        // by anything else until every member has exited, so ending it is safe.
        guard leading.isEmpty || leading.contains(name) else { return false }
        kill(-pgid, SIGKILL)
        return true
    }
}
