import FactoryKit
import FoundationEssentials
import Dispatch
import FactoryBasics
import Glibc
import Hummingbird
import Logging

/// Deny by default: a request needs `x-ua-ops-token` equal to the configured token (constant-time)
/// unless its method and raw path are exactly one of `publicRoutes`. The raw path is what the
/// client sent, so spellings the router would fold together (`//api/v1/...`, `/api/./v1/...`,
/// percent-encoding, a trailing slash) are never public. A nil token means `--insecure-no-auth`.
struct OpsTokenMiddleware<Context: RequestContext>: RouterMiddleware {
    let token: [UInt8]?
    /// `"GET /healthz"`-style keys.
    let publicRoutes: Set<String>

    init(token: String?, publicRoutes: Set<String> = []) {
        self.token = token.map { Array($0.utf8) }
        self.publicRoutes = publicRoutes
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let token else { return try await next(request, context) }
        if !publicRoutes.isEmpty, publicRoutes.contains("\(request.method.rawValue) \(request.uri.path)") {
            return try await next(request, context)
        }
        let given = request.headers.first { $0.name.canonicalName == "x-ua-ops-token" }.map { Array($0.value.utf8) } ?? []
        guard TokenCheck.equal(given, token) else {
            return jsonResponse(.unauthorized, ["ok": .bool(false), "error": .string("missing or invalid x-ua-ops-token")])
        }
        return try await next(request, context)
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
