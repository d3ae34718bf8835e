import FoundationEssentials
import FactoryBasics
import RedisKit

/// The fleet as HQ's page shows it: registrations, the recent jobs they name, the commit HQ wants
/// on each branch, and who is behind it or failed and why.
///
/// "Wanted" is the commit the newest update job for a branch moved factories to: the `to_commit`
/// of its latest successful result. It is read from the registry (each factory's last job) and
/// those jobs' records, so it needs no checkout at HQ.
public struct FleetOverview: Sendable {
    public let registrations: [Registration]
    /// Job records by id, for the jobs the registrations name (valid ids only).
    public let jobs: [String: MissionBus.JobRecord]
    /// Branch → the commit HQ wants there, and the job that says so.
    public let wanted: [String: (commit: String, jobID: String)]
    /// The newest rollouts.
    public var rollouts: [RolloutLine] = []

    /// At most this many distinct jobs are read per page (the most-named ones first).
    public static let jobLimit = 25

    public init(registrations: [Registration], jobs: [String: MissionBus.JobRecord]) {
        self.registrations = registrations
        self.jobs = jobs
        var wanted: [String: (commit: String, jobID: String, publishedAt: Double, finishedAt: Double)] = [:]
        for (id, record) in jobs {
            guard let meta = record.meta, meta["kind"]?.string == Mission.Kind.update.rawValue, let branch = meta["branch"]?.string else { continue }
            let publishedAt = meta["published_at"]?.number ?? 0
            for result in record.results where result.succeeded {
                guard let commit = result.result["to_commit"]?.string, ObjectIDText.isFull(commit) else { continue }
                let finishedAt = result.result["finished_at"]?.number ?? 0
                if let current = wanted[branch],
                   (current.publishedAt, current.finishedAt) >= (publishedAt, finishedAt) { continue }
                wanted[branch] = (commit, id, publishedAt, finishedAt)
            }
        }
        self.wanted = wanted.mapValues { ($0.commit, $0.jobID) }
    }

    /// Reads the registry and the records of the jobs it names.
    public static func read(_ bus: MissionBus) throws(RedisError) -> FleetOverview {
        let registrations = try FleetRegistry(redis: bus.redis).all()
        var counts: [String: Int] = [:]
        for registration in registrations {
            if let id = registration.lastJobID, MissionID.isValid(id) { counts[id, default: 0] += 1 }
        }
        let ids = counts.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key > $1.key }.prefix(jobLimit).map(\.key)
        var jobs: [String: MissionBus.JobRecord] = [:]
        for id in ids {
            let record = try bus.job(id)
            if record.known { jobs[id] = record }
        }
        var overview = FleetOverview(registrations: registrations, jobs: jobs)
        overview.rollouts = try RolloutLine.recent(bus.redis)
        return overview
    }

    /// True when the factory runs another commit than the one HQ wants on its branch.
    public func isBehind(_ registration: Registration) -> Bool {
        guard let branch = registration.branch, let wanted = wanted[branch]?.commit, let commit = registration.commit else { return false }
        return commit != wanted
    }

    /// Why the factory's last job failed: its result's failure code and error, if it failed.
    public func failureReason(_ registration: Registration) -> String? {
        guard registration.lastJobStatus == "FAILED", let id = registration.lastJobID,
              let result = jobs[id]?.results.last(where: { $0.factoryID == registration.factoryID }) else { return nil }
        let code = result.result["failure"]?.string
        let text = [code, result.error].compactMap { $0 }.joined(separator: ": ")
        return text.isEmpty ? nil : text
    }
}

/// A full 40-hex commit id, as results carry them.
enum ObjectIDText {
    static func isFull(_ text: String) -> Bool {
        text.utf8.count == 40 && text.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }
}
