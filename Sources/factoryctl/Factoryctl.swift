import ArgumentParser
import FactoryKit
import FoundationEssentials
import Dispatch
import FactoryBasics
import Glibc

@main
struct Factoryctl: AsyncParsableCommand {
    static let version = FactoryctlVersion.full

    static let configuration = CommandConfiguration(
        commandName: "factoryctl",
        abstract: "Keep a fleet of factories on the code HQ wants.",
        discussion: """
        A factory is a git checkout of a Python application (managed by uv) running as \
        systemd --user services. `update` pulls and restarts one factory by hand; `publish` \
        puts an update mission on the Redis stream; `consume` runs missions on each factory; `bootstrap` makes a new factory from the template repository; \
        `status` shows the checkout and the fleet; `serve` is HQ's HTTP endpoint; `forget` removes a \
        decommissioned factory from the registry.

        \(ExitStatus.helpText)
        """,
        version: version,
        subcommands: [UpdateCommand.self, PublishCommand.self, ConsumeCommand.self, StatusCommand.self, ServeCommand.self, EnrollCommand.self, BootstrapCommand.self, ForgetCommand.self, KeysCommand.self, RollbackCommand.self, ReleasesCommand.self,
                      FetchHelperCommand.self]
    )

    static func main() async {
        signal(SIGPIPE, SIG_IGN) // broken sockets and pipes become errors, not a dead process
        let arguments = Array(CommandLine.arguments.dropFirst())
        // The one invocation scripts run to probe the binary answers without building the parser.
        if arguments == ["--version"] {
            StandardStream.output(version + "\n")
            return
        }
        Glibc.exit(await run(.process(arguments: arguments)))
    }
}

/// The exit codes of factoryctl, written once: `meaning` is the EXIT CODES list of `--help`, and
/// scripts/generate-docs.sh writes the man page's EXIT STATUS and docs/exit-codes.md from that
/// list (DocsTests fails when either no longer says what this enum says).
enum ExitStatus: Int32, CaseIterable {
    case success = 0
    case failedUnchanged = 1
    case rolledBack = 2
    case lockHeld = 3
    case refusedByPreflight = 4
    case remoteUnreachable = 5
    case rollbackFailed = 6
    case redisUnavailable = 7
    case refused = 8
    case timedOut = 9
    case restartRequested = 10
    case upToDate = 11
    case cannotListen = 12
    case usage = 64

    /// What the code means, in the words of `--help`, the man page and docs/exit-codes.md.
    var meaning: String {
        switch self {
        case .success: "success (updated, or already up to date)"
        case .failedUnchanged: "failed; nothing was changed"
        case .rolledBack: "failed; the update was rolled back"
        case .lockHeld: "another update holds the checkout lock, or the app held its update lock past `--app-lock-timeout`"
        case .refusedByPreflight: "refused by preflight (local changes, or a rebase/merge in progress)"
        case .remoteUnreachable: "the remote could not be fetched"
        case .rollbackFailed:
            "needs attention: rolling back failed (the checkout needs attention), services still not active after the "
                + "rollback, or the previous environment could not be re-synced (`environment_owed`; the next update syncs)"
        case .redisUnavailable: "Redis is unavailable"
        case .refused:
            "refused (role may not publish or forget, an update is already in flight, the target matches no registered "
                + "factory, another runner drives the rollout, an update would move backwards without `--allow-rewind`, "
                + "its target is quarantined here without `--retry-quarantined`, or `bootstrap`'s directory or env file "
                + "belongs to something else)"
        case .timedOut: "timed out waiting for results or for `bootstrap`'s first registration (or no live factory to wait for)"
        case .restartRequested: "`consume` exited after applying an update so systemd restarts it"
        case .upToDate: "`update --exit-code`: already up to date, nothing changed (0 then means the checkout changed)"
        case .cannotListen: "`serve`: cannot listen on the address (in use, or not permitted); the unit does not restart"
        case .usage: "usage error"
        }
    }

    /// The EXIT CODES part of `factoryctl --help`: a line per code, its meaning wrapped under its
    /// own indent within 78 columns (the help is 80 wide; a longer line would be re-wrapped flush).
    static var helpText: String {
        let indent = String(repeating: " ", count: 6)
        var lines = ["EXIT CODES"]
        for code in allCases {
            let number = String(code.rawValue)
            var line = "  " + number + String(repeating: " ", count: 4 - number.count)
            for word in code.meaning.split(separator: " ") {
                if line.count + 1 + word.count > 78, line.count > indent.count {
                    lines.append(line)
                    line = indent + word
                } else {
                    line += (line.hasSuffix(" ") ? "" : " ") + word
                }
            }
            lines.append(line)
        }
        return lines.joined(separator: "\n")
    }

    init(_ report: UpdateReport) {
        if report.succeeded { self = .success; return }
        // The code is back, but a service is still down or the environment could not be
        // re-synced: not a clean rollback, needs attention.
        if report.rolledBack, !(report.inactiveAfterRollback ?? []).isEmpty || report.environmentOwed != nil {
            self = .rollbackFailed
            return
        }
        if report.rolledBack { self = .rolledBack; return }
        switch report.failure {
        case .lockHeld, .appLockHeld: self = .lockHeld
        case .preflight: self = .refusedByPreflight
        case .remoteUnreachable, .tlsFailed: self = .remoteUnreachable
        case .rollbackFailed: self = .rollbackFailed
        case .invalidBranch: self = .usage
        case .rewindRefused, .quarantined: self = .refused
        // Not rolled back (a rollback's soak that failed): needs attention.
        case .soakFailed: self = .rollbackFailed
        default: self = .failedUnchanged
        }
    }
}

/// A failure already explained to the user; the entry point prints `message` and exits with `code`.
struct CommandFailure: Error {
    let code: ExitStatus
    let message: String
}
