import ArgumentParser
import FactoryKit
import FoundationEssentials
import FactoryBasics
import Glibc
import GitKit

struct BootstrapCommand: FactoryctlCommand {
    static let configuration = CommandConfiguration(
        commandName: "bootstrap",
        abstract: "Make a new factory from the template repository: clone, .env, sync, env file, units, first registration.",
        discussion: """
        Run as the user that will own the factory. In order, each step skipped when it is \
        already done: clone --repo natively into --factory-dir (libgit2, the credentials and \
        known_hosts of `update`; --commit must be on origin/<branch>; UA_ALLOWED_SIGNERS \
        applies); create .env from the template's .env.example (or .env.template) when there \
        is none, never over an existing one; run the sync (UA_FACTORY_SYNC_COMMAND, default \
        "uv sync"); with --layout releases build the first release (current → \
        releases/<commit>, as `releases init`); write the consumer's env file \
        ($XDG_CONFIG_HOME/factoryctl/env, else ~/.config/factoryctl/env; mode 0600) from the \
        enrollment's lines (--env-file FILE, or - for stdin) plus UA_FACTORY_DIR and \
        UA_FACTORY_ID; install the app's unit when the template ships deploy/factory.service \
        (as <UA_FACTORY_SERVICE>.service in ~/.config/systemd/user, @FACTORY_DIR@ replaced by \
        the directory the app runs in); enable and start it and factoryctl-consume.service with \
        systemctl --user (unless --no-start); wait for the factory's first registration in \
        Redis; print a summary.

        Every line of the env file must be NAME=value with a variable factoryctl reads; \
        anything else is refused before anything changes, and values are never printed. A \
        failure before the clone completes leaves no directory behind. Running bootstrap again \
        finishes a run that was killed or failed (a sync that did not finish runs again) and, on \
        a factory that is bootstrapped, changes nothing and says so. Each failure says what is \
        done, what is not, and how to go on.

        Examples:
          factoryctl enroll eu-7 | ssh eu-7 factoryctl bootstrap --repo git@git.hq.example:factory.git --factory-dir /srv/factory --env-file -
          factoryctl bootstrap --repo https://git.hq.example/factory.git --factory-dir /srv/factory --layout releases --env-file eu-7.env
          factoryctl bootstrap --repo /srv/template.git --factory-dir /srv/factory --no-start --dry-run
        """
    )

    @OptionGroup var global: GlobalOptions

    @Option(name: .long, help: ArgumentHelp("The template repository to clone (ssh://, git@host:path, https://, or a path).", valueName: "url"))
    var repo: String

    @Option(name: .long, help: ArgumentHelp("Where the factory goes: missing, empty, or already a checkout of --repo (its parent must exist).", valueName: "path"),
            completion: .directory)
    var factoryDir: String

    @Option(name: [.short, .long], help: ArgumentHelp("The branch the factory follows.", valueName: "name"))
    var branch = "main"

    @Option(name: .long, help: ArgumentHelp("Clone exactly this commit (full id), which must be on origin's branch.", valueName: "sha"))
    var commit: String?

    @Option(name: .long, help: ArgumentHelp("The factory id (default: the enrollment's UA_FACTORY_ID, else the host name).", valueName: "id"))
    var id: String?

    @Option(name: .long, help: ArgumentHelp("The lines `factoryctl enroll ID` printed at HQ (- reads them from stdin).", valueName: "file"),
            completion: .file())
    var envFile: String?

    @Option(name: .long, help: ArgumentHelp("in-place (the checkout runs) or releases (DIR/current → releases/<commit>).", valueName: "layout"))
    var layout: BootstrapLayoutArgument = .inPlace

    @Flag(name: .long, help: "Do not enable or start the units, nor wait for the registration.")
    var noStart = false

    @Option(name: .long, help: ArgumentHelp("Longest wait for the first registration.", valueName: "seconds"))
    var timeout: Double = 60

    @Flag(name: [.customShort("n"), .long], help: "List what bootstrap would do; change nothing.")
    var dryRun = false

    @Flag(name: .long, help: "Print one JSON object instead of the summary.")
    var json = false

    func validate() throws {
        do { try BranchName.validate(branch) } catch { throw ValidationError("\(error)") }
        if let commit, !Mission.isCommitID(commit) {
            throw ValidationError("--commit needs a full commit id (40 lowercase hex digits), not '\(commit.prefix(60))'")
        }
        if let id, !MissionID.isValid(id) { throw ValidationError("invalid factory id '\(id.prefix(80))': use 1-128 of A-Z a-z 0-9 . _ : -") }
        guard timeout > 0, timeout <= 3600 else { throw ValidationError("--timeout must be between 0 and 3600 seconds") }
        guard !repo.isEmpty, !repo.hasPrefix("-"), repo.unicodeScalars.allSatisfy({ $0.value > 32 && $0.value != 127 }) else {
            throw ValidationError("--repo must be a repository URL or path (no spaces or control characters)")
        }
    }

