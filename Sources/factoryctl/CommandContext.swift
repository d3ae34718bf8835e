import ArgumentParser
import FactoryKit
import FoundationEssentials
import FactoryBasics
import Glibc
import Logging
import Synchronization

/// What a command runs with instead of the process's globals: its arguments, environment and
/// current directory, where its output goes, the clock, and whether it owns the process's
/// signals. The entry point makes one for the process (`process`); a test makes one that keeps
/// what was printed (`capturing`) and runs a command in-process with `Factoryctl.run(_:)`, as
/// swiftly's `runCommand` does.
struct CommandContext: Sendable {
    /// The arguments after the program name.
    let arguments: [String]
    let environment: FactoryEnvironment
    let currentDirectory: String
    let stdout: CommandOutput
    let stderr: CommandOutput
    let now: @Sendable () -> Date
    /// Whether stop signals install process-wide handlers (SIGTERM, SIGINT, ...): only for the process.
    let handlesSignals: Bool
    /// Whether stderr is the systemd journal (log lines carry priorities, no timestamps).
    let stderrIsJournal: Bool
    /// The `--json` contract's state for this run.
    let json: JSONOutput

    init(arguments: [String], environment: FactoryEnvironment, currentDirectory: String, stdout: CommandOutput,
         stderr: CommandOutput, now: @escaping @Sendable () -> Date = { Date() }, handlesSignals: Bool = false,
         stderrIsJournal: Bool = false) {
        self.arguments = arguments
        self.environment = environment
        self.currentDirectory = currentDirectory
        self.stdout = stdout
        self.stderr = stderr
        self.now = now
        self.handlesSignals = handlesSignals
        self.stderrIsJournal = stderrIsJournal
        json = JSONOutput(requested: JSONOutput.isRequested(arguments), stdout: stdout)
    }

    /// The real process: its environment, directory, stdout and stderr, signals and journal.
    static func process(arguments: [String]) -> CommandContext {
        let environment = FactoryEnvironment.current
        return CommandContext(arguments: arguments, environment: environment,
                              currentDirectory: FileManager.default.currentDirectoryPath,
                              stdout: .standardOutput, stderr: .standardError, handlesSignals: true,
                              stderrIsJournal: environment.stderrIsJournal)
    }

    /// For tests: output kept in memory, no signal handlers, the given environment.
    static func capturing(_ arguments: [String], environment: [String: String], currentDirectory: String = "/",
                          now: @escaping @Sendable () -> Date = { Date() }) -> CommandContext {
        CommandContext(arguments: arguments, environment: FactoryEnvironment(environment), currentDirectory: currentDirectory,
                       stdout: .buffer(), stderr: .buffer(), now: now)
    }

    // MARK: Output

    /// A line for humans on stdout.
    func say(_ line: String) {
        stdout.write(line + "\n")
    }

    /// Lines on stdout in one write (a 1,000-row table is one syscall, not a thousand).
    func sayAll(_ lines: [String]) {
        var text = ""
        text.reserveCapacity(lines.reduce(0) { $0 + $1.utf8.count + 1 })
        for line in lines {
            text += line
            text += "\n"
        }
        stdout.write(text)
    }

    /// One JSON object for scripts on stdout (see `JSONOutput`).
    func printJSON<T: Encodable>(_ value: T, exit: ExitStatus = .success, error: String? = nil) throws {
        try json.emit(value, exit: exit, error: error)
    }

    /// A whole JSON object already written (with the contract's keys), as it is; or the next
    /// piece of one written piece by piece (`FleetJSON.writeWaitDocument`).
    func printJSON(bytes: [UInt8]) {
        json.emit(bytes: bytes)
    }

    /// A logger on stderr at `level`; under systemd, when stderr is the journal, with `<N>`
    /// priority prefixes and no timestamp of our own (JournalLogHandler).
    func logger(_ label: String, level: Logger.Level) -> Logger {
        let stderr = self.stderr
        let journal = stderrIsJournal
        var logger = Logger(label: label) { label -> any LogHandler in
            let inner: any LogHandler = if stderr.isProcessStream {
                journal ? JournalLogHandler(label: label) : StreamLogHandler.standardError(label: label)
            } else {
                CapturingLogHandler(label: label, stream: stderr)
            }
            return ProgressAwareLogHandler(inner, stream: stderr)
        }
        logger.logLevel = level
        return logger
    }

    /// A stop signal for this run; in the process, SIGTERM, SIGINT, SIGHUP and SIGQUIT (and
    /// SIGPIPE with `brokenPipe`) set it. A test's is set by nothing.
    func stopSignal(brokenPipe: Bool = false) -> StopSignal {
        let stop = StopSignal()
        if handlesSignals { stop.installHandlers(brokenPipe: brokenPipe) }
        return stop
    }

    /// `path` against this context's current directory, standardized.
    func absolutePath(_ path: String) -> String {
        let joined = path.hasPrefix("/") ? path : currentDirectory + "/" + path
        return URL(fileURLWithPath: joined).standardizedFileURL.path
    }
}

/// One of a command's two output streams: the process's stdout or stderr, or a buffer a test
/// reads. Carries the terminal's `\r`-redrawn progress line: whatever is logged next, and the
/// final error, first end it with a newline, so the two never share a line.
final class CommandOutput: Sendable {
    private let descriptor: Int32?
    private let captured = Mutex<[UInt8]>([])
    private let progressOpen = Mutex(false)
    let isTerminal: Bool

    private init(descriptor: Int32?, isTerminal: Bool) {
        self.descriptor = descriptor
        self.isTerminal = isTerminal
    }

    static let standardOutput = CommandOutput(descriptor: STDOUT_FILENO, isTerminal: isatty(STDOUT_FILENO) == 1)
    static let standardError = CommandOutput(descriptor: STDERR_FILENO, isTerminal: isatty(STDERR_FILENO) == 1)

