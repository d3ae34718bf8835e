import ArgumentParser

struct ConsumeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "consume",
        abstract: "Run missions from the Redis stream (not available yet)."
    )

    func run() throws {
        throw CommandFailure(code: .failedUnchanged, message: "consume is not available yet in this build")
    }
}
