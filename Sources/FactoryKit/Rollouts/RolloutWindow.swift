import FactoryBasics
import FoundationEssentials
import RedisKit

/// A windowed wave (`publish update --max-in-flight N|P%`, like Salt's `-b`): at most
/// `Plan.maxInFlight` members updating at once, the next one sent as soon as one finishes —
/// reported SUCCESS and came back on the new commit, or FAILED, or said nothing for
/// `Plan.waveTimeout` seconds after it was sent (its slot is released and it counts as failed).
/// The failure budget (`maxFailures`) and the failure rate (`maxFailureRate`) halt it: nothing
/// more is sent; with `rollbackOnHalt` the members still in flight are waited for first, so
/// each one that moved is sent back.
///
/// Every step is in the rollout's hash, so a runner that died is resumed where it was:
/// `slot:<id>` = "<job> <sent at>" when a member's mission went out, `done:<id>` =
/// "<SUCCESS|FAILED|TIMED_OUT> <at>" when it finished.
extension Rollout {
    enum WaveEnd {
        /// Within the budget; `failed` members of this wave did not succeed.
        case passed(failed: Int)
        /// Past a limit: `reason` says which.
        case halted(state: State, reason: String)
        /// Asked to stop, or aborted elsewhere: what is in flight finishes on its own.
        case stopped
    }

    /// A windowed wave's members as the rollout's hash records them.
    struct WindowState {
        private(set) var done: [String: (status: String, at: Double)] = [:]
        var inFlight: [String: (job: String, sentAt: Double)] = [:]
        var queue: [String] = []
        /// When each member of the rollout failed, sorted: kept as failures come, not rebuilt.
        private(set) var failureTimes: [Double] = []
        /// With a rate: whether more than its failures fell within its seconds (final once true).
        private(set) var rateExceeded = false
        let rate: FailureRate?
        /// Members of the wave being run that did not succeed.
        private(set) var failedInWave = 0
        private let wave: Set<String>

        /// `fields` of the rollout; `members` of the wave being run. `done` covers every member of
        /// the rollout (the failure rate spans waves).
        init(fields: [String: String], members: [String], rate: FailureRate? = nil) {
            self.rate = rate
            wave = Set(members)
            for (field, value) in fields where field.hasPrefix("done:") {
                let parts = value.split(separator: " ")
                guard parts.count == 2, let at = Double(parts[1]) else { continue }
                done[String(field.dropFirst(5))] = (String(parts[0]), at)
            }
            failureTimes = done.values.filter { $0.status != "SUCCESS" }.map(\.at).sorted()
            rateExceeded = rate?.exceeded(by: failureTimes) ?? false
            failedInWave = failed(among: members)
            for member in members where done[member] == nil {
                let parts = fields["slot:\(member)"]?.split(separator: " ") ?? []
                if parts.count == 2, let sentAt = Double(parts[1]) { inFlight[member] = (String(parts[0]), sentAt) } else { queue.append(member) }
            }
        }

        func failed(among members: [String]) -> Int {
            members.filter { done[$0].map { $0.status != "SUCCESS" } ?? false }.count
        }

        /// `member` finished with `status` at `at`: out of flight, and counted (only the spans
        /// around a new failure are checked against the rate).
        mutating func finish(_ member: String, status: String, at: Double) {
            let before = done[member]
            done[member] = (status, at)
            inFlight[member] = nil
            guard status != "SUCCESS", before.map({ $0.status == "SUCCESS" }) ?? true else { return }
            if wave.contains(member) { failedInWave += 1 }
            let index = failureTimes.firstIndex { $0 > at } ?? failureTimes.count
            failureTimes.insert(at, at: index)
            guard let rate, !rateExceeded, failureTimes.count > rate.failures else { return }
            for start in max(0, index - rate.failures)...index where start + rate.failures < failureTimes.count {
                if failureTimes[start + rate.failures] - failureTimes[start] <= rate.seconds { rateExceeded = true }
            }
        }
    }