    /// Keeps what is written, for `text`.
    static func buffer() -> CommandOutput { CommandOutput(descriptor: nil, isTerminal: false) }

    /// The process's own stdout or stderr (not a buffer).
    var isProcessStream: Bool { descriptor != nil }

    func write(_ text: String) {
        write(bytes: Array(text.utf8))
    }

    func write(bytes: [UInt8]) {
        switch descriptor {
        case STDOUT_FILENO?: StandardStream.output(bytes: bytes)
        case STDERR_FILENO?: StandardStream.error(String(decoding: bytes, as: UTF8.self))
        default: captured.withLock { $0.append(contentsOf: bytes) }
        }
    }

    /// Everything written to a buffer so far.
    var text: String { String(decoding: captured.withLock { $0 }, as: UTF8.self) }

    /// Redraws the progress line.
    func progress(_ text: String) {
        progressOpen.withLock { $0 = true }
        write("\r" + text)
    }

    /// Ends an open progress line; a no-op otherwise.
    func endProgress() {
        if progressOpen.withLock({ state in defer { state = false }; return state }) { write("\n") }
    }
}

/// Forwards to `inner` after ending an open progress line on `stream`.
struct ProgressAwareLogHandler: LogHandler {
    var inner: any LogHandler
    let stream: CommandOutput

    init(_ inner: any LogHandler, stream: CommandOutput) {
        self.inner = inner
        self.stream = stream
    }

    var logLevel: Logger.Level {
        get { inner.logLevel }
        set { inner.logLevel = newValue }
    }

    var metadata: Logger.Metadata {
        get { inner.metadata }
        set { inner.metadata = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { inner[metadataKey: key] }
        set { inner[metadataKey: key] = newValue }
    }

    func log(event: LogEvent) {
        stream.endProgress()
        inner.log(event: event)
    }
}

/// Log lines into a test's stderr buffer: `level label: message`.
struct CapturingLogHandler: LogHandler {
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]
    let label: String
    let stream: CommandOutput

    init(label: String, stream: CommandOutput) {
        self.label = label
        self.stream = stream
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        stream.write("\(event.level) \(label): \(event.message)\n")
    }
}

/// The JSON contract (docs/json.md): a `--json` command prints exactly one JSON object on
/// stdout, on success and on failure, and every object carries `schema_version`, `ok`,
/// `exit_code` (the process's exit status) and `error` (null on success).
final class JSONOutput: Sendable {
    static let schemaVersion: Int64 = 1
    /// `--json` among the arguments: also true when parsing failed, so a usage error is
    /// reported as an object too.
    let requested: Bool
    private let stdout: CommandOutput
    private let printed = Mutex(false)

    init(requested: Bool, stdout: CommandOutput) {
        self.requested = requested
        self.stdout = stdout
    }

    /// `--json` among `arguments` (before a `--`).
    static func isRequested(_ arguments: [String]) -> Bool {
        for argument in arguments {
            if argument == "--" { return false }
            if argument == "--json" { return true }
        }
        return false
    }

    var alreadyPrinted: Bool { printed.withLock { $0 } }

    /// `value`'s keys plus the contract's four.
    static func object<T: Encodable>(_ value: T, exit: ExitStatus, error: String?) throws -> JSONValue {
        var object = try JSONValue.from(value).object ?? [:]
        object["schema_version"] = .int(schemaVersion)
        object["ok"] = .bool(exit == .success || exit == .upToDate)
        object["exit_code"] = .int(Int64(exit.rawValue))
        if object["error"] == nil || object["error"] == .null {
            object["error"] = error.map(JSONValue.string) ?? .null
        }
        return .object(object)
    }

    func emit<T: Encodable>(_ value: T, exit: ExitStatus = .success, error: String? = nil) throws {
        let object = try Self.object(value, exit: exit, error: error)
        var data = try JSONEncoder.factory.encode(object)
        data.append(UInt8(ascii: "\n"))
        printed.withLock { $0 = true }
        stdout.write(bytes: Array(data))
    }

    func emit(bytes: [UInt8]) {
        printed.withLock { $0 = true }
        stdout.write(bytes: bytes)
    }

    /// The object for a failure that printed nothing else.
    func emitFailure(_ message: String, exit: Int32) {
        var object: [String: JSONValue] = [:]
        object["schema_version"] = .int(Self.schemaVersion)
        object["ok"] = .bool(false)
        object["exit_code"] = .int(Int64(exit))
        object["error"] = .string(message)
        guard var data = try? JSONEncoder.factory.encode(JSONValue.object(object)) else { return }
        data.append(UInt8(ascii: "\n"))
        printed.withLock { $0 = true }
        stdout.write(bytes: Array(data))
    }
}

/// A subcommand that runs with a context (every factoryctl command does).
protocol FactoryctlCommand: ParsableCommand {
    func run(_ context: CommandContext) throws
}

/// One that runs asynchronously (`serve`).
protocol AsyncFactoryctlCommand: ParsableCommand, Sendable {
    func run(_ context: CommandContext) async throws
}

/// A configuration value that is not valid (flag or environment) is a usage error (exit 64),
/// refused before anything runs; a failure already explained passes through.
func configured<T>(_ read: () throws -> T) throws(CommandFailure) -> T {
    do {
        return try read()
    } catch let failure as CommandFailure {
        throw failure
    } catch {
        throw CommandFailure(code: .usage, message: "\(error)")
    }
}

extension FactoryRole {
    /// The HEADQUARTERS rule as the commands apply it: refused is exit 8.
    func require(_ action: Action) throws(CommandFailure) {
        do { try authorize(action) } catch { throw CommandFailure(code: .refused, message: error.description) }
    }
}
