import FactoryKit
import Foundation
import Testing
import TestSupport

/// docs/json.md: every key the commands print must be listed there (as `key`).
enum JSONDoc {
    static let text: String = (try? String(contentsOfFile: Package.root + "/docs/json.md", encoding: .utf8)) ?? ""

    /// Keys in `value` (recursively) that docs/json.md does not name. Children of objects keyed
    /// by factory id (`unreachable`, `deferred`) are data, not fields.
    static func undocumented(_ value: Any, path: String = "") -> [String] {
        var missing: [String] = []
        if let object = value as? [String: Any] {
            for (key, child) in object {
                if !text.contains("`\(key)`") { missing.append(path + key) }
                if key != "unreachable" && key != "deferred" { missing += undocumented(child, path: path + key + ".") }
            }
        } else if let array = value as? [Any] {
            for child in array { missing += undocumented(child, path: path) }
        }
        return missing
    }

    /// Parses stdout as exactly one JSON object and checks the contract keys.
    static func object(_ result: Command.Result, exit: Int32, sourceLocation: SourceLocation = #_sourceLocation) -> [String: Any] {
        let lines = result.stdout.split(separator: "\n")
        #expect(lines.count == 1, "exactly one line of JSON on stdout: \(result.stdout)", sourceLocation: sourceLocation)
        let object = (try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8))) as? [String: Any] ?? [:]
        #expect(result.status == exit, "\(result.stderr)", sourceLocation: sourceLocation)
        #expect(object["schema_version"] as? Int == 1, sourceLocation: sourceLocation)
        #expect(object["exit_code"] as? Int == Int(exit), sourceLocation: sourceLocation)
        #expect(object["ok"] as? Bool == (exit == 0 || exit == 11), sourceLocation: sourceLocation)
        #expect(object.keys.contains("error"), sourceLocation: sourceLocation)
        if exit != 0 && exit != 11 { #expect(object["error"] is String, sourceLocation: sourceLocation) }
        #expect(undocumented(object).isEmpty, "not in docs/json.md: \(undocumented(object))", sourceLocation: sourceLocation)
        return object
    }
}

