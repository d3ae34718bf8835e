import FoundationEssentials
import Dispatch
import FactoryBasics
import Glibc
import GitKit

/// Why an update failed. Each kind maps to one exit code of `factoryctl update`.
public enum UpdateFailure: String, Codable, Sendable, CaseIterable {
    case invalidBranch = "invalid_branch"
    case notARepository = "not_a_repository"
    case lockHeld = "lock_held"
    /// The app held its update lock (`UA_FACTORY_UPDATE_LOCK`) for all of `--app-lock-timeout`;
    /// nothing changed.
    case appLockHeld = "app_lock_held"
    case preflight = "preflight"
    case remoteUnreachable = "remote_unreachable"
    /// The remote's TLS certificate was refused (untrusted CA, expired, wrong host name);
    /// nothing changed.
    case tlsFailed = "tls_failed"
    case branchMissing = "branch_missing"
    case conflict = "conflict"
    case checkoutBlocked = "checkout_blocked"
    case syncFailed = "sync_failed"
    /// The sync program was not found; checked before anything moved.
    case syncUnavailable = "sync_unavailable"
    /// `--restart`, but `systemctl --user` cannot reach the user's manager; checked before anything moved.
    case systemdUnavailable = "systemd_unavailable"
    case serviceInactive = "service_inactive"
    /// After the restart, the health URL did not answer 2xx in time; rolled back.
    case healthCheckFailed = "health_check_failed"
    case cancelled = "cancelled"
    case internalError = "internal_error"
    case rollbackFailed = "rollback_failed"
    /// The pinned commit is not on origin's branch (or not in origin at all); nothing changed.
    case commitNotOnBranch = "commit_not_on_branch"
    /// The update would move the factory to older code, or past a force-push that dropped
    /// commits it runs; refused without --allow-rewind (`allow_rewind`), nothing changed.
    case rewindRefused = "rewind_refused"
    /// The commit to move to is not signed by an allowed signer (`UA_ALLOWED_SIGNERS`); nothing changed.
    case signatureRefused = "signature_refused"
    /// A rollback with no previous successful update recorded (and no commit given).
    case nothingToRollBack = "nothing_to_roll_back"
    /// During the soak window a restarted unit crashed or restarted, or the health URL kept
    /// failing; rolled back.
    case soakFailed = "soak_failed"
    /// The target failed on this factory before for a reason that is the code's
    /// (`Quarantine`); refused without --retry-quarantined, nothing changed.
    case quarantined = "quarantined"
    /// A mission not run: the factory's maintenance window (`UA_FACTORY_UPDATE_WINDOW`) does not
    /// open before the mission expires; nothing changed.
    case outsideWindow = "outside_window"
}

/// One commit in a report.
public struct CommitLine: Codable, Sendable, Equatable {
    public let sha: String
    public let summary: String

    init(_ info: CommitInfo) {
        sha = info.id.hex
        summary = info.summary
    }
}

/// What an update did (or, with `--dry-run`, would do). Printed as text or JSON and kept in history.
public struct UpdateReport: Codable, Sendable {
    public enum Status: String, Codable, Sendable { case success, failed }
    /// How the branch was integrated with `origin/<branch>`.
    public enum Integration: String, Codable, Sendable {
        case none, upToDate = "up_to_date", fastForward = "fast_forward", rebase, created
        /// Moved back to older code (allowed rewind).
        case rewind
    }

    public var status: Status = .failed
    public var failure: UpdateFailure?
    public var error: String?
    public var branch: String
    /// The branch HEAD was on before (nil when detached).
    public var previousBranch: String?
    public var from: String?
    /// The commit checked out when the run ended (after a rollback: where it went back to).
    public var to: String?
    /// After a rollback: the commit the update tried to move to.
    public var attempted: String?
    /// The upstream commit integrated: origin's branch tip, or the pinned commit.
    public var upstream: String?
    /// The commit the update was pinned to (`--commit`, a mission's `commit`), if any.
    public var pinned: String?
    /// Services that were still not active after the rollback restarted them: needs attention.
    public var inactiveAfterRollback: [String]?
    /// Why the environment does not match the code on disk after this run (a rollback could not
    /// re-sync it): needs attention until a later update's sync succeeds.
    public var environmentOwed: String?
    /// Upstream commits integrated (oldest first, at most 100 listed; see `commitCount`).
    public var commits: [CommitLine] = []
    public var commitCount = 0
    public var integration: Integration = .none
    /// Local commits replayed onto upstream by a rebase.
    public var rebasedCommits = 0
    public var changed = false
    public var synced = false
    /// The sync was not run: no dependency file changed since the environment in place was synced.
    public var syncSkipped: Bool?
    public var restarted = false
    /// The health URL answered 2xx after the restart.
    public var healthChecked: Bool?
    /// The soak window this update was given (0: none), and whether it passed it.
    public var soakSeconds: Double = 0
    public var soaked = false
    /// The releases layout: the release `current` names after the update, and whether it was a
    /// kept one swapped back in (no checkout, no sync).
    public var release: String?
    public var releaseReused: Bool?
    /// Fetches made: more than one when the git host answered "not now" and was asked again.
    public var fetchAttempts: Int?
    /// `--ignore-app-lock`: the update ran without the app's update lock (`UA_FACTORY_UPDATE_LOCK`).
    public var appLockIgnored: Bool?
    /// Stopped part-way on purpose with the intent record kept (a stop during the sync or the
    /// soak): the outcome is not known yet; the run that finishes the record has it. Not encoded.
    public var unfinished = false
    public var services: [String] = []
    public var rolledBack = false
    public var dryRun = false
    /// Dry run only: whether the rebase would stop on a conflict.
    public var wouldConflict: Bool?
    /// Modified tracked files, or conflicting paths, behind a failure.
    public var paths: [String] = []
    public var jobID: String?
    /// What this run repaired first, when an earlier update had been killed part-way.
    public var recovery: String?
    /// Epoch seconds.
    public var startedAt: Double
    public var finishedAt: Double?
    public var durationMs = 0
    /// Milliseconds spent in each step that ran: status (the local-changes check), fetch,
    /// checkout (the dry run and the real one), sync, restart (including watching the services
    /// come up).
    public var stepsMs: [String: Int]?

