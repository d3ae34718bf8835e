import CoreMetrics
import FactoryBasics
import FoundationEssentials
import Glibc
import GitKit
import Logging
import Synchronization

/// Turns metrics recorded through the swift-metrics API into bytes of some exposition format: the
/// edge's choice (`MetricsExport.PrometheusText` for the Prometheus text format).
public protocol MetricsExporter: Sendable {
    /// Calls `record` with a fresh factory and returns what was recorded, formatted.
    func render(_ record: (any MetricsFactory) -> Void) -> [UInt8]
}

/// A factory's node_exporter textfile (`UA_FACTORY_METRICS_FILE`), rewritten after every recorded
/// update by whoever ran it (`update`, `rollback`, the consumer's missions), while the checkout
/// lock is held: the counts of updates by result, when the last one and the last success ended,
/// how long the last one took, the commit running, whether an update is provisional, how many
/// commits are quarantined, and the build. Written to a temp file beside it and renamed, as the
/// textfile collector needs (it must never read half a file).
public struct FactoryTextfile: Sendable {
    public let path: String

    public init(path: String) {
        self.path = path
    }

    private static let installed = Mutex<(any MetricsExporter)?>(nil)

    /// The exporter every textfile is written with; the executable installs it at start.
    public static func bootstrap(_ exporter: any MetricsExporter) {
        installed.withLock { $0 = exporter }
    }

    static var exporter: (any MetricsExporter)? { installed.withLock { $0 } }

    /// What the file says, read from the checkout's own records.
    public struct Snapshot: Sendable, Equatable {
        public var counts = UpdateCounts.Values()
        public var lastUpdateAt: Double?
        public var lastSuccessAt: Double?
        public var lastDurationSeconds: Double?
        public var commit: String?
        public var branch: String?
        public var provisional = false
        public var quarantined = 0

        public init() {}

        public static func read(gitDirectory: String, running commit: String?, branch: String?) -> Snapshot {
            var snapshot = Snapshot()
            snapshot.counts = UpdateCounts(gitDirectory: gitDirectory).read()
            let history = UpdateHistory(gitDirectory: gitDirectory).entries()
            if let last = history.last {
                snapshot.lastUpdateAt = last.finishedAt
                snapshot.lastDurationSeconds = Double(last.durationMs) / 1000
            }
            snapshot.lastSuccessAt = history.last(where: { $0.status == .success })?.finishedAt
            snapshot.commit = commit
            snapshot.branch = branch
            snapshot.provisional = LocalStatus.Provisional.read(gitDirectory: gitDirectory) != nil
            snapshot.quarantined = Quarantine(gitDirectory: gitDirectory).entries().count
            return snapshot
        }

        /// Records the snapshot through the swift-metrics API.
        public func record(_ factory: any MetricsFactory) {
            for (result, count) in [("success", counts.success), ("failed", counts.failed)] {
                Counter(label: MetricCatalog.updates.name, dimensions: [("result", result)], factory: factory).increment(by: count)
            }
            let gauges: [(MetricCatalog.Metric, Double?)] = [
                (MetricCatalog.lastUpdate, lastUpdateAt), (MetricCatalog.lastSuccessfulUpdate, lastSuccessAt),
                (MetricCatalog.lastUpdateDuration, lastDurationSeconds), (MetricCatalog.provisional, provisional ? 1 : 0),
                (MetricCatalog.quarantined, Double(quarantined)),
            ]
            for case let (metric, value?) in gauges {
                Gauge(label: metric.name, dimensions: [], factory: factory).record(value)
            }
            if let commit {
                Gauge(label: MetricCatalog.running.name, dimensions: [("commit", commit), ("branch", branch ?? "")], factory: factory).record(1)
            }
            MetricCatalog.recordBuildInfo(factory)
        }
    }

    /// Writes the file for `snapshot`. Failures are logged, never thrown: metrics must not fail
    /// an update.
    public func write(_ snapshot: Snapshot, logger: Logger) {
        guard let exporter = Self.exporter else {
            logger.warning("UA_FACTORY_METRICS_FILE is set but this build has no metrics exporter; \(path) not written")
            return
        }
        let bytes = exporter.render(snapshot.record)
        do {
            try FileWriting.replace(path, with: bytes, mode: 0o644)
        } catch {
            logger.warning("could not write the metrics file: \(error)")
        }
    }

    /// Reads the checkout's records and what it runs now (HEAD, or the live release's) and
    /// writes the file.
    public func write(gitDirectory: String, factoryDirectory: String, logger: Logger) {
        let running = Self.running(factoryDirectory)
        write(Snapshot.read(gitDirectory: gitDirectory, running: running.commit, branch: running.branch), logger: logger)
    }

    static func running(_ factoryDirectory: String) -> (commit: String?, branch: String?) {
        var directory = factoryDirectory
        if let layout = ReleasesLayout.detect(factoryDirectory) {
            guard let live = layout.liveName else { return (nil, nil) }
            directory = layout.path(of: live)
        }
        guard let head = try? Repository.open(at: directory).head() else { return (nil, nil) }
        return (head.commit?.hex, head.branchName)
    }
}

/// How many updates this checkout recorded, by result (`.git/factoryctl/update-counts`, two lines
/// `success N` / `failed N`), kept beside the history (which keeps only its newest entries) so
/// the textfile's counter never goes down.
public struct UpdateCounts: Sendable {
    public let path: String

    public struct Values: Sendable, Equatable {
        public var success = 0
        public var failed = 0
        public init() {}
    }

    public init(gitDirectory: String) {
        path = gitDirectory + "/factoryctl/update-counts"
    }

    public func read() -> Values {
        var values = Values()
        guard let data = FileManager.default.contents(atPath: path) else { return values }
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
            let parts = line.split(separator: " ")
            guard parts.count == 2, let count = Int(parts[1]), count >= 0 else { continue }
            if parts[0] == "success" { values.success = count }
            if parts[0] == "failed" { values.failed = count }
        }
        return values
    }

    /// Adds one; called with the checkout lock held (as the history append is).
    func increment(succeeded: Bool) throws {
        var values = read()
        if succeeded { values.success += 1 } else { values.failed += 1 }
        try FileWriting.replace(path, with: Array("success \(values.success)\nfailed \(values.failed)\n".utf8))
    }
}