@Suite struct JSONContractTests {
    @Test func everyFailureValueIsDocumented() {
        for failure in UpdateFailure.allCases {
            #expect(JSONDoc.text.contains("`\(failure.rawValue)`"), "docs/json.md lacks failure \(failure.rawValue)")
        }
        for other in ["state_not_saved", "superseded"] { #expect(JSONDoc.text.contains("`\(other)`")) }
    }

    @Test func updateSuccessAndFailureAreOneDocumentedObjectEach() throws {
        let world = try GitWorld()
        let env = world.environment
        try world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        let ok = JSONDoc.object(try FactoryctlBinary.run(["update", "--json", "--no-sync"],
                                                         factoryDir: world.factory, environment: env), exit: 0)
        #expect(ok["changed"] as? Bool == true)
        let same = JSONDoc.object(try FactoryctlBinary.run(["update", "--json", "--no-sync", "--exit-code"],
                                                           factoryDir: world.factory, environment: env), exit: 11)
        #expect(same["changed"] as? Bool == false)
        // A rollback (the sync fails) and a preflight refusal.
        try world.pushUpstream(["app.py": "print('v3')\n"], message: "v3")
        var failing = env
        failing["UA_FACTORY_SYNC_COMMAND"] = "false"
        // The sync fails for the previous code too: rolled back, the environment owed (exit 6).
        let rolledBack = JSONDoc.object(try FactoryctlBinary.run(["update", "--json"],
                                                                 factoryDir: world.factory, environment: failing), exit: 6)
        #expect(rolledBack["rolled_back"] as? Bool == true && rolledBack["attempted"] is String && rolledBack["environment_owed"] is String)
        try world.write(world.factory, "app.py", "local edit\n")
        let refused = JSONDoc.object(try FactoryctlBinary.run(["update", "--json"], factoryDir: world.factory, environment: env), exit: 4)
        #expect(refused["failure"] as? String == "preflight")
        // The rollback above could not re-sync (the sync fails): the sync is owed, nothing is
        // redone first, and nothing checks out over the operator's edit.
        #expect(world.read(world.factory, "app.py") == "local edit\n")
        let status = JSONDoc.object(try FactoryctlBinary.run(["status", "--json"], factoryDir: world.factory, environment: env), exit: 0)
        #expect((status["last_update"] as? [String: Any])?["failure"] as? String == "preflight")
        #expect(status["needs_attention"] is String, "\(status)")
        // Usage errors too.
        let usage = JSONDoc.object(try FactoryctlBinary.run(["update", "--json", "--branch", "bad..name"],
                                                            factoryDir: world.factory, environment: env), exit: 64)
        #expect((usage["error"] as? String)?.contains("bad..name") == true)
        #expect((usage["error"] as? String)?.contains("Usage:") == false, "the message, not the usage text")
    }

    @Test func failuresWithoutAnObjectOfTheirOwnStillPrintOne() throws {
        let directory = TemporaryDirectory("json-contract")
        var env = ProcessInfo.processInfo.environment
        for key in ["UA_FACTORY_DIR", "UA_REDIS_URL", "FACTORY_ROLE"] { env.removeValue(forKey: key) }
        let outside = try FactoryctlBinary.run(["status", "--json"], factoryDir: directory.path, environment: env)
        #expect((JSONDoc.object(outside, exit: 1)["error"] as? String)?.contains("not a git") == true, "\(outside.stdout)")
        env["FACTORY_ROLE"] = "LOCAL_WORKER"
        _ = JSONDoc.object(try FactoryctlBinary.run(["publish", "update", "--json"], environment: env), exit: 8)
        env["FACTORY_ROLE"] = "HEADQUARTERS"
        env["UA_REDIS_URL"] = "unix://" + directory.join("nothing.sock")
        _ = JSONDoc.object(try FactoryctlBinary.run(["publish", "update", "--json"], environment: env), exit: 7)
        _ = JSONDoc.object(try FactoryctlBinary.run(["status", "--fleet", "--json"], environment: env), exit: 7)
        // --help is not a failure and prints no object.
        let help = try FactoryctlBinary.run(["status", "--json", "--help"], environment: env)
        #expect(help.status == 0 && !help.stdout.hasPrefix("{"))
    }

    @Test func statusJobUnknownIsExitOneWithOrWithoutJSON() throws {
        let redis = try RedisServer()
        var env = ProcessInfo.processInfo.environment
        env["UA_REDIS_URL"] = redis.url
        let text = try FactoryctlBinary.run(["status", "--job", "update-000000000000"], environment: env)
        #expect(text.status == 1)
        let json = JSONDoc.object(try FactoryctlBinary.run(["status", "--job", "update-000000000000", "--json"], environment: env),
                                  exit: 1)
        #expect(json["known"] as? Bool == false)
    }
}

@Suite struct FleetCommandTests {
    func register(_ fleet: FleetWorld, _ id: String, secondsAgo: Double = 0, status: String = "online") throws {
        let seen = Date().timeIntervalSince1970 - secondsAgo
        try fleet.redis.cli(["HSET", "factoryctl:registry", id,
                             #"{"factory_id": "\#(id)", "factory_role": "LOCAL_WORKER", "registration_status": "\#(status)", "host": "h-\#(id)", "last_seen_at": \#(seen), "commit": "0123456789abcdef0123456789abcdef01234567"}"#])
    }

    @Test func publishRefusesTargetsNoRegisteredFactoryMatches() throws {
        let fleet = try FleetWorld()
        for id in ["eu-1", "eu-2", "us-1"] { try register(fleet, id) }
        let typo = try FactoryctlBinary.run(["publish", "update", "--target", "eu-l"], environment: fleet.environment)
        #expect(typo.status == 8)
        #expect(typo.stderr.contains("'eu-l' matches no registered factory") && typo.stderr.contains("registered: eu-1, eu-2"), "\(typo.stderr)")
        let glob = try FactoryctlBinary.run(["publish", "update", "--target", "ap-*", "--json"], environment: fleet.environment)
        #expect(JSONDoc.object(glob, exit: 8)["error"] as? String != nil)
        #expect(try fleet.redis.cli(["EXISTS", "ua:missions:delegation"]) == "0", "nothing was written")
        let mixed = try FactoryctlBinary.run(["publish", "pause", "--target", "eu-1", "--target", "eu-9"], environment: fleet.environment)
        #expect(mixed.status == 8 && mixed.stderr.contains("eu-9"))
        #expect(try fleet.redis.cli(["EXISTS", "ua:missions:delegation"]) == "0")
        let allowed = try FactoryctlBinary.run(["publish", "update", "--target", "new-1", "--allow-unregistered", "--json"],
                                               environment: fleet.environment)
        #expect(JSONDoc.object(allowed, exit: 0)["job_id"] is String)
        #expect(try fleet.redis.cli(["XLEN", "ua:missions:delegation"]) == "1")
    }

    @Test func publishDryRunListsTheMatchesAndWritesNothing() throws {
        let fleet = try FleetWorld()
        try register(fleet, "eu-1")
        try register(fleet, "eu-2", secondsAgo: 600)
        try register(fleet, "us-1")
        let text = try FactoryctlBinary.run(["publish", "update", "--target", "eu-*", "-n"], environment: fleet.environment)
        #expect(text.status == 0, "\(text.stderr)")
        #expect(text.stdout.contains("2 registered factories match (1 live)"), "\(text.stdout)")
        #expect(text.stdout.contains("eu-2") && text.stdout.contains("(stale)") && !text.stdout.contains("us-1"))
        let json = JSONDoc.object(try FactoryctlBinary.run(["publish", "update", "--target", "eu-*", "--dry-run", "--json"],
                                                           environment: fleet.environment), exit: 0)
        #expect((json["matches"] as? [[String: Any]])?.compactMap { $0["factory_id"] as? String } == ["eu-1", "eu-2"])
        #expect(try fleet.redis.cli(["EXISTS", "ua:missions:delegation"]) == "0")
        #expect(try fleet.redis.cli(["KEYS", "factoryctl:job:*"]).isEmpty)
    }

    @Test func forgetRemovesADecommissionedFactoryAndRefusesALiveOne() throws {
        let fleet = try FleetWorld()
        try register(fleet, "old-1", secondsAgo: 3600)
        try register(fleet, "live-1")
        var worker = fleet.environment
        worker["FACTORY_ROLE"] = "LOCAL_WORKER"
        #expect(try FactoryctlBinary.run(["forget", "old-1"], environment: worker).status == 8)
        let unknown = try FactoryctlBinary.run(["forget", "old-2"], environment: fleet.environment)
        #expect(unknown.status == 1 && unknown.stderr.contains("registered: old-1"), "\(unknown.stderr)")
        let live = try FactoryctlBinary.run(["forget", "live-1"], environment: fleet.environment)
        #expect(live.status == 8 && live.stderr.contains("is live"), "\(live.stderr)")
        #expect(try fleet.redis.cli(["HEXISTS", "factoryctl:registry", "live-1"]) == "1")
        let gone = JSONDoc.object(try FactoryctlBinary.run(["forget", "old-1", "--json"], environment: fleet.environment), exit: 0)
        #expect(gone["factory_id"] as? String == "old-1" && gone["was_live"] as? Bool == false)
        #expect(try fleet.redis.cli(["HEXISTS", "factoryctl:registry", "old-1"]) == "0")
        #expect(try FactoryctlBinary.run(["forget", "live-1", "--force"], environment: fleet.environment).status == 0)
        #expect(try fleet.redis.cli(["HLEN", "factoryctl:registry"]) == "0")
        #expect(try FactoryctlBinary.run(["forget", "bad id!"], environment: fleet.environment).status == 64)
    }

    @Test func publishWaitShowsProgressAndNamesStaleFactoriesAtOnce() throws {
        let fleet = try FleetWorld()
        try register(fleet, "f-9", secondsAgo: 600)
        var env = fleet.environment
        // A sync that takes a moment, so the "updating" registration is seen.
        env["UA_FACTORY_SYNC_COMMAND"] = try fleet.world.script("slow-sync", "sleep 2\n")
        let supervisor = Supervisor()
        defer { supervisor.stopAll() }
        let consumerEnvironment = env
        try supervisor.supervise("f-1") { try fleet.consumer("f-1", environment: consumerEnvironment) }
        #expect(try fleet.waitUntilRegistered("f-1"))
        let target = try fleet.world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        let result = try FactoryctlBinary.run(["publish", "update", "--target", "f-*", "--wait", "--timeout", "60",
                                               "--log-level", "error"], environment: fleet.environment)
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.stderr.split(separator: "\n").map(String.init)
        let short = String(target.prefix(7))
        let order = ["f-9: stale, not waited for", "waiting for 1 factory", "f-1: received, updating (1 pending)",
                     "f-1: SUCCESS", "f-1: back, registered on \(short) (0 pending)"]
        let positions = order.map { needle in lines.firstIndex { $0.contains(needle) } }
        #expect(positions.allSatisfy { $0 != nil }, "\(result.stderr)")
        #expect(positions.compactMap { $0 } == positions.compactMap { $0 }.sorted(), "in the order it happened: \(result.stderr)")
        let json = JSONDoc.object(try FactoryctlBinary.run(["status", "--fleet", "--json"], environment: fleet.environment), exit: 0)
        #expect((json["factories"] as? [[String: Any]])?.count == 2)
    }

    @Test func completionsOfferBranchesAndFactoryIDs() throws {
        let fleet = try FleetWorld()
        try fleet.world.pushUpstream(["b.txt": "b\n"], message: "release", branch: "release")
        try fleet.world.git(["fetch", "--quiet", "origin"], in: fleet.world.factory)
        try fleet.world.git(["branch", "local-only"], in: fleet.world.factory)
        let branches = try FactoryctlBinary.run(["---completion", "update", "--", "--branch", "3", "0",
                                                 "factoryctl", "update", "--branch", ""],
                                                environment: fleet.world.environment, in: fleet.world.factory)
        #expect(branches.stdout.split(separator: "\n") == ["local-only", "main", "release"], "\(branches.stdout) \(branches.stderr)")
        let prefixed = try FactoryctlBinary.run(["---completion", "update", "--", "--branch", "5", "1",
                                                 "factoryctl", "update", "--factory-dir", fleet.world.factory, "--branch", "r"],
                                                environment: fleet.world.environment)
        #expect(prefixed.stdout.split(separator: "\n") == ["release"])
        for id in ["eu-1", "eu-2", "us-1"] { try register(fleet, id) }
        let ids = try FactoryctlBinary.run(["---completion", "publish", "--", "--target", "4", "2",
                                            "factoryctl", "publish", "update", "--target", "eu"], environment: fleet.environment)
        #expect(ids.stdout.split(separator: "\n") == ["eu-1", "eu-2"], "\(ids.stdout) \(ids.stderr)")
    }
}

@Suite struct RestartPrecheckTests {
    @Test func restartWithoutAReachableUserManagerChangesNothing() throws {
        let world = try GitWorld()
        let before = try world.head(world.factory)
        let protected = world.protectedSnapshot()
        try world.pushUpstream(["app.py": "print('v2')\n"], message: "v2")
        var env = world.environment
        env["FAKE_SYSTEMCTL_NO_BUS"] = "1"
        env.removeValue(forKey: "XDG_RUNTIME_DIR")
        let result = try FactoryctlBinary.run(["update", "--restart"], factoryDir: world.factory, environment: env)
        #expect(result.status == 1)
        #expect(result.stderr.contains("Failed to connect to bus") && result.stderr.contains("loginctl enable-linger")
                && result.stderr.contains("XDG_RUNTIME_DIR is not set"), "\(result.stderr)")
        #expect(try world.head(world.factory) == before)
        #expect(try world.git(["rev-parse", "refs/remotes/origin/main"], in: world.factory) .trimmingCharacters(in: .whitespacesAndNewlines) != (try world.originHead()), "not even fetched")
        #expect(world.protectedSnapshot() == protected)
        #expect(FakeSystemctl.calls(world.systemctlState) == ["--user show --property=Version"])
        let json = JSONDoc.object(try FactoryctlBinary.run(["update", "--restart", "--json"],
                                                           factoryDir: world.factory, environment: env), exit: 1)
        #expect(json["failure"] as? String == "systemd_unavailable")
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/script"), "needs script(1) for a pseudo-terminal"))
    func theProgressLineEndsBeforeTheNextLogLine() throws {
        let world = try GitWorld()
        var files: [String: String] = [:]
        for index in 0..<300 { files["data/f\(index).txt"] = String(repeating: "line \(index) of some text\n", count: 40) + UUID().uuidString }
        try world.pushUpstream(files, message: "Many files")
        // Under a pseudo-terminal (script), so the progress meter is on.
        let command = [FactoryctlBinary.path, "update", "--no-sync", "--restart", "--settle", "0", "--factory-dir", world.factory]
            .map { "'\($0)'" }.joined(separator: " ")
        let result = try Command.run(["/usr/bin/script", "-qec", command, "/dev/null"], environment: world.environment)
        #expect(result.status == 0, "\(result.stdout)")
        // Split on the byte: "\r\n" (the terminal's newline) is one Character in Swift.
        let lines = result.stdout.unicodeScalars.split(separator: "\n").map { String(String.UnicodeScalarView($0)) }
        #expect(lines.contains { $0.contains("Receiving objects: 100%") }, "\(result.stdout)")
        for line in lines where line.contains("Receiving objects") {
            #expect(!line.contains("factoryctl.update") && !line.contains("Fast-forwarded"), "shares a line: \(line)")
        }
    }
}

@Suite struct ServeRefusalTests {
    var environment: [String: String] {
        var env = ProcessInfo.processInfo.environment
        env["FACTORY_ROLE"] = "HEADQUARTERS"
        env["UA_REDIS_URL"] = "unix:///nonexistent/redis.sock"
        return env
    }

    @Test func aShortTokenIsRefusedWithoutEchoingIt() throws {
        var env = environment
        env["UA_OPS_TOKEN"] = "short-secret-15"
        let result = try FactoryctlBinary.run(["serve", "--port", "0"], environment: env)
        #expect(result.status == 64)
        #expect(result.stderr.contains("shorter than 16 characters") && !result.stderr.contains("short-secret-15"), "\(result.stderr)")
    }

    @Test func anAddressInUseIsSaidInPlainWordsAndExits12() throws {
        // Something else holds a port.
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        holder.arguments = ["python3", "-c", "import socket,sys,time\ns=socket.socket()\ns.bind(('127.0.0.1',0))\ns.listen()\nprint(s.getsockname()[1],flush=True)\ntime.sleep(60)"]
        let pipe = Pipe()
        holder.standardOutput = pipe
        try holder.run()
        defer { kill(holder.processIdentifier, SIGKILL); holder.waitUntilExit() }
        let port = String(decoding: pipe.fileHandleForReading.availableData, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(Int(port) != nil)
        var env = environment
        env["UA_OPS_TOKEN"] = String(repeating: "k", count: 32)
        let result = try FactoryctlBinary.run(["serve", "--port", port], environment: env)
        #expect(result.status == 12)
        #expect(result.stderr.contains("address already in use: another process is listening on 127.0.0.1:\(port)"), "\(result.stderr)")
        #expect(!result.stderr.contains("errno"), "\(result.stderr)")
    }
}
