@testable import FactoryGateway
import FactoryKit
import Foundation
import Logging
import RedisKit
import Testing

/// What `serve` takes from the environment, as `publish` takes it.
@Suite struct GatewayConfigurationTests {
    static func configuration(_ environment: [String: String]) throws -> GatewayConfiguration {
        try GatewayConfiguration(environment: FactoryEnvironment(["FACTORY_ROLE": "HEADQUARTERS"].merging(environment) { $1 }),
                                 insecureNoAuth: true)
    }

    @Test func servesPublishersWaitForAReplicaAsLongAsUARedisWaitMsSays() throws {
        let configuration = try Self.configuration(["UA_REDIS_WAIT_MS": "250"])
        let bus = MissionBus(redis: RedisClient(url: try RedisURL("redis://127.0.0.1:1")), stream: "s", deadLetterStream: "d")
        #expect(configuration.publisher(bus, logger: Logger(label: "test")).replicaWaitMilliseconds == 250)
    }

    @Test func aBadUARedisWaitMsIsRefusedBeforeServeListens() throws {
        #expect(throws: FactoryError.self) { try Self.configuration(["UA_REDIS_WAIT_MS": "soon"]) }
    }
}
