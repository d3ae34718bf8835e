import ArgumentParser
import FactoryKit
import GitKit
import FoundationEssentials
import Dispatch
import FactoryBasics
import Glibc
import Logging
import Synchronization

/// Options every subcommand takes.
struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Log level for messages on stderr.", valueName: "level"))
    var logLevel: LogLevelArgument = .info

    @Flag(name: .shortAndLong, help: "Only errors on stderr (--log-level error).")
    var quiet = false

    @Flag(name: .shortAndLong, help: "Debug messages on stderr too (--log-level debug).")
    var verbose = false

    func validate() throws {
        if quiet && verbose { throw ValidationError("use --quiet or --verbose, not both") }
    }

    /// The level in effect: -q and -v win over --log-level.
    var level: Logger.Level {
        quiet ? .error : verbose ? .debug : logLevel.level
    }

    /// On stderr; under systemd, when stderr is the journal, with `<N>` priority prefixes and no
    /// timestamp of our own (JournalLogHandler).
    func logger(_ label: String) -> Logger {
        let journal = JournalLogHandler.stderrIsJournal(environment: ProcessInfo.processInfo.environment)
        var logger = Logger(label: label) { label -> any LogHandler in
            ProgressAwareLogHandler(journal ? JournalLogHandler(label: label) : StreamLogHandler.standardError(label: label))
        }
        logger.logLevel = level
        return logger
    }
}

/// The terminal's `\r`-redrawn progress line. Whatever is written to stderr next (a log line,
/// the final error) first ends it with a newline, so the two never share a line.
enum ProgressLine {
    private static let open = Mutex(false)

    static func write(_ text: String) {
        open.withLock { $0 = true }
        StandardStream.error("\r" + text)
    }

    /// Ends an open progress line; a no-op otherwise.
    static func end() {
        if open.withLock({ state in defer { state = false }; return state }) { StandardStream.error("\n") }
    }
}

/// Forwards to `inner` after ending an open progress line.
struct ProgressAwareLogHandler: LogHandler {
    var inner: any LogHandler

    init(_ inner: any LogHandler) { self.inner = inner }

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
        ProgressLine.end()
        inner.log(event: event)
    }
}

enum LogLevelArgument: String, ExpressibleByArgument, CaseIterable {
    case trace, debug, info, notice, warning, error, critical

    var level: Logger.Level { Logger.Level(rawValue: rawValue)! }
}

/// Where the checkout is: `--factory-dir`, else `UA_FACTORY_DIR`, else the current directory.
struct FactoryDirectoryOption: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp(
        "The factory's git checkout (env UA_FACTORY_DIR; default: the current directory; for update and status, the checkout it is in).",
        valueName: "path"), completion: .directory)
    var factoryDir: String?

    /// `searchUpward`: with neither option nor env, the checkout the current directory is in,
    /// like git (for an operator's `update`/`status`). The consumer passes false: a service
    /// started in a home directory that a dotfiles repository covers must not take that one.
    func resolve(_ environment: FactoryEnvironment, searchUpward: Bool) -> String {
        if let path = factoryDir ?? environment.factoryDirectory {
            return URL(fileURLWithPath: path).standardizedFileURL.path
        }
        let here = FileManager.default.currentDirectoryPath
        if searchUpward, let root = Repository.workTreeRoot(containing: here) { return root }
        return URL(fileURLWithPath: here).standardizedFileURL.path
    }
}

/// The JSON contract (docs/json.md): a `--json` command prints exactly one JSON object on
/// stdout, on success and on failure, and every object carries `schema_version`, `ok`,
/// `exit_code` (the process's exit status) and `error` (null on success).
enum JSONOutput {
    static let schemaVersion: Int64 = 1
    private static let printed = Mutex(false)

    /// `--json` among the arguments (before a `--`): also true when parsing failed, so a
    /// usage error is reported as an object too.
    static var requested: Bool {
        for argument in CommandLine.arguments.dropFirst() {
            if argument == "--" { return false }
            if argument == "--json" { return true }
        }
        return false
    }

    static var alreadyPrinted: Bool { printed.withLock { $0 } }

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

    static func emit<T: Encodable>(_ value: T, exit: ExitStatus = .success, error: String? = nil) throws {
        let object = try object(value, exit: exit, error: error)
        var data = try JSONEncoder.factory.encode(object)
        data.append(UInt8(ascii: "\n"))
        printed.withLock { $0 = true }
        StandardStream.output(bytes: Array(data))
    }

    /// The object for a failure that printed nothing else.
    static func emitFailure(_ message: String, exit: Int32) {
        var object: [String: JSONValue] = [:]
        object["schema_version"] = .int(schemaVersion)
        object["ok"] = .bool(false)
        object["exit_code"] = .int(Int64(exit))
        object["error"] = .string(message)
        guard var data = try? JSONEncoder.factory.encode(JSONValue.object(object)) else { return }
        data.append(UInt8(ascii: "\n"))
        printed.withLock { $0 = true }
        StandardStream.output(bytes: Array(data))
    }
}

/// Writes one JSON object for scripts to stdout (see `JSONOutput`).
func printJSON<T: Encodable>(_ value: T, exit: ExitStatus = .success, error: String? = nil) throws {
    try JSONOutput.emit(value, exit: exit, error: error)
}

/// Lines for humans to stdout.
func say(_ line: String) {
    StandardStream.output(line + "\n")
}

var stderrIsTerminal: Bool { isatty(STDERR_FILENO) == 1 }

extension FactoryEnvironment {
    /// `FACTORYCTL_FETCH_TIMEOUT` (or the flag's value when given), parsed as every command
    /// parses it: a bad value is a usage error (exit 64) before anything runs, never a silent 120.
    func checkedFetchTimeout(flag: Double? = nil) throws(CommandFailure) -> Double {
        if let flag { return flag }
        do { return try fetchTimeout() } catch { throw CommandFailure(code: .usage, message: "\(error)") }
    }

    /// `FACTORYCTL_ROLLOUT_LEASE_SECONDS`, a usage error when it is not valid.
    func checkedRolloutLeaseSeconds() throws(CommandFailure) -> Double {
        do { return try rolloutLeaseSeconds() } catch { throw CommandFailure(code: .usage, message: "\(error)") }
    }
}
