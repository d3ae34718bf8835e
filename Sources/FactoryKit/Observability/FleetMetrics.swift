import CoreMetrics
import FoundationEssentials
import RedisKit
import Synchronization

/// HQ's metrics, recorded through the swift-metrics API with `factory`: the fleet's gauges, set
/// from what HQ reads at each scrape (`refresh`), and the counters and histogram the watcher
/// (`FleetWatch`) feeds as results arrive. A series whose factory, status or commit went away is
/// destroyed, so a forgotten factory or an old commit does not linger in the scrape.
public final class FleetMetrics: Sendable {
    let factory: any MetricsFactory
    /// Gauges set at the last refresh, by name and label values: what the next refresh destroys
    /// when it does not set them again.
    private let gauges = Mutex<[String: Gauge]>([:])

    public init(factory: any MetricsFactory) {
        self.factory = factory
        MetricCatalog.recordBuildInfo(factory)
    }

    // MARK: Fed by the watcher

    /// One mission result HQ attributed to a factory.
    public func recordResult(_ result: MissionResult) {
        let kind = (result.result["mission_kind"]?.string).map(Self.kindLabel) ?? "unknown"
        Counter(label: MetricCatalog.missionResults.name,
                dimensions: [("kind", kind), ("outcome", result.succeeded ? "success" : "failed")], factory: factory).increment()
        if kind == "update", let milliseconds = result.result["duration_ms"]?.number, milliseconds >= 0, milliseconds < 86_400_000 {
            Timer(label: MetricCatalog.updateDuration.name, dimensions: [], factory: factory).recordMilliseconds(milliseconds)
        }
    }

    public func recordDelivery(delivered: Bool) {
        Counter(label: MetricCatalog.webhookDeliveries.name, dimensions: [("outcome", delivered ? "delivered" : "dropped")], factory: factory).increment()
    }

    /// `system:update_factory` → `update`; anything unknown → `other` (labels stay a small set).
    static func kindLabel(_ kind: String) -> String {
        switch kind {
        case Mission.Kind.update.rawValue: "update"
        case Mission.Kind.pause.rawValue: "pause"
        case Mission.Kind.resume.rawValue: "resume"
        default: "other"
        }
    }

    // MARK: Read at each scrape

    /// What the scrape shows of the fleet: the registrations (light reader), the commit wanted per
    /// branch, the newest rollouts' states, when each
    /// factory last succeeded (HQ's own record), and the webhook backlog.
    public struct Snapshot: Sendable {
        /// The registrations, read with the light scanner `status --fleet` uses (attributed by key).
        public var entries: [FleetEntry]
        /// Branch → the commit HQ wants there (`FleetOverview.wanted`, from the jobs the fleet names).
        public var wanted: [String: String]
        public var rolloutStates: [String]
        public var lastSuccess: [String: Double]
        public var webhookBacklog: Int?
        public var now: Date

        public static func read(_ bus: MissionBus, now: Date = Date()) throws(RedisError) -> Snapshot {
            let entries = try FleetRegistry(redis: bus.redis).entries(capabilities: false)
            var counts: [String: Int] = [:]
            for entry in entries {
                if let id = entry.lastJobID, MissionID.isValid(id) { counts[id, default: 0] += 1 }
            }
            var jobs: [String: MissionBus.JobRecord] = [:]
            for id in counts.sorted(by: { ($0.value, $0.key) > ($1.value, $1.key) }).prefix(FleetOverview.jobLimit).map(\.key) {
                let record = try bus.job(id)
                if record.known { jobs[id] = record }
            }
            let wanted = FleetOverview(registrations: [], jobs: jobs).wanted.mapValues(\.commit)
            let states = try RolloutLine.recent(bus.redis, limit: 20).map(\.state)
            return Snapshot(entries: entries, wanted: wanted, rolloutStates: states, lastSuccess: try FleetWatch.lastSuccesses(bus.redis),
                            webhookBacklog: try WebhookOutbox.backlog(bus.redis), now: now)
        }
    }

    /// Sets every fleet gauge from `snapshot` and destroys the ones it no longer names.
    public func refresh(_ snapshot: Snapshot) {
        var set: [String: Double] = [:]
        var labels: [String: (String, [(String, String)])] = [:]
        func gauge(_ metric: MetricCatalog.Metric, _ dimensions: [(String, String)], _ value: Double) {
            let key = metric.name + "\u{1}" + dimensions.map { $0.0 + "=" + $0.1 }.joined(separator: "\u{1}")
            set[key] = value
            labels[key] = (metric.name, dimensions)
        }
        Self.fleetGauges(snapshot, gauge)
        gauges.withLock { current in
            for (key, old) in current where set[key] == nil {
                old.destroy()
                current[key] = nil
            }
            for (key, value) in set {
                let meter = current[key] ?? Gauge(label: labels[key]!.0, dimensions: labels[key]!.1, factory: factory)
                meter.record(value)
                current[key] = meter
            }
        }
    }

    private static func fleetGauges(_ snapshot: Snapshot, _ gauge: (MetricCatalog.Metric, [(String, String)], Double) -> Void) {
        var byStatus: [String: Int] = ["online": 0, "updating": 0, "paused": 0, "offline": 0]
        var stale = 0, behind = 0, failing = 0
        // Labels carry only what is well-formed: what a factory writes about itself is not
        // trusted to keep the series few or the values short.
        for entry in snapshot.entries where MissionID.isValid(entry.factoryID) {
            let isStale = entry.isStale(now: snapshot.now, after: FleetRegistry.staleAfter)
            let status = byStatus[entry.status] != nil ? entry.status : "other"
            if isStale { stale += 1 } else { byStatus[status, default: 0] += 1 }
            if let branch = entry.branch, let wanted = snapshot.wanted[branch], let commit = entry.commit, commit != wanted { behind += 1 }
            if entry.lastJobStatus == "FAILED" { failing += 1 }
            let id = entry.factoryID
            let commit = entry.commit.flatMap { ObjectIDText.isFull($0) ? $0 : nil } ?? ""
            let branch = entry.branch.flatMap { (try? BranchName.validate($0)) != nil ? $0 : nil } ?? ""
            gauge(MetricCatalog.factoryInfo, [("factory", id), ("commit", commit), ("branch", branch),
                                              ("status", isStale ? "stale" : status)], 1)
            gauge(MetricCatalog.factoryLastSeen, [("factory", id)], entry.lastSeenAt)
            if let success = snapshot.lastSuccess[id] { gauge(MetricCatalog.factoryLastSuccess, [("factory", id)], success) }
        }
        for (status, count) in byStatus { gauge(MetricCatalog.factories, [("status", status)], Double(count)) }
        gauge(MetricCatalog.factoriesStale, [], Double(stale))
        gauge(MetricCatalog.factoriesBehind, [], Double(behind))
        gauge(MetricCatalog.factoriesFailing, [], Double(failing))
        var byState: [String: Int] = Dictionary(uniqueKeysWithValues: ["running", "succeeded", "halted", "rolled_back", "timed_out", "aborted"].map { ($0, 0) })
        for state in snapshot.rolloutStates { byState[state, default: 0] += 1 }
        for (state, count) in byState { gauge(MetricCatalog.rollouts, [("state", state)], Double(count)) }
        if let backlog = snapshot.webhookBacklog { gauge(MetricCatalog.webhookBacklog, [], Double(backlog)) }
    }
}
