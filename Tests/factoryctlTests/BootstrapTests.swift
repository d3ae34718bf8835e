import Foundation
import Testing
import TestSupport
@testable import factoryctl

/// `factoryctl bootstrap` (issue 24): a new factory from a bare origin, with real git (the CLI as
/// the oracle), real uv, a real redis-server and the fake systemctl.
@Suite struct BootstrapTests {
    /// A template on the world's origin: `.env.example` and the app's unit beside the sample app.
    static func templateWorld() throws -> GitWorld {
        let world = try GitWorld()
        try world.pushUpstream([".env.example": "DATABASE_URL=\nAPI_KEY=change-me\n",
                                "deploy/factory.service": "[Service]\nWorkingDirectory=@FACTORY_DIR@\nExecStart=@FACTORY_DIR@/.venv/bin/python app.py\n"],
                               message: "Template files")
        return world
    }

    /// The world's environment with its own XDG_CONFIG_HOME (never the real home's).
    static func environment(_ world: GitWorld, _ extra: [String: String] = [:]) -> [String: String] {
        var env = world.environment
        env["XDG_CONFIG_HOME"] = world.directory.join("config")
        env.removeValue(forKey: "UA_FACTORY_ENROLLED")
        env.removeValue(forKey: "UA_FACTORY_TOKEN")
        return env.merging(extra) { $1 }
    }

    static func bootstrap(_ world: GitWorld, _ directory: String, _ extra: [String] = [], environment: [String: String]? = nil) throws -> Command.Result {
        try FactoryctlBinary.run(["bootstrap", "--repo", world.origin, "--factory-dir", directory] + extra,
                                 environment: environment ?? Self.environment(world))
    }

    /// `factoryctl bootstrap …` run in-process (the command's own context: environment, output).
    static func inProcess(_ world: GitWorld, _ directory: String, _ extra: [String]) async -> (status: Int32, stdout: String, stderr: String) {
        let context = CommandContext.capturing(["bootstrap", "--repo", world.origin, "--factory-dir", directory] + extra,
                                               environment: Self.environment(world), currentDirectory: world.directory.path)
        let status = await Factoryctl.run(context)
        return (status, context.stdout.text, context.stderr.text)
    }

    static func mode(_ path: String) throws -> Int {
        (try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber)?.intValue ?? -1
    }

