import ArgumentParser
import FactoryKit
import FactoryBasics
import MetricsExport

extension Factoryctl {
    /// Parses `context.arguments`, runs the command with `context` and renders a failure the way
    /// the binary does (the message on stderr, the `--json` object on stdout); the exit status.
    /// The entry point exits with it; tests call it in-process and read the context's output.
    /// Blocking commands run on the calling (main) thread, as they always have.
    @MainActor
    static func run(_ context: CommandContext) async -> Int32 {
        // The metrics exporter is the edge's choice: the Prometheus text format (swift-prometheus).
        FactoryTextfile.bootstrap(PrometheusText())
        do {
            let command = try parseAsRoot(context.arguments)
            try await dispatch(command, context)
            return ExitStatus.success.rawValue
        } catch let failure as CommandFailure {
            report(failure, context)
            return failure.code.rawValue
        } catch {
            return report(parsingOrUnexpected: error, context)
        }
    }

    @MainActor
    private static func dispatch(_ parsed: any ParsableCommand, _ context: CommandContext) async throws {
        switch parsed {
        case let command as any FactoryctlCommand:
            try command.run(context)
        case let command as any AsyncFactoryctlCommand:
            try await command.run(context)
        default:
            // A command group without a run of its own (`keys`): its help.
            var command = parsed
            try command.run()
        }
    }

    private static func report(_ failure: CommandFailure, _ context: CommandContext) {
        context.stderr.endProgress()
        if context.json.requested, !context.json.alreadyPrinted {
            context.json.emitFailure(failure.message.isEmpty ? "failed" : failure.message, exit: failure.code.rawValue)
        }
        if !failure.message.isEmpty {
            // Under the journal, an error line carries its priority like the log lines do.
            let priority = context.stderrIsJournal ? "<3>" : ""
            context.stderr.write("\(priority)factoryctl: \(failure.message)\n")
        }
    }

    /// Help, `--version`, usage errors and anything unexpected, as ArgumentParser's own
    /// `exit(withError:)` prints them: help on stdout, the rest on stderr.
    private static func report(parsingOrUnexpected error: any Error, _ context: CommandContext) -> Int32 {
        let code = exitCode(for: error)
        // Usage errors too are one object on stdout for a --json caller (help is not an error).
        if context.json.requested, !context.json.alreadyPrinted, code != .success {
            context.json.emitFailure(message(for: error).trimmed, exit: code.rawValue)
        }
        let text = fullMessage(for: error)
        if !text.isEmpty {
            (code == .success ? context.stdout : context.stderr).write(text + "\n")
        }
        return code.rawValue
    }
}
