import FoundationEssentials
import FactoryBasics
import Glibc

/// The consumer's env file, `~/.config/factoryctl/env` (`$XDG_CONFIG_HOME/factoryctl/env`):
/// what `factoryctl-consume.service` reads with `EnvironmentFile=`. `bootstrap` writes it from
/// the lines `factoryctl enroll ID` printed at HQ plus `UA_FACTORY_DIR` and `UA_FACTORY_ID`,
/// mode 0600, replaced through a temporary file and a rename.
///
/// Every line must be `NAME=value` with a name factoryctl reads: anything else (a typo, a shell
/// `export`, quotes systemd would parse differently, the ops token that never belongs on a
/// factory) is refused before anything is written. Errors name the line and the variable,
/// never a value: the lines hold the factory's secrets.
public struct ConsumerEnvFile: Sendable, Equatable {
    public struct Line: Sendable, Equatable {
        public let name: String
        public let value: String
    }

    public var lines: [Line]

    public init(lines: [Line]) {
        self.lines = lines
    }

    /// The names a factory's consumer may be given: the enrollment's four and the settings
    /// factoryctl reads (docs/configuration.md).
    public static let acceptedNames: Set<String> = [
        "UA_FACTORY_ID", "UA_FACTORY_ENROLLED", "UA_REDIS_URL", "UA_FACTORY_TOKEN", "UA_FACTORY_DIR",
        "UA_REDIS_HOST", "UA_REDIS_PORT", "UA_REDIS_DB", "REDIS_PASSWORD", "UA_REDIS_TLS_CA", "UA_REDIS_TLS_CERT",
        "UA_REDIS_TLS_KEY", "UA_REDIS_WAIT_MS", "UA_DELEGATION_STREAM_NAME", "UA_DELEGATION_DLQ_STREAM", "UA_FLEET_ID",
        "FACTORY_ROLE", "UA_FACTORY_SERVICE", "UA_FACTORY_SYNC_COMMAND", "UA_FACTORY_HEALTH_URL", "UA_FACTORY_HEALTH_TIMEOUT",
        "UA_FACTORY_SOAK_SECONDS", "UA_FACTORY_SHARED", "UA_FACTORY_KEEP_RELEASES", "UA_FACTORY_MIN_UPDATE_INTERVAL",
        "UA_FACTORY_CAPABILITIES", "UA_FACTORY_REPO_URL", "UA_HQ_BASE_URL", "UA_ALLOWED_SIGNERS", "UA_MISSION_VERIFY_KEYS",
        "FACTORYCTL_SSH_KEY", "FACTORYCTL_SSH_PASSPHRASE", "FACTORYCTL_GIT_TOKEN", "FACTORYCTL_GIT_USERNAME",
        "FACTORYCTL_FETCH_TIMEOUT", "GITHUB_TOKEN", "GIT_SSL_CAINFO", "SSL_CERT_FILE", "UV_PROJECT_ENVIRONMENT",
    ]

    /// Names that must never reach a factory: HQ's secrets.
    static let hqOnly: [String: String] = [
        "UA_OPS_TOKEN": "the ops token publishes for the whole fleet and is never on a factory (the factory's own is UA_FACTORY_TOKEN)",
        "UA_MISSION_SIGNING_KEY": "the mission signing key stays at HQ (a factory verifies with UA_MISSION_VERIFY_KEYS)",
    ]

