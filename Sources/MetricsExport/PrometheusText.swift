import CoreMetrics
import FactoryKit
import Prometheus

/// The Prometheus text format, written by swift-prometheus: the exporter `serve` (/metrics) and
/// factories (`UA_FACTORY_METRICS_FILE`) use for what FactoryKit records through swift-metrics.
///
/// swift-prometheus's own `PrometheusMetricsFactory` registers every metric without help text
/// (and a help text given later for the same name is a fatal mismatch); this factory registers
/// each with the help and buckets `MetricCatalog` gives it, so every family has its `# HELP` line
/// (`promtool check metrics` asks for one). Names are FactoryKit's as they are.
public struct PrometheusText: MetricsExporter {
    public init() {}

    public func render(_ record: (any MetricsFactory) -> Void) -> [UInt8] {
        let registry = PrometheusCollectorRegistry()
        record(CatalogFactory(registry: registry))
        return registry.emitToBuffer()
    }
}

/// A swift-metrics factory over one registry, with `MetricCatalog`'s help texts and buckets.
public struct CatalogFactory: MetricsFactory {
    public let registry: PrometheusCollectorRegistry

    public init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
    }

    private func help(_ label: String) -> String { MetricCatalog.byName[label]?.help ?? "" }

    public func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        registry.makeCounter(name: label, labels: dimensions, help: help(label))
    }

    public func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
        registry.makeCounter(name: label, labels: dimensions, help: help(label))
    }

    public func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        guard aggregate else { return registry.makeGauge(name: label, labels: dimensions, help: help(label)) }
        let buckets = MetricCatalog.byName[label]?.buckets ?? [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
        return registry.makeValueHistogram(name: label, labels: dimensions, buckets: buckets, help: help(label))
    }

    public func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
        registry.makeGauge(name: label, labels: dimensions, help: help(label))
    }

    public func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        let seconds = MetricCatalog.byName[label]?.buckets ?? [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
        let buckets = seconds.map { Duration.milliseconds(Int64(($0 * 1000).rounded())) }
        return registry.makeDurationHistogram(name: label, labels: dimensions, buckets: buckets, help: help(label))
    }

    public func destroyCounter(_ handler: any CounterHandler) {
        if let counter = handler as? Prometheus.Counter { registry.unregisterCounter(counter) }
    }

    public func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) {
        if let counter = handler as? Prometheus.Counter { registry.unregisterCounter(counter) }
    }

    public func destroyRecorder(_ handler: any RecorderHandler) {
        if let gauge = handler as? Prometheus.Gauge { registry.unregisterGauge(gauge) }
        if let histogram = handler as? ValueHistogram { registry.unregisterValueHistogram(histogram) }
    }

    public func destroyMeter(_ handler: any MeterHandler) {
        if let gauge = handler as? Prometheus.Gauge { registry.unregisterGauge(gauge) }
    }

    public func destroyTimer(_ handler: any TimerHandler) {
        if let histogram = handler as? DurationHistogram { registry.unregisterDurationHistogram(histogram) }
    }
}

/// One registry for the life of a process (HQ's /metrics): what is recorded through `factory`
/// accumulates; `emit()` writes it all.
public final class PrometheusRegistryBox: Sendable {
    let registry = PrometheusCollectorRegistry()

    public init() {}

    public var factory: CatalogFactory { CatalogFactory(registry: registry) }

    public func emit() -> [UInt8] { registry.emitToBuffer() }
}
