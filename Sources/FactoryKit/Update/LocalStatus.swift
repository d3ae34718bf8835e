import FoundationEssentials
import Dispatch
import FactoryBasics
import Glibc
import GitKit

/// The local checkout at a glance, for `factoryctl status`.
public struct LocalStatus: Codable, Sendable {
    public var factoryDirectory: String
    public var branch: String?
    public var head: String?
    public var headSummary: String?
    public var upstream: String?
    public var upstreamCommit: String?
    public var ahead: Int?
    public var behind: Int?
    public var state: String
    public var modified: [TrackedChange]
    public var fetched: Bool
    public var fetchError: String?
    public var lastUpdate: UpdateReport?
    /// Set when the environment does not match the code (a rollback or recovery could not
    /// re-sync it): what happened. Cleared by the next successful sync.
    public var needsAttention: String?
    /// Commits that failed here for a reason that is the code's, newest first: updates to them
    /// are refused without --retry-quarantined.
    public var quarantined: [Quarantine.Entry] = []
    /// An update still in its soak window (or left there by a factoryctl that died).
    public var provisional: Provisional?
    /// `in_place`, or `releases` (DIR/current → releases/<name>).
    public var layout = "in_place"
    /// The releases layout: the complete releases kept, newest first (the live one marked), and
    /// half-built ones the next update prunes.
    public var releases: [ReleaseLine]?

    public struct ReleaseLine: Codable, Sendable {
        public var name: String
        public var commit: String
        public var branch: String
        public var live: Bool
        /// The one `rollback` swaps back to.
        public var previous: Bool
        public var complete: Bool
        public var builtAt: Double?

        enum CodingKeys: String, CodingKey {
            case name, commit, branch, live, previous, complete
            case builtAt = "built_at"
        }
    }

    public struct Provisional: Codable, Sendable {
        public var commit: String?
        public var soakSeconds: Double
        /// Seconds of the window left (0 when it is over but nobody resolved it: the next run does).
        public var secondsLeft: Double

        enum CodingKeys: String, CodingKey {
            case commit
            case soakSeconds = "soak_seconds", secondsLeft = "seconds_left"
        }

        static func read(gitDirectory: String, now: Date = Date()) -> Provisional? {
            guard let journal = ApplyJournal.load(gitDirectory: gitDirectory), journal.phase == .soaking, !journal.rollingBack,
                  let seconds = journal.soakSeconds else { return nil }
            let left = (journal.soakStartedAt ?? 0) + seconds - now.timeIntervalSince1970
            return Provisional(commit: journal.to, soakSeconds: seconds, secondsLeft: max(0, left.rounded()))
        }
    }

    enum CodingKeys: String, CodingKey {
        case branch, head, upstream, ahead, behind, state, modified, fetched, quarantined, provisional, layout, releases
        case factoryDirectory = "factory_dir", headSummary = "head_summary", upstreamCommit = "upstream_commit"
        case fetchError = "fetch_error", lastUpdate = "last_update", needsAttention = "needs_attention"
    }

    /// Reads the checkout; with `fetch`, refreshes the remote-tracking branches first.
    public static func read(factoryDirectory: String, fetch: Bool, environment: [String: String]) throws -> LocalStatus {
        let layout = ReleasesLayout.detect(factoryDirectory)
        let repository: Repository
        do {
            repository = try Repository.open(at: layout?.gitDirectory ?? factoryDirectory)
        } catch let error as GitError where error.isLibraryMissing {
            throw FactoryError.failed(error.message)
        } catch {
            throw FactoryError.invalidArgument("\(factoryDirectory) is not a git checkout: \(error)")
        }
        var fetchError: String?
        if fetch {
            do {
                try repository.fetch(remote: "origin", options: FetchOptions(environment: environment))
            } catch {
                fetchError = "\(error)"
            }
        }
        let head = try repository.head()
        var status = LocalStatus(
            factoryDirectory: factoryDirectory, branch: head.branchName, head: head.commit?.hex,
            state: repository.state.rawValue, modified: try modified(repository, layout),
            fetched: fetch && fetchError == nil, fetchError: fetchError,
            lastUpdate: UpdateHistory(gitDirectory: repository.gitDirectory).last,
            needsAttention: EnvironmentDebt.read(gitDirectory: repository.gitDirectory)?.summary,
            quarantined: Quarantine(gitDirectory: repository.gitDirectory).entries(),
            provisional: Provisional.read(gitDirectory: repository.gitDirectory))
        if let layout {
            status.layout = "releases"
            status.releases = releaseLines(layout)
        }
        if let commit = head.commit {
            status.headSummary = try repository.commit(commit).summary
        }
        if let branch = head.branchName, let commit = head.commit {
            let upstreamName = repository.upstreamName(ofBranch: branch) ?? "origin/\(branch)"
            if let upstream = try repository.resolve(reference: "refs/remotes/\(upstreamName)") {
                status.upstream = upstreamName
                status.upstreamCommit = upstream.hex
                let counts = try repository.aheadBehind(local: commit, upstream: upstream)
                status.ahead = counts.ahead
                status.behind = counts.behind
            }
        }
        return status
    }

    /// Tracked changes of the checkout, or of the live release.
    private static func modified(_ repository: Repository, _ layout: ReleasesLayout?) throws -> [TrackedChange] {
        guard let layout else { return try repository.trackedChanges() }
        guard let name = layout.liveName else { return [] }
        return try Repository.open(at: layout.path(of: name)).trackedChanges()
    }

    private static func releaseLines(_ layout: ReleasesLayout) -> [ReleaseLine] {
        let live = layout.liveName, previous = layout.previous?.name
        let (complete, halfBuilt) = layout.releases()
        return complete.map {
            ReleaseLine(name: $0.name, commit: $0.commit, branch: $0.branch, live: $0.name == live, previous: $0.name == previous,
                        complete: true, builtAt: $0.builtAt)
        } + halfBuilt.map { ReleaseLine(name: $0, commit: "", branch: "", live: $0 == live, previous: false, complete: false) }
    }
}
