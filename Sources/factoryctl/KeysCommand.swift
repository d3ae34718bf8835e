import ArgumentParser
import FactoryKit
import FoundationEssentials
import FactoryBasics
import Glibc

struct KeysCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys",
        abstract: "Manage the Ed25519 keys that sign missions.",
        subcommands: [KeysGenerateCommand.self]
    )
}

struct KeysGenerateCommand: FactoryctlCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Write a new mission signing key pair: DIR/mission.key (0600) and DIR/mission.pub.",
        discussion: """
        mission.key stays at HQ (UA_MISSION_SIGNING_KEY=DIR/mission.key for publish and serve); \
        mission.pub goes to every factory (UA_MISSION_VERIFY_KEYS=/path/mission.pub; several \
        files separated by commas let a new key be rolled out before the old one is retired).
        Each file is one line: a header, the key id (16 hex), the key in base64. Existing files \
        are never overwritten.

        Example:
          factoryctl keys generate --out ~/.config/factoryctl/keys
        """
    )

    @OptionGroup var global: GlobalOptions

    @Option(name: .long, help: ArgumentHelp("The directory to write mission.key and mission.pub to (created 0700 if missing).", valueName: "dir"),
            completion: .directory)
    var out: String

    @Flag(name: .long, help: "Print one JSON object instead of text.")
    var json = false

    func run(_ context: CommandContext) throws {
        let directory = context.absolutePath(out)
        let privatePath = directory + "/mission.key", publicPath = directory + "/mission.pub"
        try prepare(directory, for: [privatePath, publicPath])
        let signer = MissionSigner.generate()
        try write(signer.privateKeyText, to: privatePath, mode: 0o600)
        do {
            try write(signer.publicKeyText, to: publicPath, mode: 0o644)
        } catch {
            unlink(privatePath)
            throw error
        }
        if json {
            try context.printJSON(GeneratedKeys(keyID: signer.keyID, privateKey: privatePath, publicKey: publicPath))
        } else {
            context.say("Key \(signer.keyID)")
            context.say("  private: \(privatePath) (keep at HQ: UA_MISSION_SIGNING_KEY)")
            context.say("  public:  \(publicPath) (on every factory: UA_MISSION_VERIFY_KEYS)")
        }
    }

    /// Refuses to overwrite either file; creates the directory (0700) if it is missing.
    private func prepare(_ directory: String, for paths: [String]) throws(CommandFailure) {
        for path in paths where FileManager.default.fileExists(atPath: path) {
            throw CommandFailure(code: .failedUnchanged, message: "\(path) already exists; nothing was written (move it away to make a new pair)")
        }
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        } catch {
            throw CommandFailure(code: .failedUnchanged, message: "cannot create \(directory): \(error)")
        }
    }

    /// Created exclusively with its final mode: the private key is never readable by others,
    /// not even for an instant.
    private func write(_ text: String, to path: String, mode: mode_t) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else {
            throw CommandFailure(code: .failedUnchanged, message: "cannot create \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        guard written == bytes.count, fchmod(fd, mode) == 0 else {
            unlink(path)
            throw CommandFailure(code: .failedUnchanged, message: "cannot write \(path): \(String(cString: strerror(errno)))")
        }
    }
}

struct GeneratedKeys: Encodable {
    let keyID: String
    let privateKey: String
    let publicKey: String

    enum CodingKeys: String, CodingKey {
        case keyID = "key_id", privateKey = "private_key", publicKey = "public_key"
    }
}