    public init(branch: String, startedAt: Date = Date()) {
        self.branch = branch
        self.startedAt = startedAt.timeIntervalSince1970
    }

    enum CodingKeys: String, CodingKey {
        case status, failure, error, branch, from, to, commits, integration, changed, synced, restarted, services, paths
        case previousBranch = "previous_branch", commitCount = "commit_count", rebasedCommits = "rebased_commits"
        case recovery, syncSkipped = "sync_skipped", attempted, inactiveAfterRollback = "inactive_after_rollback"
        case environmentOwed = "environment_owed"
        case upstream, pinned, healthChecked = "health_checked", soakSeconds = "soak_seconds", soaked, release
        case releaseReused = "release_reused", fetchAttempts = "fetch_attempts", appLockIgnored = "app_lock_ignored"
        case rolledBack = "rolled_back", dryRun = "dry_run", wouldConflict = "would_conflict", jobID = "job_id"
        case startedAt = "started_at", finishedAt = "finished_at", durationMs = "duration_ms", stepsMs = "steps_ms"
    }

    /// Runs `body`, adding its wall time to `steps[name]`.
    mutating func time<T>(_ name: String, _ body: () throws -> T) rethrows -> T {
        let start = Date()
        defer { stepsMs = (stepsMs ?? [:]).merging([name: Int(Date().timeIntervalSince(start) * 1000)]) { $0 + $1 } }
        return try body()
    }

    public var succeeded: Bool { status == .success }
    public var shortTo: String? { to.map { String($0.prefix(7)) } }
    public var shortFrom: String? { from.map { String($0.prefix(7)) } }

    /// Always present keys, even when nil, so scripts can rely on the shape.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(status, forKey: .status)
        try c.encode(failure, forKey: .failure)
        try c.encode(error, forKey: .error)
        try c.encode(branch, forKey: .branch)
        try c.encode(previousBranch, forKey: .previousBranch)
        try c.encode(from, forKey: .from)
        try c.encode(to, forKey: .to)
        try c.encode(attempted, forKey: .attempted)
        try c.encode(upstream, forKey: .upstream)
        try c.encode(pinned, forKey: .pinned)
        try c.encode(inactiveAfterRollback ?? [], forKey: .inactiveAfterRollback)
        try c.encode(environmentOwed, forKey: .environmentOwed)
        try c.encode(commits, forKey: .commits)
        try c.encode(commitCount, forKey: .commitCount)
        try c.encode(integration, forKey: .integration)
        try c.encode(rebasedCommits, forKey: .rebasedCommits)
        try c.encode(changed, forKey: .changed)
        try c.encode(synced, forKey: .synced)
        try c.encode(syncSkipped ?? false, forKey: .syncSkipped)
        try c.encode(restarted, forKey: .restarted)
        try c.encode(healthChecked ?? false, forKey: .healthChecked)
        try c.encode(soakSeconds, forKey: .soakSeconds)
        try c.encode(soaked, forKey: .soaked)
        try c.encode(release, forKey: .release)
        try c.encode(releaseReused ?? false, forKey: .releaseReused)
        try c.encode(fetchAttempts ?? 0, forKey: .fetchAttempts)
        try c.encode(appLockIgnored ?? false, forKey: .appLockIgnored)
        try c.encode(services, forKey: .services)
        try c.encode(rolledBack, forKey: .rolledBack)
        try c.encode(dryRun, forKey: .dryRun)
        try c.encode(wouldConflict, forKey: .wouldConflict)
        try c.encode(paths, forKey: .paths)
        try c.encode(jobID, forKey: .jobID)
        try c.encode(recovery, forKey: .recovery)
        try c.encode(startedAt, forKey: .startedAt)
        try c.encode(finishedAt, forKey: .finishedAt)
        try c.encode(durationMs, forKey: .durationMs)
        try c.encode(stepsMs ?? [:], forKey: .stepsMs)
    }
}

public extension JSONEncoder {
    /// Sorted keys, no escaped slashes: stable output for scripts and tests.
    static var factory: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }
}
