import ArgumentParser
import FactoryKit
import Foundation

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show the local checkout: branch, commit, upstream, local changes, last update.",
        discussion: """
        Ahead/behind counts are as of the last fetch; --fetch refreshes them first.

        Examples:
          factoryctl status
          factoryctl status --fetch --json
        """
    )

    @OptionGroup var global: GlobalOptions
    @OptionGroup var directory: FactoryDirectoryOption

    @Flag(name: .long, help: "Fetch origin first so ahead/behind are current.")
    var fetch = false

    @Flag(name: .long, help: "Print JSON instead of text.")
    var json = false

    func run() throws {
        let environment = FactoryEnvironment.current
        let status: LocalStatus
        do {
            status = try LocalStatus.read(factoryDirectory: directory.resolve(environment), fetch: fetch,
                                          environment: environment.values)
        } catch {
            throw CommandFailure(code: .failedUnchanged, message: "\(error)")
        }
        if json {
            try printJSON(status)
        } else {
            LocalStatusText(status: status).lines.forEach(say)
        }
    }
}

struct LocalStatusText {
    let status: LocalStatus

    var lines: [String] {
        var lines = ["Factory:  \(status.factoryDirectory)"]
        let head = status.head.map { String($0.prefix(7)) } ?? "(no commit)"
        lines.append("Branch:   \(status.branch ?? "(detached HEAD)")")
        lines.append("HEAD:     \(head) \(status.headSummary ?? "")")
        if let upstream = status.upstream, let commit = status.upstreamCommit {
            let counts = "\(status.ahead ?? 0) ahead, \(status.behind ?? 0) behind"
            lines.append("Upstream: \(upstream) at \(commit.prefix(7)) (\(counts)\(status.fetched ? "" : ", as of the last fetch"))")
        } else {
            lines.append("Upstream: none")
        }
        if let error = status.fetchError { lines.append("Fetch:    failed: \(error)") }
        if status.state != "clean" { lines.append("State:    \(status.state) in progress") }
        if status.modified.isEmpty {
            lines.append("Changes:  none to tracked files")
        } else {
            lines.append("Changes:  \(status.modified.count) tracked file(s)")
            for change in status.modified { lines.append("  \(change.change): \(change.path)") }
        }
        if let last = status.lastUpdate {
            let when = Date(timeIntervalSince1970: last.finishedAt ?? last.startedAt)
            let result = last.succeeded ? "success" : "failed (\(last.failure?.rawValue ?? "?"))\(last.rolledBack ? ", rolled back" : "")"
            lines.append("Last update: \(when.formatted(.iso8601)) \(last.branch) \(last.shortFrom ?? "?") → \(last.shortTo ?? "?"): \(result)")
        } else {
            lines.append("Last update: none recorded")
        }
        return lines
    }
}
