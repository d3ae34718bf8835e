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
        puts an update mission on the Redis stream; `consume` runs missions on each factory; \
        `status` shows the checkout and the fleet; `serve` is HQ's HTTP endpoint; `forget` removes a \
        decommissioned factory from the registry.

        EXIT CODES
          0   success (updated, or already up to date)
          1   failed; nothing was changed
          2   failed; the update was rolled back
          3   another update holds the checkout lock
          4   refused by preflight (local changes, or a rebase/merge in progress)
          5   the remote could not be fetched
          6   needs attention: rolling back failed, services still not active after it, or the
              previous environment could not be re-synced (the next update syncs)
          7   Redis is unavailable
          8   refused (role may not publish or forget, an update is already in flight, the
              target matches no registered factory, another runner drives the rollout, or an
              update would move backwards)
          9   timed out waiting for results (or no live factory to wait for)
          10  consume: exited after applying an update so systemd restarts it
          11  update --exit-code: already up to date, nothing changed
          12  serve: cannot listen on the address (in use, or not permitted)
          64  usage error
        """,
        version: version,
        subcommands: [UpdateCommand.self, PublishCommand.self, ConsumeCommand.self, StatusCommand.self, ServeCommand.self, ForgetCommand.self, KeysCommand.self, RollbackCommand.self,
                      FetchHelperCommand.self]
    )

    static func main() async {
        signal(SIGPIPE, SIG_IGN) // broken sockets and pipes become errors, not a dead process
        // The one invocation scripts run to probe the binary answers without building the parser.
        if CommandLine.arguments.count == 2, CommandLine.arguments[1] == "--version" {
            StandardStream.output(version + "\n")
            return
        }
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch let failure as CommandFailure {
            ProgressLine.end()
            if JSONOutput.requested, !JSONOutput.alreadyPrinted {
                JSONOutput.emitFailure(failure.message.isEmpty ? "failed" : failure.message, exit: failure.code.rawValue)
            }
            if !failure.message.isEmpty {
                // Under the journal, an error line carries its priority like the log lines do.
                let priority = JournalLogHandler.stderrIsJournal(environment: ProcessInfo.processInfo.environment) ? "<3>" : ""
                StandardStream.error("\(priority)factoryctl: \(failure.message)\n")
            }
            Glibc.exit(failure.code.rawValue)
        } catch {
            // Usage errors too are one object on stdout for a --json caller (help is not an error).
            let code = exitCode(for: error)
            if JSONOutput.requested, !JSONOutput.alreadyPrinted, code != .success {
                JSONOutput.emitFailure(message(for: error).trimmed, exit: code.rawValue)
            }
            exit(withError: error)
        }
    }
}

/// The exit codes of factoryctl (documented in `--help`, the man page and the README).
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
        case .lockHeld: self = .lockHeld
        case .preflight: self = .refusedByPreflight
        case .remoteUnreachable: self = .remoteUnreachable
        case .rollbackFailed: self = .rollbackFailed
        case .invalidBranch: self = .usage
        case .rewindRefused: self = .refused
        default: self = .failedUnchanged
        }
    }
}

/// A failure already explained to the user; the entry point prints `message` and exits with `code`.
struct CommandFailure: Error {
    let code: ExitStatus
    let message: String
}
