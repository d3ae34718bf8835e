import FoundationEssentials
import FactoryBasics

/// What `Publisher.wait` knows about one job while it follows it: the results in, the factories
/// still owed one, those that reported a changed checkout and must come back on the new commit,
/// and those that cannot answer (stale, offline, gone). Pure state: the Redis reads are the
/// caller's.
struct JobWatch {
    /// A result as it is kept while following: whether it succeeded, and its JSON text for the
    /// summary (the parsed document of 10,000 results is tens of MB; the text a third of it).
    struct Kept {
        let succeeded: Bool
        let text: String
    }

    let outcome: Publisher.Outcome
    let targeted: Set<String>
    private(set) var results: [String: Kept] = [:]
    private(set) var order: [String] = []
    /// Reported a changed checkout; waiting for its consumer to come back on the new commit.
    private(set) var restarting: [String: (commit: String?, finishedAt: Double)] = [:]
    private(set) var awaiting: Set<String>
    private(set) var updating: Set<String> = []
    /// The soak time left each factory last said (shown when it changes).
    private(set) var soaking: [String: Int] = [:]
    /// The splay delay each factory said it waits (shown once).
    private(set) var splaying: [String: Int] = [:]
    private(set) var unreachable: [String: String] = [:]
    /// Factories that said they defer this job (outside their window, their app's lock held):
    /// what they said, and when they last said it.
    private(set) var deferred: [String: (text: String, until: Double?, seenAt: Date)] = [:]
    /// The last time each factory said it defers this job, kept once it no longer does (its
    /// wave timeout counts from then).
    private(set) var deferredSeenAt: [String: Date] = [:]

    init(outcome: Publisher.Outcome) {
        self.outcome = outcome
        targeted = Set(outcome.targeted)
        awaiting = targeted
    }

    /// The factories whose registration must be read: owed a result or a re-registration.
    var owed: [String] { Array(awaiting.union(restarting.keys)).sorted() }

    /// Targeted factories still owed a result.
    var awaitingResult: [String] { awaiting.sorted() }

    /// Targeted factories still owed something, in the order they were targeted.
    var pending: [String] { outcome.targeted.filter { awaiting.contains($0) || restarting[$0] != nil } }

    func summary(timedOut: Bool) -> Publisher.WaitSummary {
        let pending = pending
        let kept = order.compactMap { results[$0] }
        let stillPending = Set(pending)
        return Publisher.WaitSummary(jobID: outcome.jobID, targeted: outcome.targeted, resultTexts: kept.map(\.text),
                                     failed: kept.filter { !$0.succeeded }.count, pending: pending,
                                     timedOut: !pending.isEmpty && timedOut,
                                     unreachable: unreachable.filter { stillPending.contains($0.key) },
                                     deferred: deferred.filter { stillPending.contains($0.key) }.mapValues(\.text))
    }

    /// The last time a factory still owed a result said it defers the job (nil: none has).
    var lastDeferral: Date? {
        deferred.filter { awaiting.contains($0.key) }.map(\.value.seenAt).max()
    }

    /// When `id` last said it defers the job (it may have stopped since).
    func deferredSeen(_ id: String) -> Date? { deferredSeenAt[id] }

    /// New results: the first one per targeted factory counts.
    mutating func take(_ incoming: [MissionResult], _ onEvent: (Publisher.WaitEvent) -> Void) {
        for result in incoming {
            guard let id = result.factoryID, targeted.contains(id), results[id] == nil else { continue }
            results[id] = Kept(succeeded: result.succeeded, text: result.json.pythonJSON)
            order.append(id)
            awaiting.remove(id)
            unreachable[id] = nil
            deferred[id] = nil
            if result.succeeded, result.result["restart_requested"]?.bool == true {
                restarting[id] = (result.result["to_commit"]?.string, result.result["finished_at"]?.number ?? 0)
            }
            onEvent(.result(result))
        }
    }

    /// The registrations of `owed` (nil: not registered any more), as the light reader gives them.
    mutating func look<S: Sequence>(_ registrations: S, now: Date, _ onEvent: (Publisher.WaitEvent) -> Void)
    where S.Element == (String, FleetEntry?) {
        for (id, registration) in registrations {
            guard let registration else {
                if unreachable[id] == nil { unreachable[id] = "no longer registered"; onEvent(.unreachable(id, reason: "no longer registered")) }
                continue
            }
            if let expected = restarting[id] {
                if registration.commit == expected.commit, registration.startedAt >= expected.finishedAt {
                    restarting[id] = nil
                    onEvent(.reregistered(id, commit: registration.commit))
                }
                continue // between its exit and systemd's restart it is briefly offline: expected
            }
            if awaiting.contains(id), registration.status == "updating", registration.currentJobID == outcome.jobID {
                progress(id, registration, onEvent)
            }
            noteDeferral(id, registration, now: now, onEvent)
            let reason: String? = registration.isStale(now: now, after: FleetRegistry.staleAfter)
                ? "stale: not heard from for \(wholeNumber(now.timeIntervalSince1970 - registration.lastSeenAt)) s"
                : registration.status == "offline" ? "offline: its consumer has stopped" : nil
            if let reason, unreachable[id] == nil {
                unreachable[id] = reason
                onEvent(.unreachable(id, reason: reason))
            } else if reason == nil {
                unreachable[id] = nil
            }
        }
    }