    /// Runs wave `wave` as a sliding window until all its members finished, it halts, or it stops.
    func runWindow(_ id: String, plan: Plan, wave: Int, failuresBefore: Int, lease: RolloutLease, stop: StopSignal,
                   onEvent: @escaping (String) -> Void) throws -> WaveEnd {
        let members = plan.waves[wave]
        var state = WindowState(fields: try redis.command(["HGETALL", Self.key(id)]).fieldMap ?? [:], members: members,
                                rate: plan.maxFailureRate)
        // Read once for the whole wave: which members register (and report) under their own keys.
        let enrolled = try Enrollment(redis: redis).enrolled().intersection(members)
        var followers: [String: JobFollower] = [:]
        for (job, ids) in Dictionary(grouping: state.inFlight.keys, by: { state.inFlight[$0]!.job }) {
            followers[job] = try follow(job, ids.sorted(), plan: plan, enrolled: enrolled)
        }
        if !state.inFlight.isEmpty { onEvent("wave \(wave + 1)/\(plan.waves.count): following \(state.inFlight.count) in flight (resumed)") }
        var halting: String?
        var lastFullLook = Date.distantPast
        while true {
            if try redis.command(["HGET", Self.key(id), "state"]).text != State.running.rawValue { return .stopped }
            let fullLook = Date().timeIntervalSince(lastFullLook) >= Self.fullLookInterval
            if fullLook { lastFullLook = Date() }
            try collect(id, &state, followers: &followers, plan: plan, enrolled: enrolled, lease: lease, fullLook: fullLook,
                        onEvent: onEvent)
            if halting == nil { halting = limitPassed(plan, state: state, failures: failuresBefore + state.failedInWave) }
            if let halting, !plan.rollbackOnHalt || state.inFlight.isEmpty { return .halted(state: .halted, reason: halting) }
            if state.queue.isEmpty && state.inFlight.isEmpty { return .passed(failed: state.failedInWave) }
            if stop.isSet { return .stopped }
            let free = max(1, plan.maxInFlight ?? 1) - state.inFlight.count
            if halting == nil, free > 0, !state.queue.isEmpty {
                let batch = Array(state.queue.prefix(free))
                let job = try send(id, batch, plan: plan, lease: lease)
                state.queue.removeFirst(batch.count)
                let now = Date().timeIntervalSince1970
                for member in batch { state.inFlight[member] = (job, now) }
                followers[job] = try follow(job, batch, plan: plan, enrolled: enrolled)
                onEvent("wave \(wave + 1)/\(plan.waves.count): \(batch.joined(separator: ", ")) → \(String(plan.commit.prefix(7))) (\(job)); \(state.inFlight.count) in flight, \(state.queue.count) waiting")
                continue
            }
            let restarting = followers.values.contains { !$0.watch.restarting.isEmpty }
            stop.sleep(restarting ? 0.05 : 0.2)
            try lease.confirm(redis)
        }
    }

    /// Which limit the failures passed, if one.
    private func limitPassed(_ plan: Plan, state: WindowState, failures: Int) -> String? {
        if failures > plan.maxFailures {
            return "\(failures) factor\(failures == 1 ? "y" : "ies") failed or did not report (--max-failures \(plan.maxFailures))"
        }
        if let rate = plan.maxFailureRate, state.rateExceeded {
            return "more than \(rate.failures) failure\(rate.failures == 1 ? "" : "s") within \(rate.secondsText) s (--max-failure-rate \(rate))"
        }
        return nil
    }

    /// How often a window reads the registrations of every member in flight (progress,
    /// deferrals, stale or gone); between those rounds only members that reported a changed
    /// checkout are read (their re-registration frees the slot), so a 50 ms round with 1,000 in
    /// flight reads tens of registrations, not 1,000.
    static let fullLookInterval = 1.0

