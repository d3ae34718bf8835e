import FactoryKit
import FoundationEssentials
import FactoryBasics
import GitKit
import RedisKit

/// Dynamic shell completions (the shells call `factoryctl ---completion ...` as the user presses
/// Tab). Each answers from what is cheap to read, quickly, and offers nothing when it cannot.
enum Completions {
    /// `--branch`: local branches and origin's branches of the checkout the command line names
    /// (`--factory-dir`, else UA_FACTORY_DIR, else the checkout the shell is in).
    @Sendable static func branches(_ words: [String], _ index: Int, _ prefix: String) -> [String] {
        // The shell calls in its own process: the process's environment, through FactoryKit's configuration.
        let here = FileManager.default.currentDirectoryPath
        let directory = value(of: "--factory-dir", in: words) ?? FactoryEnvironment.current.factoryDirectory
            ?? Repository.workTreeRoot(containing: here) ?? here
        guard let repository = try? Repository.open(at: directory) else { return [] }
        return repository.branchNames().filter { $0.hasPrefix(prefix) }
    }

    /// `--target` and `forget ID`: the factory ids registered in Redis (`--redis-url`, else the
    /// environment), with one-second timeouts so a Tab never hangs on an unreachable Redis.
    @Sendable static func factoryIDs(_ words: [String], _ index: Int, _ prefix: String) -> [String] {
        let environment = FactoryEnvironment.current
        guard let url = try? environment.redisServerURL(flag: value(of: "--redis-url", in: words)) else { return [] }
        let client = RedisClient(url: url, connectTimeout: 1, commandTimeout: 1)
        guard let ids = try? client.command(["HKEYS", FleetRegistry.key]).array else { return [] }
        return ids.compactMap(\.text).filter { $0.hasPrefix(prefix) && MissionID.isValid($0) }.sorted()
    }

    /// The value given to `option` on the command line (`--option value` or `--option=value`).
    static func value(of option: String, in words: [String]) -> String? {
        for (index, word) in words.enumerated() {
            if word == option, index + 1 < words.count { return words[index + 1] }
            if word.hasPrefix(option + "=") { return String(word.dropFirst(option.count + 1)) }
        }
        return nil
    }
}