    /// A factory working on this job: "updating" once, its soak time left when it changes, its
    /// splay delay once.
    private mutating func progress(_ id: String, _ registration: FleetEntry, _ onEvent: (Publisher.WaitEvent) -> Void) {
        if !updating.contains(id) {
            updating.insert(id)
            onEvent(.updating(id))
        }
        if let left = registration.soakSecondsLeft.map(Self.seconds), soaking[id] != left {
            soaking[id] = left
            onEvent(.soaking(id, secondsLeft: left))
        }
        if let left = registration.splaySecondsLeft.map(Self.seconds), splaying[id] == nil {
            splaying[id] = left
            onEvent(.splaying(id, secondsLeft: left))
        }
    }

    private static func seconds(_ value: Double) -> Int { Int(max(-1e9, min(1e9, value))) }
}

extension JobWatch {
    /// A factory's registration says it defers this job: an event when it first says so or the
    /// time changes; gone once it no longer says it.
    mutating func noteDeferral(_ id: String, _ registration: FleetEntry, now: Date, _ onEvent: (Publisher.WaitEvent) -> Void) {
        guard awaiting.contains(id) else { return }
        // A stale registration's word is old: its factory may be gone.
        guard registration.deferredJobID == outcome.jobID,
              !registration.isStale(now: now, after: FleetRegistry.staleAfter), let text = registration.deferred else {
            deferred[id] = nil
            return
        }
        let until = registration.deferredUntil
        let known = deferred[id]
        deferred[id] = (text, until, now)
        deferredSeenAt[id] = now
        if known == nil || known?.until != until { onEvent(.deferred(id, text: text, until: until)) }
    }
}

/// One job followed round by round: its `JobWatch` and the Redis reads that feed it. A round
/// reads the registrations of the factories still owed something and the results of enrolled
/// factories from their own keys; results on the shared stream come in through `takeShared`
/// (announced) or `pollShared` (read outright). `Publisher.wait` follows one job with it; a
/// windowed rollout (`RolloutWindow`) follows every job it has in flight.
struct JobFollower {
    let bus: MissionBus
    private(set) var watch: JobWatch
    /// Factories whose result is in their own keys: the job went to their inbox.
    let inboxes: Set<String>
    /// The targeted factories that are enrolled (their registration is under their own key):
    /// read once, when the follower starts.
    let enrolled: Set<String>

    /// `enrolled`: the enrolled factories, when the caller has read them already (a window
    /// follows many jobs); else they are read here, once.
    init(bus: MissionBus, outcome: Publisher.Outcome, enrolled: Set<String>? = nil, onEvent: (Publisher.WaitEvent) -> Void) throws {
        self.bus = bus
        let record = try bus.job(outcome.jobID)
        let all = try enrolled ?? Enrollment(redis: bus.redis).enrolled()
        let targeted = Set(outcome.targeted)
        self.enrolled = all.count < targeted.count ? all.intersection(targeted) : targeted.filter(all.contains)
        inboxes = record.meta == nil ? self.enrolled : record.inboxes
        watch = JobWatch(outcome: outcome)
        watch.take(record.results, onEvent)
    }

    var jobID: String { watch.outcome.jobID }

    /// Enrolled factories still owed a result.
    var owedByInbox: [String] { watch.awaitingResult.filter(inboxes.contains) }

    /// One round: the registrations of the factories owed something, and enrolled factories' results.
    mutating func look(now: Date, onEvent: (Publisher.WaitEvent) -> Void) throws {
        let ids = watch.owed
        if !ids.isEmpty { watch.look(try FleetRegistry(redis: bus.redis).progress(of: ids, enrolled: enrolled), now: now, onEvent) }
        try takeOwn(onEvent: onEvent)
    }

    /// The registrations a caller read for several followers at once (`RolloutWindow`): those of
    /// this job's owed factories among them. A factory the caller did not read (a key missing:
    /// not read this round) is left as it was; one read and not registered is a key with nil.
    mutating func look(registrations: [String: FleetEntry?], now: Date, onEvent: (Publisher.WaitEvent) -> Void) {
        watch.look(watch.owed.compactMap { id in registrations.index(forKey: id).map { (id, registrations[$0].value) } },
                   now: now, onEvent)
    }

    /// Results of this job a caller read from enrolled factories' own keys for several jobs at once.
    mutating func take(own results: [MissionResult], onEvent: (Publisher.WaitEvent) -> Void) {
        watch.take(results.sorted { ($0.factoryID ?? "") < ($1.factoryID ?? "") }, onEvent)
    }

    /// Enrolled factories' results, from their own keys, taken a read (`progressChunk` keys) at a
    /// time: a round that finds thousands of results holds one read's parsed results, not all.
    private mutating func takeOwn(onEvent: (Publisher.WaitEvent) -> Void) throws {
        let owed = owedByInbox
        for start in stride(from: 0, to: owed.count, by: FleetRegistry.progressChunk) {
            let chunk = Array(owed[start..<min(start + FleetRegistry.progressChunk, owed.count)])
            watch.take(try bus.ownResults(jobID, of: chunk).sorted { $0.key < $1.key }.map(\.value), onEvent)
        }
    }

    /// The results of `factories` (announced on the shared stream) from the shared job record.
    mutating func takeShared(_ factories: [String], onEvent: (Publisher.WaitEvent) -> Void) throws {
        let announced = Set(factories).intersection(watch.awaitingResult).subtracting(inboxes)
        guard !announced.isEmpty else { return }
        watch.take(try bus.sharedResults(jobID, of: announced.sorted()).sorted { $0.key < $1.key }.map(\.value), onEvent)
    }

    /// The shared job record's results of every factory still owed one that is not enrolled.
    mutating func pollShared(onEvent: (Publisher.WaitEvent) -> Void) throws {
        try takeShared(watch.awaitingResult.filter { !inboxes.contains($0) }, onEvent: onEvent)
    }
}
