import ArgumentParser
import FactoryKit
import GitKit
import FoundationEssentials
import Dispatch
import FactoryBasics
import Glibc
import Logging

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

    /// On the context's stderr at the level in effect (see `CommandContext.logger`).
    func logger(_ label: String, _ context: CommandContext) -> Logger {
        context.logger(label, level: level)
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
    func resolve(_ context: CommandContext, searchUpward: Bool) -> String {
        if let path = factoryDir ?? context.environment.factoryDirectory { return context.absolutePath(path) }
        let here = context.currentDirectory
        if searchUpward, let root = Repository.workTreeRoot(containing: here) { return root }
        return context.absolutePath(here)
    }
}