    /// One round over the jobs in flight: members that finished, or whose time ran out, are done.
    /// The registrations of the members in flight (all of them when `fullLook`, else those
    /// restarting), and the results enrolled ones wrote to their own keys, are read once for all
    /// the jobs (500 keys a command), not job by job.
    private func collect(_ id: String, _ state: inout WindowState, followers: inout [String: JobFollower], plan: Plan,
                         enrolled: Set<String>, lease: RolloutLease, fullLook: Bool, onEvent: (String) -> Void) throws {
        let now = Date()
        let jobs = followers.keys.sorted()
        let owed = jobs.flatMap { job in fullLook ? followers[job]!.watch.owed : followers[job]!.watch.restarting.keys.sorted() }
        let registrations = Dictionary(try FleetRegistry(redis: redis).progress(of: owed, enrolled: enrolled)) { first, _ in first }
        let own = try publisher.bus.ownResults(jobs.flatMap { job in followers[job]!.owedByInbox.map { (jobID: job, id: $0) } })
        let report: (Publisher.WaitEvent) -> Void = { Self.report($0, onEvent) }
        var finished: [(String, String)] = []
        for job in jobs {
            var follower = followers[job]!
            follower.look(registrations: registrations, now: now, onEvent: report)
            follower.take(own: own[job] ?? [], onEvent: report)
            try follower.pollShared(onEvent: report)
            let pending = Set(follower.watch.pending)
            for member in follower.watch.outcome.targeted where state.inFlight[member]?.job == job {
                if !pending.contains(member) {
                    finished.append((member, follower.watch.results[member]?.succeeded == true ? "SUCCESS" : "FAILED"))
                } else if now.timeIntervalSince1970 - max(state.inFlight[member]!.sentAt,
                                                          follower.watch.deferredSeen(member)?.timeIntervalSince1970 ?? 0) >= plan.waveTimeout {
                    // A member that defers its mission (window closed) holds its slot: the timeout
                    // counts from the last time it said so.
                    finished.append((member, "TIMED_OUT"))
                    onEvent("  \(member): no answer within \(Int(plan.waveTimeout)) s (--wave-timeout): its slot is released")
                }
            }
            followers[job] = follower
        }
        guard !finished.isEmpty else { return }
        let at = now.timeIntervalSince1970
        try set(id, finished.map { ("done:\($0.0)", "\($0.1) \(at)") }, fence: lease.fence)
        for (member, status) in finished { state.finish(member, status: status, at: at) }
        let live = Set(state.inFlight.values.map(\.job))
        followers = followers.filter { live.contains($0.key) }
    }

    private func follow(_ job: String, _ members: [String], plan: Plan, enrolled: Set<String>) throws -> JobFollower {
        let outcome = Publisher.Outcome(jobID: job, kind: Mission.Kind.update.rawValue, branch: plan.branch, targetFactoryID: "",
                                        targets: members.joined(separator: ", "), entryID: "", stream: publisher.bus.stream,
                                        targeted: members, commit: plan.commit, publishedAt: Date().timeIntervalSince1970)
        return try JobFollower(bus: publisher.bus, outcome: outcome, enrolled: enrolled, onEvent: { _ in })
    }

    /// Sends `members` their mission under the lease (their "before" commits recorded first) and
    /// records their slots. A runner that dies between the two sends them again on resume: a
    /// second pinned mission to a commit a factory is already on changes nothing.
    private func send(_ id: String, _ members: [String], plan: Plan, lease: RolloutLease) throws -> String {
        try recordBefore(id, members, lease: lease)
        let outcome = try publisher.publish(kind: .update, target: .ids(members), branch: plan.branch,
                                            timeoutSeconds: plan.missionTimeout, force: true, commit: plan.commit,
                                            splaySeconds: plan.splaySeconds ?? 0, ignoreWindow: plan.ignoreWindow ?? false,
                                            fence: lease.fence, members: true)
        let at = String(Date().timeIntervalSince1970)
        try set(id, members.map { ("slot:\($0)", "\(outcome.jobID) \(at)") }, fence: lease.fence)
        return outcome.jobID
    }
}
