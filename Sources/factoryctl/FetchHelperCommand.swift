import ArgumentParser
import FactoryKit
import FoundationEssentials
import Dispatch
import FactoryBasics
import Glibc

/// The child `update` and `consume` start to fetch a network remote, so that a remote that
/// stops answering can be ended (see `IsolatedFetch`). Not for people: hidden from help.
struct FetchHelperCommand: FactoryctlCommand {
    static let configuration = CommandConfiguration(
        commandName: IsolatedFetch.subcommand,
        abstract: "Internal: fetch one remote, reporting progress on stdout (started by update and consume).",
        shouldDisplay: false
    )

    @Option(name: .long, help: "The repository's .git directory.")
    var gitDir: String?

    @Option(name: .long, help: "Instead of fetching: print the commit --branch points at on this remote URL.")
    var lsRemote: String?

    @Option(name: .long, help: "The branch for --ls-remote.")
    var branch = "main"

    @Option(name: .long, help: "The remote to fetch.")
    var remote = "origin"

    @Option(name: .long, help: "Die with this process (the update that started the helper).")
    var parentPid: Int32?

    func validate() throws {
        if (gitDir == nil) == (lsRemote == nil) { throw ValidationError("give --git-dir or --ls-remote") }
    }

    func run(_ context: CommandContext) throws {
        let environment = context.environment.values
        let code = if let lsRemote {
            IsolatedFetch.runTipHelper(url: lsRemote, branch: branch, parent: parentPid, environment: environment)
        } else {
            IsolatedFetch.runHelper(gitDirectory: gitDir ?? "", remote: remote, parent: parentPid, environment: environment)
        }
        if code != 0 { throw CommandFailure(code: .remoteUnreachable, message: "") }
    }
}