    func run(_ context: CommandContext) throws {
        let stop = context.stopSignal()
        var bootstrap = Bootstrap(request: try request(context), logger: global.logger("factoryctl.bootstrap", context))
        bootstrap.shouldCancel = { stop.isSet }
        bootstrap.shouldStopSync = { stop.childShouldStop(grace: UpdatePipeline.syncStopGrace) }
        let outcome: BootstrapOutcome
        do {
            outcome = try bootstrap.run()
        } catch {
            throw CommandFailure(code: Self.exitStatus(error.kind), message: error.message)
        }
        if json { return try context.printJSON(outcome) }
        context.sayAll(Self.lines(outcome))
    }

    /// The request the flags make.
    private func request(_ context: CommandContext) throws -> BootstrapRequest {
        var request = BootstrapRequest(repoURL: repoURL(context), factoryDirectory: context.absolutePath(factoryDir),
                                       environment: context.environment)
        request.branch = branch
        request.commit = commit.flatMap(ObjectID.init(hex:))
        request.factoryID = id
        request.enrollment = try enrollment(context)
        request.layout = layout.layout
        request.start = !noStart
        request.dryRun = dryRun
        request.registrationTimeout = timeout
        return request
    }

    /// A local path made absolute (the clone's remote must not depend on where it ran).
    private func repoURL(_ context: CommandContext) -> String {
        IsolatedFetch.isLocal(repo) && !repo.hasPrefix("file://") ? context.absolutePath(repo) : repo
    }

    /// The enrollment's lines from `--env-file` (a file, or `-`: stdin), checked.
    private func enrollment(_ context: CommandContext) throws -> ConsumerEnvFile? {
        guard let envFile else { return nil }
        let text: String
        let source: String
        if envFile == "-" {
            guard let read = Self.readStandardInput(limit: 64 * 1024) else {
                throw CommandFailure(code: .usage, message: "--env-file -: stdin is more than 64 KiB or could not be read; nothing was changed")
            }
            (text, source) = (read, "stdin")
        } else {
            let path = context.absolutePath(envFile)
            guard let data = FileManager.default.contents(atPath: path) else {
                throw CommandFailure(code: .usage, message: "--env-file \(envFile): cannot read it; nothing was changed")
            }
            (text, source) = (String(decoding: data, as: UTF8.self), envFile)
        }
        do {
            let parsed = try ConsumerEnvFile.parse(text, source: source)
            guard !parsed.lines.isEmpty else { throw FactoryError.invalidArgument("\(source) has no NAME=value lines; nothing was changed") }
            return parsed
        } catch {
            throw CommandFailure(code: .usage, message: "\(error)")
        }
    }

    static func readStandardInput(limit: Int) -> String? {
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = read(STDIN_FILENO, &buffer, buffer.count)
            if count < 0, errno == EINTR { continue }
            if count < 0 { return nil }
            if count == 0 { break }
            bytes += buffer[0..<count]
            if bytes.count > limit { return nil }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    static func exitStatus(_ kind: BootstrapFailure.Kind) -> ExitStatus {
        switch kind {
        case .usage: .usage
        case .failed: .failedUnchanged
        case .remoteUnreachable: .remoteUnreachable
        case .lockHeld: .lockHeld
        case .refused: .refused
        case .redisUnavailable: .redisUnavailable
        case .timedOut: .timedOut
        }
    }

    /// The summary: a headline, a line per step, the notes.
    static func lines(_ outcome: BootstrapOutcome) -> [String] {
        let at = "\(outcome.branch)\(outcome.commit.map { " at \($0.prefix(7))" } ?? "")"
        let headline = if outcome.dryRun {
            "Dry run: would bootstrap \(outcome.factoryID) at \(outcome.factoryDirectory) (\(outcome.layout.rawValue)); nothing was changed"
        } else if outcome.changed {
            "Bootstrapped \(outcome.factoryID) at \(outcome.factoryDirectory): \(at) (\(outcome.layout.rawValue))"
        } else {
            "Already bootstrapped: \(outcome.factoryID) at \(outcome.factoryDirectory), \(at) (\(outcome.layout.rawValue)); nothing was changed"
        }
        let width = outcome.steps.map(\.name.count).max() ?? 0
        let steps = outcome.steps.map { step in
            "  " + step.name + String(repeating: " ", count: width - step.name.count) + "  " + step.action.rawValue.padding(9) + " " + step.detail
        }
        return [headline] + steps + outcome.notes.map { "Note: \($0)" }
    }
}

extension String {
    fileprivate func padding(_ width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }
}

enum BootstrapLayoutArgument: String, ExpressibleByArgument, CaseIterable {
    case inPlace = "in-place"
    case releases

    var layout: BootstrapRequest.Layout { self == .inPlace ? .inPlace : .releases }
}
