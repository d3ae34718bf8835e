import FoundationEssentials
import FactoryBasics
import HTTPKit

/// The optional health gate after a restart (`UA_FACTORY_HEALTH_URL`): the URL must answer 2xx
/// within the timeout, asked about twice a second. Native HTTP (libcurl, no shell).
public struct HealthGate: Sendable {
    public let url: String
    public let timeout: Double

    public init(url: String, timeout: Double) {
        self.url = url
        self.timeout = timeout
    }

    /// Only http and https URLs.
    public static func isValid(_ url: String) -> Bool {
        let lower = url.lowercased()
        return (lower.hasPrefix("http://") || lower.hasPrefix("https://")) && !url.contains(where: { $0 == " " || $0.isNewline })
    }

    /// nil once the URL answered 2xx; else what it last said.
    public func wait(shouldCancel: () -> Bool = { false }) -> String? {
        let deadline = Date().addingTimeInterval(timeout)
        var last = "no answer"
        while true {
            let remaining = deadline.timeIntervalSinceNow
            do {
                let status = try HTTPClient.get(url, timeout: max(0.1, min(5, remaining)))
                if (200..<300).contains(status) { return nil }
                last = "HTTP \(status)"
            } catch {
                last = error.message
            }
            if Date() >= deadline || shouldCancel() { return last }
            sleep(seconds: min(0.5, max(0, deadline.timeIntervalSinceNow)))
        }
    }
}
