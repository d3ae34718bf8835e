import ArgumentParser
import FactoryKit
import FoundationEssentials
import FactoryBasics

struct ReleasesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "releases",
        abstract: "The side-by-side layout: DIR/current → a complete release, the next one built beside it.",
        subcommands: [ReleasesInitCommand.self]
    )
}

struct ReleasesInitCommand: FactoryctlCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Turn an in-place checkout into DIR/current → releases/<commit>, with shared files linked in.",
        discussion: """
        Builds the first release (a work tree of the commit the checkout runs, sharing the \
        repository's objects, with its own .venv synced where it runs), moves the untracked and \
        ignored files (.env, data; not .venv and caches) to DIR/shared and links them into every \
        release (UA_FACTORY_SHARED names more), points DIR/current at the release, and removes the \
        old work tree's tracked files (only those whose content is the commit's). Nothing is lost; \
        a killed init is finished by running it again; on a factory already in the layout it \
        changes nothing. Afterwards every update builds the next release beside the live one and \
        swaps `current` in one rename; a rollback is a swap back (no sync). Change the app's unit \
        to WorkingDirectory=DIR/current (and paths under DIR/.venv to DIR/current/.venv) and \
        restart it. The way back to the in-place layout is in docs/releases.md.

        Examples:
          factoryctl releases init --factory-dir /srv/factory
          factoryctl releases init --no-sync --json
        """
    )

    @OptionGroup var global: GlobalOptions
    @OptionGroup var directory: FactoryDirectoryOption

    @Flag(name: .long, help: "Do not run the sync in the first release (its environment is then yours to build).")
    var noSync = false

    @Flag(name: .long, help: "Print one JSON object instead of text.")
    var json = false

    func run(_ context: CommandContext) throws {
        let factoryDirectory = directory.resolve(context, searchUpward: true)
        var initializer = ReleasesInit(factoryDirectory: factoryDirectory, environment: context.environment.values,
                                       logger: global.logger("factoryctl.releases", context))
        initializer.sync = !noSync
        initializer.syncCommand = context.environment.syncCommand
        let outcome: ReleasesInit.Outcome
        do {
            outcome = try initializer.run()
        } catch {
            throw CommandFailure(code: .failedUnchanged, message: "\(error)")
        }
        if json { return try context.printJSON(outcome) }
        context.sayAll(Self.lines(outcome))
    }

    /// What init did, and what the operator changes next.
    static func lines(_ outcome: ReleasesInit.Outcome) -> [String] {
        let root = outcome.factoryDirectory
        if outcome.alreadyDone {
            return ["\(root) is already in the releases layout: current → releases/\(outcome.release); nothing was changed"]
        }
        var lines = [
            "\(root) is in the releases layout: current → releases/\(outcome.release) (\(outcome.branch) at \(outcome.commit.prefix(7))\(outcome.synced ? ", synced" : ""))",
            "Shared (in \(root)/shared, linked into every release): \(outcome.shared.isEmpty ? "nothing" : outcome.shared.joined(separator: ", "))",
        ]
        if !outcome.leftInPlace.isEmpty {
            lines.append("Left in \(root), no longer used (remove when the app runs from current): \(outcome.leftInPlace.joined(separator: ", "))")
        }
        return lines + [
            "Next: in the app's unit set WorkingDirectory=\(root)/current (and paths under \(root)/.venv to \(root)/current/.venv), then",
            "  systemctl --user daemon-reload && systemctl --user restart <the app's unit>",
        ]
    }
}