    /// Parses `text` (`source` names it in errors: "--env-file eu-7.env", "stdin"). Blank lines
    /// and `#` comments are skipped.
    public static func parse(_ text: String, source: String) throws(FactoryError) -> ConsumerEnvFile {
        var lines: [Line] = []
        var seen: Set<String> = []
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.hasSuffix("\r") ? raw.dropLast() : raw
            if line.allSatisfy({ $0 == " " || $0 == "\t" }) || line.first == "#" { continue }
            let parsed = try parseLine(String(line), at: "\(source) line \(index + 1)")
            guard seen.insert(parsed.name).inserted else {
                throw .invalidArgument("\(source) line \(index + 1): \(parsed.name) is set twice; give each variable once. Nothing was changed")
            }
            lines.append(parsed)
        }
        return ConsumerEnvFile(lines: lines)
    }

    /// One `NAME=value` line, checked.
    static func parseLine(_ line: String, at place: String) throws(FactoryError) -> Line {
        guard let equals = line.firstIndex(of: "=") else {
            throw .invalidArgument("\(place) is not NAME=value (the lines `factoryctl enroll ID` prints at HQ); nothing was changed")
        }
        let name = String(line[..<equals])
        let value = String(line[line.index(after: equals)...])
        guard isVariableName(name) else {
            // Not quoted: a malformed line can hold a secret before its `=`.
            throw .invalidArgument("\(place): what comes before `=` is not a variable name (A-Z, 0-9, _; no spaces, no `export`); nothing was changed")
        }
        if let why = hqOnly[name] { throw .invalidArgument("\(place): \(name) is refused: \(why). Nothing was changed") }
        guard acceptedNames.contains(name) else {
            let close = acceptedNames.filter { EditDistance.between($0, name) <= 2 }.sorted().first
            throw .invalidArgument("\(place): \(name) is not a variable factoryctl reads\(close.map { " (did you mean \($0)?)" } ?? ""); nothing was changed")
        }
        guard value.unicodeScalars.allSatisfy({ $0.value >= 32 && $0.value != 127 }), !value.contains("\\"),
              !(value.first.map { $0 == "\"" || $0 == "'" } ?? false), value.trimmed == value else {
            throw .invalidArgument("\(place): the value of \(name) has quotes, a backslash, surrounding spaces or control characters, which systemd's EnvironmentFile would change; write the bare value. Nothing was changed")
        }
        return Line(name: name, value: value)
    }

    static func isVariableName(_ name: String) -> Bool {
        guard let first = name.utf8.first, first == 95 || (65...90).contains(first) else { return false }
        return name.utf8.allSatisfy { $0 == 95 || (65...90).contains($0) || (48...57).contains($0) }
    }

    public subscript(name: String) -> String? {
        lines.first { $0.name == name }?.value
    }

    /// Sets `name` (replacing its line, or adding one at the end).
    public mutating func set(_ name: String, _ value: String) {
        if let index = lines.firstIndex(where: { $0.name == name }) {
            lines[index] = Line(name: name, value: value)
        } else {
            lines.append(Line(name: name, value: value))
        }
    }

    public var names: [String] { lines.map(\.name) }

    public var values: [String: String] {
        Dictionary(lines.map { ($0.name, $0.value) }) { _, last in last }
    }

    /// The file's bytes: a header comment, then one line per variable.
    public var text: String {
        "# Written by factoryctl bootstrap: the environment of factoryctl-consume.service. Mode 0600: it holds secrets.\n"
            + lines.map { "\($0.name)=\($0.value)\n" }.joined()
    }

    /// `$XDG_CONFIG_HOME/factoryctl/env`, else `$HOME/.config/factoryctl/env`.
    public static func path(environment: [String: String]) -> String {
        configHome(environment: environment) + "/factoryctl/env"
    }

    /// `$XDG_CONFIG_HOME` when it is an absolute path, else `$HOME/.config` (the XDG rule).
    public static func configHome(environment: [String: String]) -> String {
        if let xdg = environment["XDG_CONFIG_HOME"], xdg.hasPrefix("/") { return String(xdg.trimmingSuffix("/")) }
        return homeDirectory(environment) + "/.config"
    }

    static func homeDirectory(_ environment: [String: String]) -> String {
        if let home = environment["HOME"], home.hasPrefix("/") { return home }
        if let entry = getpwuid(getuid()), let directory = entry.pointee.pw_dir { return String(cString: directory) }
        return "/"
    }

    /// The file at `path`, when there is one that parses.
    public static func read(_ path: String) throws(FactoryError) -> ConsumerEnvFile? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        return try parse(String(decoding: data, as: UTF8.self), source: path)
    }

    /// Writes the file (parents made), mode 0600, through a temporary file and a rename.
    public func write(to path: String) throws {
        let directory = path.deletingLastPathComponent
        try ReleasesLayout.makeDirectories(directory)
        try FileWriting.replace(path, with: Array(text.utf8), mode: 0o600)
        chmod(path, 0o600)
    }
}
