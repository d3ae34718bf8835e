import FoundationEssentials
import FactoryBasics
import HTTPKit
import Logging

/// POSTs registrations to `{UA_HQ_BASE_URL}/api/v1/factory/registrations`: an enrolled factory with
/// its own token (`x-ua-factory-token`, from `factoryctl enroll`), one that is not with
/// `x-ua-ops-token`, as the existing fleet does. Failures are logged, never fatal; the token is
/// never logged.
public struct HQRegistrationClient {
    public let baseURL: URL
    public let token: String?
    /// `token` is the factory's own (`UA_FACTORY_TOKEN`), not the ops token.
    public let factoryToken: Bool
    public let logger: Logger
    public var timeout: Double = 5

    public init?(baseURL: String?, token: String?, factoryToken: Bool = false, logger: Logger) {
        guard let baseURL, let url = URL(string: baseURL), let scheme = url.scheme, ["http", "https"].contains(scheme) else {
            return nil
        }
        self.baseURL = url
        self.token = token
        self.factoryToken = factoryToken
        self.logger = logger
    }

    /// Sends the registration; returns the HTTP status, or nil when the request failed.
    ///
    /// libcurl is loaded on the first POST (not at start-up), so a consumer without HQ never maps it.
    @discardableResult
    public func post(_ registration: Registration) -> Int? {
        let url = baseURL.appendingPathComponent("api/v1/factory/registrations").absoluteString
        var headers = ["Content-Type: application/json", "Expect:"]
        if let token { headers.append("\(factoryToken ? "x-ua-factory-token" : "x-ua-ops-token"): \(token)") }
        let status: Int
        do {
            status = try HTTPClient.post(url, headers: headers, body: Array(registration.json.pythonJSON.utf8), timeout: timeout)
        } catch {
            logger.warning("HQ registration POST to \(baseURL.host ?? "HQ") failed: \(error.message)")
            return nil
        }
        if (200..<300).contains(status) {
            logger.debug("registered with HQ (\(status))")
        } else {
            logger.warning("HQ registration POST failed: HTTP \(status)")
        }
        return status
    }
}
