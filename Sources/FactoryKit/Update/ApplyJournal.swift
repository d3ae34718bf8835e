import FoundationEssentials
import Dispatch
import FactoryBasics
import Glibc

/// The update's intent record, `.git/factoryctl/journal.json`: written before anything moves and
/// advanced as each step completes, removed once the outcome is in the history. A record found
/// by a run that holds the checkout lock was left by a process that died (the kernel dropped its
/// flock), and is repaired before anything else (see `CrashRecovery`).
///
/// Written to a temp file and renamed, so a reader sees the old record or the new one, never a
/// torn one. Not fsynced: `kill -9` loses nothing from the page cache; a power cut may lose the
/// newest phase, as git's own refs (core.fsync off) would.
public struct ApplyJournal: Codable, Sendable, Equatable {
    /// Steps, in the order they happen.
    public enum Phase: String, Codable, Sendable, Comparable {
        /// Fetching: a kill may leave `.lock` files under `.git/refs`.
        case fetch
        /// About to write the work tree and index for `to`; a kill may leave one file cut short.
        case checkout
        /// The work tree and index are on `to` (every file the move changes written whole); the
        /// branch and HEAD may not be yet. Records of a factoryctl from before this phase go from
        /// `checkout` straight to `moved`, and recover as before.
        case checkedOut = "checked_out"
        /// Work tree, index, branch and HEAD are on `to`.
        case moved
        /// The dependency sync for `to` has started (the environment may be half-changed).
        case syncing
        case synced
        /// Services are being restarted on `to`.
        case restarting
        /// Restarted and through the health gate, but provisional: the soak window
        /// (`soakSeconds`) is being watched. A run that finds this record soaks what is running
        /// again, then keeps it or undoes the update.
        case soaking

        static let order: [Phase] = [.fetch, .checkout, .checkedOut, .moved, .syncing, .synced, .restarting, .soaking]
        public static func < (a: Phase, b: Phase) -> Bool {
            order.firstIndex(of: a)! < order.firstIndex(of: b)!
        }
    }

    public var phase: Phase
    public var pid: Int32
    /// Matches the history entry's `started_at`: a record whose run is already in the history
    /// only missed being removed.
    public var startedAt: Double
    public var jobID: String?
    /// The commit and branch HEAD was on before (nil branch: detached).
    public var from: String?
    public var previousBranch: String?
    /// What the update is moving to, on which branch, and where that branch pointed before.
    public var to: String?
    public var branch: String
    public var branchTipBefore: String?
    public var sync = false
    public var restart = false
    public var services: [String] = []
    /// A rollback to `from` has begun (or could not restore the environment). `phase` keeps the
    /// furthest step the forward update reached, which says what a repair must redo.
    public var rollingBack = false
    /// The rollback put the code back (HEAD, branch, index, work tree at `from`); only the
    /// environment is still owed. A repair then must not check anything out: the operator may
    /// have edited files since, and the preflight judges those, not a forced checkout.
    public var codeRestored: Bool?
    /// The process group of the sync this update started (ended by a recovery if still alive).
    public var childGroup: Int32?
    public var childProgram: String?
    /// The soak window the update was given (phase `soaking`), and when it began (epoch seconds).
    public var soakSeconds: Double?
    public var soakStartedAt: Double?
    /// Each unit's run when the soak began, and the boot it was read in: a run that finds the
    /// record on the same boot compares with it, so a crash while factoryctl was dead counts.
    public var soakBaseline: [String: ServiceManager.UnitState]?
    public var bootID: String?
    /// The upstream commit `to` integrates (`to` itself, or a rebase of local commits onto it):
    /// what a failure quarantines.
    public var upstream: String?
    /// The releases layout: the release this update builds and makes live (`phase` `checkout`:
    /// being built, checked out and synced beside the live one; `moved`: `current` names it),
    /// and the one that was live before, which an undo swaps back to. nil: the in-place layout.
    public var release: String?
    public var previousRelease: String?

    enum CodingKeys: String, CodingKey {
        case phase, pid, from, to, branch, sync, restart, services
        case rollingBack = "rolling_back", codeRestored = "code_restored"
        case childGroup = "child_group", childProgram = "child_program"
        case startedAt = "started_at", jobID = "job_id", previousBranch = "previous_branch"
        case branchTipBefore = "branch_tip_before"
        case soakSeconds = "soak_seconds", soakStartedAt = "soak_started_at", soakBaseline = "soak_baseline", bootID = "boot_id"
        case upstream, release
        case previousRelease = "previous_release"
    }

    public init(phase: Phase, startedAt: Double, branch: String, jobID: String?) {
        self.phase = phase
        self.pid = getpid()
        self.startedAt = startedAt
        self.branch = branch
        self.jobID = jobID
    }

    /// "syncing", or "rolling back after syncing": for messages.
    public var stage: String {
        rollingBack ? "rolling back after \(phase.rawValue)" : phase.rawValue
    }

    public static func path(gitDirectory: String) -> String {
        gitDirectory + "/factoryctl/journal.json"
    }

    public static func load(gitDirectory: String) -> ApplyJournal? {
        guard let data = FileManager.default.contents(atPath: path(gitDirectory: gitDirectory)) else { return nil }
        return try? JSONDecoder().decode(ApplyJournal.self, from: data)
    }

    /// True when a record exists, even one that cannot be read (it is then treated as a fetch).
    public static func exists(gitDirectory: String) -> Bool {
        FileManager.default.fileExists(atPath: path(gitDirectory: gitDirectory))
    }

    public func write(gitDirectory: String) throws {
        let path = Self.path(gitDirectory: gitDirectory)
        try FileManager.default.createDirectory(atPath: path.deletingLastPathComponent,
                                                withIntermediateDirectories: true)
        try FileWriting.replace(path, with: Array(try JSONEncoder.factory.encode(self)))
    }

    public static func remove(gitDirectory: String) {
        unlink(path(gitDirectory: gitDirectory))
    }
}

/// Lock files git and libgit2 create while writing, relative to `.git`. Under our checkout lock
/// and with a journal left by a dead factoryctl, any of these is that process's leftover.
enum StaleGitLocks {
    static let fixed = ["index.lock", "HEAD.lock", "ORIG_HEAD.lock", "FETCH_HEAD.lock", "packed-refs.lock",
                        "config.lock", "shallow.lock"]

    /// Removes the lock files; returns the paths removed (relative to `.git`).
    static func remove(gitDirectory: String) -> [String] {
        var removed: [String] = []
        for name in fixed where unlink(gitDirectory + "/" + name) == 0 {
            removed.append(name)
        }
        let refs = gitDirectory + "/refs"
        for relative in (try? FileManager.default.subpathsOfDirectory(atPath: refs)) ?? [] where relative.hasSuffix(".lock") {
            if unlink(refs + "/" + relative) == 0 { removed.append("refs/" + relative) }
        }
        return removed
    }
}