    @Test func bootstrapFromABareOriginMakesASyncedEnrolledFactoryWhoseConsumerRegisters() throws {
        let fleet = try FleetWorld(factories: [])
        let world = fleet.world
        try world.pushUpstream([".env.example": "API_KEY=change-me\n", "deploy/factory.service": "[Service]\nWorkingDirectory=@FACTORY_DIR@\n"],
                               message: "Template files")
        let enrollment = try fleet.enroll("eu-7")
        let lines = enrollment.map { "\($0.key)=\($0.value)" }.sorted().joined(separator: "\n") + "\n"
        let envLines = world.directory.join("eu-7.env")
        try lines.write(toFile: envLines, atomically: true, encoding: .utf8)
        let directory = world.directory.join("eu-7")
        let env = Self.environment(world)
        let bootstrap = try ConsumerProcess(binary: FactoryctlBinary.path, arguments: [
            "bootstrap", "--repo", world.origin, "--factory-dir", directory, "--env-file", envLines, "--timeout", "30",
        ], environment: env, log: world.directory.join("bootstrap.log"))
        // systemd's part: when the consumer's unit is started, run it with the env file.
        #expect(eventually { FakeSystemctl.calls(world.systemctlState).contains("--user start factoryctl-consume.service") }, "\(bootstrap.output)")
        let envFile = world.directory.join("config/factoryctl/env")
        var consumerEnv = world.environment
        for line in try String(contentsOfFile: envFile, encoding: .utf8).split(separator: "\n") where !line.hasPrefix("#") {
            let parts = line.split(separator: "=", maxSplits: 1)
            consumerEnv[String(parts[0])] = String(parts[1])
        }
        let consumer = try ConsumerProcess(binary: FactoryctlBinary.path, arguments: ["consume", "--settle", "0", "--heartbeat", "1"],
                                           environment: consumerEnv, log: world.directory.join("consume.log"))
        defer { consumer.stop() }
        #expect(bootstrap.waitForExit(timeout: 40) == 0, "\(bootstrap.output)\n\(consumer.output)")

        #expect(try world.head(directory) == world.originHead())
        #expect(try world.git(["symbolic-ref", "HEAD"], in: directory) == "refs/heads/main")
        #expect(try world.git(["status", "--porcelain"], in: directory).isEmpty)
        #expect(world.read(directory, ".env") == "API_KEY=change-me\n")
        #expect(FileManager.default.fileExists(atPath: directory + "/.venv/pyvenv.cfg"), "synced")
        #expect(try Self.mode(envFile) == 0o600)
        let written = try String(contentsOfFile: envFile, encoding: .utf8)
        for (name, value) in enrollment { #expect(written.contains("\n\(name)=\(value)\n")) }
        #expect(written.contains("\nUA_FACTORY_DIR=\(directory)\n"))
        let unit = world.read(world.directory.join("config/systemd/user"), "universal-agent-local-factory.service")
        #expect(unit == "[Service]\nWorkingDirectory=\(directory)\n")
        let calls = FakeSystemctl.calls(world.systemctlState)
        for unit in ["universal-agent-local-factory.service", "factoryctl-consume.service"] {
            #expect(calls.contains("--user enable \(unit)") && calls.contains("--user start \(unit)"), "\(calls)")
        }
        let registration = try fleet.registration("eu-7")
        #expect(registration?["commit"] as? String == (try world.originHead()))
        #expect(bootstrap.output.contains("Bootstrapped eu-7 at \(directory)"), "\(bootstrap.output)")
        #expect(!bootstrap.output.contains(enrollment["UA_FACTORY_TOKEN"] ?? "?"), "no secret is printed")
    }

    @Test func aSecondRunChangesNothingAndSaysSo() throws {
        let world = try Self.templateWorld()
        let directory = world.directory.join("factory-b")
        let first = try Self.bootstrap(world, directory, ["--no-start", "--id", "eu-8"])
        #expect(first.status == 0, "\(first.stderr)")
        let before = try world.git(["rev-parse", "HEAD"], in: directory)
        let envFile = world.directory.join("config/factoryctl/env")
        let envBefore = try FileManager.default.attributesOfItem(atPath: envFile)[.modificationDate] as? Date
        let second = try Self.bootstrap(world, directory, ["--no-start", "--id", "eu-8", "--json"])
        #expect(second.status == 0, "\(second.stderr)")
        let json = JSONDoc.object(second, exit: 0)
        #expect(json["changed"] as? Bool == false)
        let actions = (json["steps"] as? [[String: Any]] ?? []).compactMap { $0["action"] as? String }
        #expect(actions.count == 8 && actions.allSatisfy { $0 == "unchanged" || $0 == "skipped" }, "\(actions)")
        #expect(try world.git(["rev-parse", "HEAD"], in: directory) == before)
        #expect(try FileManager.default.attributesOfItem(atPath: envFile)[.modificationDate] as? Date == envBefore)
        let text = try Self.bootstrap(world, directory, ["--no-start", "--id", "eu-8"])
        #expect(text.stdout.hasPrefix("Already bootstrapped: eu-8 at \(directory)") && text.stdout.contains("nothing was changed"), "\(text.stdout)")
    }

    @Test func anExistingDotEnvIsKeptByteForByte() throws {
        let world = try Self.templateWorld()
        let directory = world.directory.join("by-hand")
        try world.git(["clone", "--quiet", world.origin, directory], in: world.directory.path)
        let mine = Data("API_KEY=real-secret\r\n# kept\n\u{0}binary".utf8)
        try mine.write(to: URL(fileURLWithPath: directory + "/.env"))
        let result = try Self.bootstrap(world, directory, ["--no-start", "--id", "eu-9"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(FileManager.default.contents(atPath: directory + "/.env") == mine)
        #expect(result.stdout.contains("kept the existing .env"), "\(result.stdout)")
    }

    @Test(arguments: ["in-place", "releases"])
    func aKillDuringTheSyncIsFinishedByTheNextRun(layout: String) throws {
        let world = try Self.templateWorld()
        let directory = world.directory.join("killed")
        let started = world.directory.join("sync-started")
        // First run: marks that it started, then hangs; every later run syncs for real.
        let sync = try world.script("slow-sync", "if [ -e '\(started)' ]; then exec uv sync; fi\ntouch '\(started)'\nsleep 30\n")
        let env = Self.environment(world, ["UA_FACTORY_SYNC_COMMAND": sync])
        let first = try ConsumerProcess(binary: FactoryctlBinary.path, arguments: [
            "bootstrap", "--repo", world.origin, "--factory-dir", directory, "--no-start", "--id", "eu-10", "--layout", layout,
        ], environment: env, log: world.directory.join("first.log"))
        #expect(eventually { FileManager.default.fileExists(atPath: started) }, "\(first.output)")
        first.signal(SIGKILL)
        // Ended (a zombie until Foundation notices: the orphaned sync holds its pipe for a while).
        #expect(eventually(timeout: 10) { processEnded(first.pid) })
        let record = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: directory + "/.git/factoryctl/bootstrap.json"))) as? [String: Any]
        let group = (record?["sync_group"] as? NSNumber)?.int32Value ?? 0
        #expect(group > 0 && !processEnded(group), "the killed run's sync is still running")

        let second = try Self.bootstrap(world, directory, ["--no-start", "--id", "eu-10", "--layout", layout], environment: env)
        #expect(second.status == 0, "\(second.stderr)")
        #expect(second.stdout.contains(layout == "releases" ? "release       done" : "sync          done"), "\(second.stdout)")
        #expect(FileManager.default.fileExists(atPath: directory + (layout == "releases" ? "/current" : "") + "/.venv/pyvenv.cfg"))
        #expect(processEnded(group), "the orphaned sync was ended")
        #expect(try world.head(directory) == world.originHead())
    }

