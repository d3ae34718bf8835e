import ArgumentParser
import FactoryKit
import FoundationEssentials
import Dispatch
import FactoryBasics
import Glibc

/// The child `update` and `consume` start to fetch a network remote, so that a remote that
/// stops answering can be ended (see `IsolatedFetch`). Not for people: hidden from help.
struct FetchHelperCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: IsolatedFetch.subcommand,
        abstract: "Internal: fetch one remote, reporting progress on stdout (started by update and consume).",
        shouldDisplay: false
    )

    @Option(name: .long, help: "The repository's .git directory.")
    var gitDir: String

    @Option(name: .long, help: "The remote to fetch.")
    var remote = "origin"

    @Option(name: .long, help: "Die with this process (the update that started the helper).")
    var parentPid: Int32?

    func run() throws {
        let code = IsolatedFetch.runHelper(gitDirectory: gitDir, remote: remote, parent: parentPid,
                                           environment: ProcessInfo.processInfo.environment)
        if code != 0 { throw CommandFailure(code: .remoteUnreachable, message: "") }
    }
}
