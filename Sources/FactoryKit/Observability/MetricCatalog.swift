import CoreMetrics

/// Every metric factoryctl records, with its help text and (for histograms) its buckets: the one
/// list the exporter and docs/metrics.md follow. Names are Prometheus's conventions: base units,
/// `_total` counters, `_seconds` durations, `_timestamp_seconds` Unix times.
///
/// FactoryKit records through the swift-metrics API (`CoreMetrics`) with the factory it is given;
/// which format the values leave in is the edge's choice (`MetricsExport` writes Prometheus text).
public enum MetricCatalog {
    public struct Metric: Sendable {
        public let name: String
        public let help: String
        /// Histogram buckets, in the metric's unit (seconds); nil for counters and gauges.
        public let buckets: [Double]?
    }

    // HQ (`serve`'s /metrics).
    public static let factories = Metric(name: "factoryctl_factories", help: "Registered factories that are not stale, by registration status.", buckets: nil)
    public static let factoriesStale = Metric(name: "factoryctl_factories_stale", help: "Registered factories not heard from in 90 seconds.", buckets: nil)
    public static let factoriesBehind = Metric(name: "factoryctl_factories_behind", help: "Factories running another commit than the one HQ wants on their branch.", buckets: nil)
    public static let factoriesFailing = Metric(name: "factoryctl_factories_failing", help: "Factories whose last mission failed.", buckets: nil)
    public static let factoryInfo = Metric(name: "factoryctl_factory_info", help: "One series per registered factory: its commit, branch and status as labels (always 1).", buckets: nil)
    public static let factoryLastSeen = Metric(name: "factoryctl_factory_last_seen_timestamp_seconds", help: "When the factory last registered (Unix time).", buckets: nil)
    public static let factoryLastSuccess = Metric(name: "factoryctl_factory_last_success_timestamp_seconds", help: "When the factory last reported a successful mission, as HQ recorded it (Unix time).", buckets: nil)
    public static let missionResults = Metric(name: "factoryctl_mission_results_total", help: "Mission results HQ saw since it started, by mission kind and outcome.", buckets: nil)
    public static let updateDuration = Metric(name: "factoryctl_update_duration_seconds", help: "How long factories took to run update missions (from their results).",
                                              buckets: [1, 2, 5, 10, 30, 60, 120, 300, 600, 1800])
    public static let rollouts = Metric(name: "factoryctl_rollouts", help: "The newest rollouts (up to 20), by state.", buckets: nil)
    public static let webhookDeliveries = Metric(name: "factoryctl_webhook_deliveries_total", help: "Webhook events HQ delivered or gave up on, by outcome.", buckets: nil)
    public static let webhookBacklog = Metric(name: "factoryctl_webhook_backlog", help: "Webhook events waiting to be delivered.", buckets: nil)

    // Both ends.
    public static let buildInfo = Metric(name: "factoryctl_build_info", help: "The factoryctl build (always 1).", buckets: nil)

    // A factory's node_exporter textfile (`UA_FACTORY_METRICS_FILE`).
    public static let updates = Metric(name: "factoryctl_factory_updates_total", help: "Updates this factory ran, by result.", buckets: nil)
    public static let lastUpdate = Metric(name: "factoryctl_factory_last_update_timestamp_seconds", help: "When this factory's last update ended (Unix time).", buckets: nil)
    public static let lastSuccessfulUpdate = Metric(name: "factoryctl_factory_last_successful_update_timestamp_seconds", help: "When this factory's last successful update ended (Unix time).", buckets: nil)
    public static let lastUpdateDuration = Metric(name: "factoryctl_factory_last_update_duration_seconds", help: "How long this factory's last update took.", buckets: nil)
    public static let running = Metric(name: "factoryctl_factory_commit_info", help: "The commit this factory runs, as a label (always 1).", buckets: nil)
    public static let provisional = Metric(name: "factoryctl_factory_provisional", help: "1 while an update is provisional (in its soak window), else 0.", buckets: nil)
    public static let quarantined = Metric(name: "factoryctl_factory_quarantined_commits", help: "Commits quarantined on this factory (updates to them are refused).", buckets: nil)

    public static let all: [Metric] = [
        factories, factoriesStale, factoriesBehind, factoriesFailing, factoryInfo, factoryLastSeen, factoryLastSuccess,
        missionResults, updateDuration, rollouts, webhookDeliveries, webhookBacklog, buildInfo,
        updates, lastUpdate, lastSuccessfulUpdate, lastUpdateDuration, running, provisional, quarantined,
    ]

    public static let byName: [String: Metric] = Dictionary(uniqueKeysWithValues: all.map { ($0.name, $0) })

    /// Records `factoryctl_build_info{version}`.
    public static func recordBuildInfo(_ factory: any MetricsFactory) {
        Gauge(label: buildInfo.name, dimensions: [("version", FactoryctlVersion.number), ("revision", FactoryctlVersion.commit ?? "")], factory: factory).record(1)
    }
}
