import FactoryKit
import FoundationEssentials
import Dispatch
import FactoryBasics
import Glibc
import Hummingbird
import Logging

/// Deny by default: a request needs `x-ua-ops-token` equal to the configured token (constant-time)
/// unless its method and raw path are exactly one of `publicRoutes`, or exactly one of
/// `factoryTokenRoutes` and it carries an `x-ua-factory-token` (which the route's handler then
/// checks against the factory it names: `RegistrationCredential`). The raw path is what the
/// client sent, so spellings the router would fold together (`//api/v1/...`, `/api/./v1/...`,
/// percent-encoding, a trailing slash) are never public and never reachable with a factory token.
/// A nil token means `--insecure-no-auth`.
struct OpsTokenMiddleware<Context: RequestContext>: RouterMiddleware {
    let token: [UInt8]?
    /// `"GET /healthz"`-style keys.
    let publicRoutes: Set<String>
    /// The routes a factory token may reach (`"POST /api/v1/factory/registrations"`), and no other.
    let factoryTokenRoutes: Set<String>

    init(token: String?, publicRoutes: Set<String> = [], factoryTokenRoutes: Set<String> = []) {
        self.token = token.map { Array($0.utf8) }
        self.publicRoutes = publicRoutes
        self.factoryTokenRoutes = factoryTokenRoutes
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let token else { return try await next(request, context) }
        let route = "\(request.method.rawValue) \(request.uri.path)"
        if publicRoutes.contains(route) { return try await next(request, context) }
        let given = request.headers.first { $0.name.canonicalName == TokenHeader.ops }.map { Array($0.value.utf8) } ?? []
        if TokenCheck.equal(given, token) { return try await next(request, context) }
        let factoryToken = RegistrationCredential.factoryToken(in: request)
        if factoryToken != nil, factoryTokenRoutes.contains(route) { return try await next(request, context) }
        let error = factoryToken == nil
            ? "missing or invalid x-ua-ops-token"
            : "missing or invalid x-ua-ops-token (an x-ua-factory-token only reaches \(factoryTokenRoutes.sorted().joined(separator: ", ")))"
        return jsonResponse(.unauthorized, ["ok": .bool(false), "error": .string(error)])
    }
}

/// The request headers that carry secrets (never logged, never echoed).
enum TokenHeader {
    /// `UA_OPS_TOKEN`: operators and HQ scripts.
    static let ops = "x-ua-ops-token"
    /// `UA_FACTORY_TOKEN`: one enrolled factory, registering itself.
    static let factory = "x-ua-factory-token"
}

/// Who a registration comes from. A request with an `x-ua-factory-token` is a factory speaking for
/// itself, and is believed only about the factory that token was issued to (whatever else it
/// carries); one without it passed `OpsTokenMiddleware` on the ops token (or `--insecure-no-auth`).
enum RegistrationCredential {
    case factory(token: String)
    case operators

    init(_ request: Request) {
        self = Self.factoryToken(in: request).map { .factory(token: $0) } ?? .operators
    }

    /// The factory token, nil when the header is absent or empty.
    static func factoryToken(in request: Request) -> String? {
        guard let value = request.headers.first(where: { $0.name.canonicalName == TokenHeader.factory })?.value,
              !value.isEmpty else { return nil }
        return value
    }
}

/// Compares secrets in time that depends only on their lengths, not on where they differ.
public enum TokenCheck {
    public static func equal(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var difference = UInt8(a.count == b.count ? 0 : 1)
        let count = max(a.count, b.count)
        for index in 0..<count {
            let x = index < a.count ? a[index] : 0
            let y = index < b.count ? b[index] : 0
            difference |= x ^ y
        }
        return difference == 0
    }
}

/// One line per request on stderr: method, path (no query), status, duration. Never headers.
struct AccessLogMiddleware<Context: RequestContext>: RouterMiddleware {
    let logger: Logger

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        do {
            let response = try await next(request, context)
            log(request, response.status.code, start)
            return response
        } catch let error as any HTTPResponseError {
            log(request, error.status.code, start)
            throw error
        } catch {
            log(request, 500, start)
            throw error
        }
    }

    private func log(_ request: Request, _ status: Int, _ start: ContinuousClock.Instant) {
        let elapsed = ContinuousClock.now - start
        let ms = Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
        logger.info("\(request.method.rawValue) \(request.uri.path) \(status) \(ms.fixed(1)) ms")
    }
}
