import ArgumentParser
import FactoryKit
import FoundationEssentials
import Dispatch
import FactoryBasics
import Glibc
import RedisKit

/// Where the mission bus is. Flags override the environment.
struct RedisOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp(
        "redis://[:password@]host:port/db, rediss://… (TLS: UA_REDIS_TLS_CA/CERT/KEY) or unix:///path.sock (env UA_REDIS_URL, else UA_REDIS_HOST/PORT/DB, REDIS_PASSWORD).",
        valueName: "url"))
    var redisURL: String?

    @Option(name: .long, help: ArgumentHelp("Mission stream (env UA_DELEGATION_STREAM_NAME; default ua:missions:delegation).", valueName: "name"))
    var stream: String?

    func url(_ context: CommandContext) throws(CommandFailure) -> RedisURL {
        do {
            return try context.environment.redisServerURL(flag: redisURL)
        } catch {
            throw CommandFailure(code: .usage, message: "\(error)")
        }
    }

    func bus(_ context: CommandContext, maxLength: Int = FactoryEnvironment.defaultStreamMaxLength,
             commandTimeout: Double = 10) throws(CommandFailure) -> MissionBus {
        let environment = context.environment
        let client = RedisClient(url: try url(context), connectTimeout: 5, commandTimeout: commandTimeout)
        return MissionBus(redis: client, stream: stream ?? environment.missionStream,
                          deadLetterStream: environment.deadLetterStream, maxLength: maxLength, fleetID: environment.fleetID)
    }
}

/// Runs a Redis step, mapping failures to exit code 7 with a clear message.
func withRedis<T>(_ what: String, _ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let error as RedisError {
        throw CommandFailure(code: error.isConnectionError ? .redisUnavailable : .failedUnchanged, message: "\(what): \(error)")
    }
}
