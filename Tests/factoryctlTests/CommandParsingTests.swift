import ArgumentParser
import Foundation
import Testing
@testable import factoryctl

/// Arguments parsed in-process, as the executable parses them.
@Suite struct CommandParsingTests {
    @Test func updateDefaults() throws {
        let command = try UpdateCommand.parse([])
        #expect(command.revision.branch == "main")
        #expect(!command.restart && !command.dryRun && !command.pipeline.noSync && !command.waitLock && !command.json)
        #expect(command.pipeline.service.isEmpty)
        #expect(command.global.logLevel == .info)
    }

    @Test func updateTakesEveryFlag() throws {
        let command = try UpdateCommand.parse([
            "--factory-dir", "/srv/f", "--branch", "release/1", "--restart", "--service", "a", "--service", "b",
            "--dry-run", "--no-sync", "--wait-lock", "--json", "--log-level", "debug", "--settle", "0",
        ])
        #expect(command.directory.factoryDir == "/srv/f")
        #expect(command.revision.branch == "release/1")
        #expect(command.pipeline.service == ["a", "b"])
        #expect(command.restart && command.dryRun && command.pipeline.noSync && command.waitLock && command.json)
        #expect(command.global.logLevel == .debug)
    }

    @Test func shortFlagsGitAndAnsibleUsersExpect() throws {
        let command = try UpdateCommand.parse(["-b", "release/1", "-n", "-q"])
        #expect(command.revision.branch == "release/1")
        #expect(command.dryRun)
        #expect(command.global.level == .error)
        #expect(try UpdateCommand.parse(["-v"]).global.level == .debug)
        #expect(try UpdateCommand.parse(["--log-level", "warning"]).global.level == .warning)
        #expect(try PublishCommand.parse(["update", "-b", "hotfix"]).revision.branch == "hotfix")
        #expect(throws: (any Error).self) { try UpdateCommand.parse(["-q", "-v"]) }
    }

    @Test(arguments: [["--branch", "-evil"], ["--branch", "a..b"], ["--branch", "has space"], ["--settle", "-1"],
                      ["--service", "-x"], ["--log-level", "loud"], ["--bogus"]])
    func badArgumentsAreUsageErrors(arguments: [String]) {
        #expect(throws: (any Error).self) { try UpdateCommand.parse(arguments) }
        do {
            _ = try UpdateCommand.parse(arguments)
        } catch {
            #expect(UpdateCommand.exitCode(for: error).rawValue == ExitStatus.usage.rawValue)
        }
    }

    @Test(arguments: [["--factory-dir", "/srv/f"], ["--repo", "/srv/t.git"], ["--repo", "/srv/t.git", "--factory-dir", "/srv/f", "--layout", "sideways"],
                      ["--repo", "/srv/t.git", "--factory-dir", "/srv/f", "--commit", "abc"], ["--repo", "/srv/t.git", "--factory-dir", "/srv/f", "--id", "a b"],
                      ["--repo", "-x", "--factory-dir", "/srv/f"], ["--repo", "/srv/t.git", "--factory-dir", "/srv/f", "--timeout", "0"]])
    func badBootstrapArgumentsAreUsageErrors(arguments: [String]) {
        do {
            _ = try BootstrapCommand.parse(arguments)
            Issue.record("parsed: \(arguments)")
        } catch {
            #expect(BootstrapCommand.exitCode(for: error).rawValue == ExitStatus.usage.rawValue)
        }
    }

    @Test func subcommandsAreRegistered() throws {
        let names = Factoryctl.configuration.subcommands.map { $0.configuration.commandName }
        #expect(names == ["update", "publish", "consume", "status", "serve", "enroll", "bootstrap", "forget", "keys", "rollback", "releases", "fetch-helper"])
    }
}
