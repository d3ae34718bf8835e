import Dispatch
import FactoryBasics
import FactoryKit
import FoundationEssentials
import Hummingbird
import Logging
import MetricsExport
import NIOCore
import RedisKit

/// `UA_METRICS_TOKEN` and `UA_HQ_WEBHOOK_URL`, checked.
public struct ObservabilitySettings: Sendable {
    /// The bearer token `GET /metrics` needs; nil: /metrics answers 404.
    public var metricsToken: String?
    /// Where events are POSTed; nil: no webhook.
    public var webhookURL: String?

    public init(metricsToken: String? = nil, webhookURL: String? = nil) {
        self.metricsToken = metricsToken
        self.webhookURL = webhookURL
    }

    public init(environment: FactoryEnvironment) throws(FactoryError) {
        if let token = environment["UA_METRICS_TOKEN"], !token.isEmpty {
            guard token.utf8.count >= OpsToken.minimumLength else {
                throw .invalidArgument("UA_METRICS_TOKEN is shorter than \(OpsToken.minimumLength) characters: refusing a token that can be guessed. Generate one with `openssl rand -hex 32`")
            }
            guard token != environment.opsToken else {
                throw .invalidArgument("UA_METRICS_TOKEN is the same as UA_OPS_TOKEN: give Prometheus a token of its own (it only reads), e.g. `openssl rand -hex 32`")
            }
            metricsToken = token
        }
        if let url = environment["UA_HQ_WEBHOOK_URL"], !url.isEmpty {
            // Never echo the URL: Slack's and Mattermost's carry their secret in the path.
            guard url.hasPrefix("https://") || url.hasPrefix("http://"), url.utf8.count <= 2048,
                  !url.utf8.contains(where: { $0 <= 0x20 || $0 == 0x7F }) else {
                throw .invalidArgument("UA_HQ_WEBHOOK_URL must be an http:// or https:// URL without spaces or control characters")
            }
            webhookURL = url
        }
    }
}

/// HQ's scrape: a registry that lives as long as `serve` (the watcher's counters accumulate in
/// it), the fleet gauges refreshed from Redis at each scrape, written by swift-prometheus.
final class MetricsEndpoint: Sendable {
    let registry = PrometheusRegistryBox()
    let fleet: FleetMetrics

    init() {
        fleet = FleetMetrics(factory: registry.factory)
    }

    /// Scrapes run one at a time on a queue of their own: a refresh that registers many new
    /// series (the first one at 10,000 factories takes seconds) never holds a cooperative thread.
    private let queue = DispatchQueue(label: "factoryctl.metrics")

    func scrape(_ snapshot: FleetMetrics.Snapshot) async -> [UInt8] {
        await withCheckedContinuation { continuation in
            queue.async { [fleet, registry] in
                fleet.refresh(snapshot)
                continuation.resume(returning: registry.emit())
            }
        }
    }
}

extension Gateway {
    /// `GET /metrics`: 404 without `UA_METRICS_TOKEN`, 401 without `Authorization: Bearer <it>`
    /// (compared in constant time), else the Prometheus text format.
    func metrics(_ request: Request) async -> Response {
        guard let token = configuration.observability.metricsToken, let endpoint = metricsEndpoint else {
            return jsonResponse(.notFound, ["ok": .bool(false), "error": .string("not found")])
        }
        let header = request.headers.first { $0.name.canonicalName == "authorization" }?.value ?? ""
        let given = header.hasPrefix("Bearer ") ? Array(header.utf8.dropFirst(7)) : []
        guard TokenCheck.equal(given, Array(token.utf8)) else {
            var response = jsonResponse(.unauthorized, ["ok": .bool(false), "error": .string("missing or invalid bearer token (UA_METRICS_TOKEN)")])
            response.headers[.wwwAuthenticate] = "Bearer"
            return response
        }
        do {
            let snapshot = try await redis.run { bus in try FleetMetrics.Snapshot.read(bus) }
            let bytes = await endpoint.scrape(snapshot)
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8", .cacheControl: "no-store"],
                            body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
        } catch {
            return redisFailure(error)
        }
    }

    /// Starts the watcher (when metrics or a webhook want it) and the webhook's deliverer, each on
    /// a thread and Redis connection of its own, so neither ever holds up a route.
    func startWatching(stop: StopSignal) {
        let observability = configuration.observability
        guard observability.metricsToken != nil || observability.webhookURL != nil else { return }
        let (settings, logger, metrics) = (busSettings, logger, metricsEndpoint?.fleet)
        let bus: @Sendable () -> MissionBus = {
            MissionBus(redis: RedisClient(url: settings.url), stream: settings.stream, deadLetterStream: settings.deadLetterStream,
                       maxLength: settings.maxLength, fleetID: settings.fleetID)
        }
        let webhook = observability.webhookURL != nil
        detachThread {
            let watchBus = bus()
            // Registers every factory's series once, before the first scrape asks: swift-prometheus
            // copies a family's series on each new one, so 30,000 new series take seconds, not
            // the milliseconds a scrape of known ones does.
            if let metrics, let snapshot = try? FleetMetrics.Snapshot.read(watchBus) { metrics.refresh(snapshot) }
            FleetWatch(bus: watchBus, metrics: metrics, outbox: webhook ? WebhookOutbox(redis: watchBus.redis) : nil, logger: logger).run(stop: stop)
        }
        guard let url = observability.webhookURL else { return }
        detachThread {
            WebhookDelivery(outbox: WebhookOutbox(redis: bus().redis), url: url, logger: logger, metrics: metrics).run(stop: stop)
        }
        logger.notice("webhook: events go to the configured UA_HQ_WEBHOOK_URL")
    }
}