    @Test func aBadURLLeavesNoDirectoryBehind() throws {
        let world = try Self.templateWorld()
        let directory = world.directory.join("never")
        for repo in [world.directory.join("missing.git"), "ssh://127.0.0.1:\(freeLoopbackPort())/srv/x.git"] {
            let result = try FactoryctlBinary.run(["bootstrap", "--repo", repo, "--factory-dir", directory, "--no-start", "--id", "eu-11"],
                                                  environment: Self.environment(world))
            #expect(result.status == 5, "\(result.stderr)")
            #expect(result.stderr.contains("Nothing was left behind"), "\(result.stderr)")
        }
        let left = try FileManager.default.contentsOfDirectory(atPath: world.directory.path)
        #expect(!left.contains("never") && !left.contains { $0.contains(".bootstrap-") }, "\(left)")
        #expect(!FileManager.default.fileExists(atPath: world.directory.join("config/factoryctl/env")))
    }

    @Test(.enabled(if: SSHServer.available && geteuid() == 0, "needs /usr/sbin/sshd and root"))
    func aRefusedHostKeyLeavesNoDirectoryBehind() throws {
        let world = try Self.templateWorld()
        let ssh = try SSHServer()
        try Command.check(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", ssh.directory.join("impostor")])
        try ssh.trust(hostKeyPublic: String(contentsOfFile: ssh.directory.join("impostor.pub"), encoding: .utf8))
        let directory = world.directory.join("mitm")
        var env = Self.environment(world, ["HOME": ssh.home])
        env.removeValue(forKey: "SSH_AUTH_SOCK")
        let result = try FactoryctlBinary.run(["bootstrap", "--repo", ssh.url(forRepository: world.origin), "--factory-dir", directory,
                                               "--no-start", "--id", "eu-12"], environment: env)
        #expect(result.status == 5, "\(result.stderr)")
        #expect(result.stderr.contains("has CHANGED"), "\(result.stderr)")
        let left = try FileManager.default.contentsOfDirectory(atPath: world.directory.path)
        #expect(!left.contains("mitm") && !left.contains { $0.contains(".bootstrap-") }, "\(left)")
    }

    @Test func theReleasesLayoutStartsWithCurrentOnTheFirstRelease() throws {
        let world = try Self.templateWorld()
        let directory = world.directory.join("releases-factory")
        let result = try Self.bootstrap(world, directory, ["--layout", "releases", "--no-start", "--id", "eu-13"])
        #expect(result.status == 0, "\(result.stderr)")
        let release = "releases/" + String(try world.originHead().prefix(12))
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: directory + "/current") == release)
        #expect(FileManager.default.fileExists(atPath: directory + "/" + release + "/.venv/pyvenv.cfg"), "the release is synced")
        #expect(world.read(directory, "current/.env") == "DATABASE_URL=\nAPI_KEY=change-me\n", "shared .env linked in")
        let unit = world.read(world.directory.join("config/systemd/user"), "universal-agent-local-factory.service") ?? ""
        #expect(unit.contains("WorkingDirectory=\(directory)/current\n"))
    }

    @Test(arguments: [
        ("export UA_REDIS_URL=redis://x\n", "is not a variable name"),
        ("UA_REDIS_URL: redis://:hunter2@hq/0?db=1\n", "is not a variable name"),
        ("UA_REDIS_URL=redis://:hunter2@hq/0\nUA_OPS_TOKEN=hunter2\n", "UA_OPS_TOKEN is refused"),
        ("UA_REDIS_URLL=redis://:hunter2@hq/0\n", "did you mean UA_REDIS_URL?"),
        ("UA_FACTORY_TOKEN=\"hunter2\"\n", "quotes"),
        ("just garbage hunter2\n", "is not NAME=value"),
    ])
    func enrollmentLinesThatAreNotNameValueAreRefusedBeforeAnythingChanges(_ lines: String, _ reason: String) async throws {
        let world = try Self.templateWorld()
        let file = world.directory.join("bad.env")
        try lines.write(toFile: file, atomically: true, encoding: .utf8)
        let directory = world.directory.join("refused")
        let result = await Self.inProcess(world, directory, ["--no-start", "--env-file", "bad.env"])
        #expect(result.status == 64)
        #expect(result.stderr.contains(reason) && result.stderr.contains("bad.env line"), "\(result.stderr)")
        #expect(!result.stderr.contains("hunter2") && !result.stdout.contains("hunter2"), "values are never printed")
        #expect(!FileManager.default.fileExists(atPath: directory))
    }

    @Test func redisThatIsNotReachableIsSaidAndWhatIsDoneIsListed() throws {
        let world = try Self.templateWorld()
        let file = world.directory.join("eu-14.env")
        try "UA_FACTORY_ID=eu-14\nUA_REDIS_URL=redis://127.0.0.1:\(freeLoopbackPort())/0\n".write(toFile: file, atomically: true, encoding: .utf8)
        let directory = world.directory.join("no-redis")
        let result = try Self.bootstrap(world, directory, ["--env-file", file, "--timeout", "2"])
        #expect(result.status == 7, "\(result.stderr)")
        #expect(result.stderr.contains("is not reachable") && result.stderr.contains("not done: registration"), "\(result.stderr)")
        #expect(try world.head(directory) == world.originHead())
    }

    @Test func aPinnedCommitIsClonedAndOneNotOnTheBranchLeavesNothing() throws {
        let world = try Self.templateWorld()
        let first = try world.git(["rev-parse", "HEAD~1"], in: world.seed)
        let pinned = world.directory.join("pinned")
        let result = try Self.bootstrap(world, pinned, ["--no-start", "--id", "eu-15", "--commit", first])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(try world.head(pinned) == first)
        #expect(try world.git(["symbolic-ref", "HEAD"], in: pinned) == "refs/heads/main")
        let elsewhere = try world.commit(in: world.seed, ["side.txt": "not pushed\n"], message: "Local only")
        let refused = try Self.bootstrap(world, world.directory.join("not-pinned"), ["--no-start", "--id", "eu-16", "--commit", elsewhere],
                                         environment: Self.environment(world, ["XDG_CONFIG_HOME": world.directory.join("config-2")]))
        #expect(refused.status == 1 && refused.stderr.contains("is not on origin/main"), "\(refused.stderr)")
        #expect(!FileManager.default.fileExists(atPath: world.directory.join("not-pinned")))
    }

    @Test func anUnsignedCommitIsRefusedUnderAllowedSignersAndLeavesNothing() throws {
        let world = try Self.templateWorld()
        let key = world.directory.join("release_key")
        try Command.check(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", key])
        let pub = try String(contentsOfFile: key + ".pub", encoding: .utf8).split(separator: " ").prefix(2).joined(separator: " ")
        let allowed = world.directory.join("allowed_signers")
        try "release@example.com \(pub)\n".write(toFile: allowed, atomically: true, encoding: .utf8)
        let directory = world.directory.join("unsigned")
        let result = try Self.bootstrap(world, directory, ["--no-start", "--id", "eu-17"],
                                        environment: Self.environment(world, ["UA_ALLOWED_SIGNERS": allowed]))
        #expect(result.status == 1, "\(result.stderr)")
        #expect(result.stderr.contains("is not signed") && result.stderr.contains("Nothing was left behind"), "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: directory))
    }

    @Test func aFailedSyncIsFinishedByTheNextRun() throws {
        let world = try Self.templateWorld()
        let directory = world.directory.join("sync-fails")
        let failing = try Self.bootstrap(world, directory, ["--no-start", "--id", "eu-18"],
                                         environment: Self.environment(world, ["UA_FACTORY_SYNC_COMMAND": "false"]))
        #expect(failing.status == 1)
        #expect(failing.stderr.contains("the sync (false) failed") && failing.stderr.contains("Done: clone, .env; not done: sync"), "\(failing.stderr)")
        let next = try Self.bootstrap(world, directory, ["--no-start", "--id", "eu-18"])
        #expect(next.status == 0, "\(next.stderr)")
        #expect(FileManager.default.fileExists(atPath: directory + "/.venv/pyvenv.cfg"))
        #expect(next.stdout.contains("sync          done"), "\(next.stdout)")
    }

    @Test func theUnfinishedCloneOfAKilledRunIsRemovedByTheNextRun() throws {
        let world = try Self.templateWorld()
        let exited = Process()
        exited.executableURL = URL(fileURLWithPath: "/bin/true")
        try exited.run()
        exited.waitUntilExit()
        // What a bootstrap killed mid-clone leaves: its temporary sibling, named by its (dead) pid.
        let leftover = world.directory.join(".late.bootstrap-\(exited.processIdentifier)")
        try FileManager.default.createDirectory(atPath: leftover + "/.git/objects", withIntermediateDirectories: true)
        let result = try Self.bootstrap(world, world.directory.join("late"), ["--no-start", "--id", "eu-19"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: leftover))
        #expect(try world.head(world.directory.join("late")) == world.originHead())
    }

    @Test func aDryRunListsTheStepsAndChangesNothing() async throws {
        let world = try Self.templateWorld()
        let directory = world.directory.join("dry")
        let result = await Self.inProcess(world, directory, ["--dry-run", "--id", "eu-21", "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        let json = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any] ?? [:]
        #expect(JSONDoc.undocumented(json).isEmpty, "not in docs/json.md: \(JSONDoc.undocumented(json))")
        let steps = json["steps"] as? [[String: Any]] ?? []
        #expect(steps.map { $0["name"] as? String } == ["clone", ".env", "sync", "release", "env file", "unit", "services", "registration"])
        #expect(steps.allSatisfy { $0["action"] as? String == "would" } && json["dry_run"] as? Bool == true)
        #expect(!FileManager.default.fileExists(atPath: directory) && !FileManager.default.fileExists(atPath: world.directory.join("config")))
        #expect(FakeSystemctl.calls(world.systemctlState).isEmpty)
    }

    /// A directory that would write a second line into the unit or the env file is refused.
    @Test(arguments: ["with space", "new\nline", "per%cent"])
    func aFactoryDirectoryThatCouldInjectIntoTheUnitIsRefused(_ name: String) async throws {
        let world = try Self.templateWorld()
        let directory = world.directory.join(name)
        let result = await Self.inProcess(world, directory, ["--no-start", "--id", "eu-22"])
        #expect(result.status == 64 && result.stderr.contains("--factory-dir may hold") && !FileManager.default.fileExists(atPath: directory),
                "\(result.stderr)")
    }

    /// A template whose `.env.example` and unit are symlinks to a secret outside the checkout:
    /// neither is copied.
    @Test func templateFilesThatAreSymlinksAreNotCopied() throws {
        let world = try GitWorld()
        let secret = world.directory.join("secret-key")
        try "PRIVATE KEY MATERIAL\n".write(toFile: secret, atomically: true, encoding: .utf8)
        let seed = world.seed
        try FileManager.default.createDirectory(atPath: seed + "/deploy", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: seed + "/.env.example", withDestinationPath: secret)
        try FileManager.default.createSymbolicLink(atPath: seed + "/deploy/factory.service", withDestinationPath: secret)
        try world.git(["add", "-A"], in: seed)
        try world.git(["commit", "-q", "-m", "Symlinked template files"], in: seed)
        try world.git(["push", "-q", "origin", "HEAD:main"], in: seed)
        let directory = world.directory.join("linked")
        let result = try Self.bootstrap(world, directory, ["--no-start", "--id", "eu-23"])
        let unitFile = world.directory.join("config") + "/systemd/user/universal-agent-local-factory.service"
        #expect(result.status == 0 && !FileManager.default.fileExists(atPath: directory + "/.env")
                && !FileManager.default.fileExists(atPath: unitFile) && !result.stdout.contains("PRIVATE KEY"),
                "\(result.stdout) \(result.stderr)")
    }
}
