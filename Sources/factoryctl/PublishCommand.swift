import ArgumentParser

struct PublishCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "publish",
        abstract: "Publish a mission on the Redis stream (not available yet)."
    )

    func run() throws {
        throw CommandFailure(code: .failedUnchanged, message: "publish is not available yet in this build")
    }
}
