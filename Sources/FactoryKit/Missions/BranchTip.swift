import Dispatch
import FactoryBasics
import GitKit

/// "Pin to the tip": the commit a branch points at in the factories' repository now, so that
/// every factory an update or a rollout reaches ends on the same commit however long it takes.
/// One implementation for `publish` and for the gateway's update and rollout routes.
///
/// The repository is `--repo`, else `UA_FACTORY_REPO_URL`, else the origin of `UA_FACTORY_DIR`'s
/// checkout (read when asked); with none, the mission is not pinned.
public struct BranchTip: Sendable {
    /// The repository given (`--repo`, else `UA_FACTORY_REPO_URL`); "" means none, with no fallback.
    public var repository: String?
    /// `UA_FACTORY_DIR`: its checkout's origin is asked when no repository is given.
    public var factoryDirectory: String?
    /// For credentials and the fetch helper.
    public var environment: [String: String]
    /// Seconds the lookup may go without progress (`FACTORYCTL_FETCH_TIMEOUT`).
    public var timeout: Double
    /// How to start the fetch helper for network remotes; nil asks in-process.
    public var helper: [String]? = IsolatedFetch.defaultHelper

    public init(repository: String?, factoryDirectory: String?, environment: [String: String], timeout: Double) {
        self.repository = repository
        self.factoryDirectory = factoryDirectory
        self.environment = environment
        self.timeout = timeout
    }

    /// `repository` (the `--repo` flag) if given, the rest from the environment. Throws when
    /// `FACTORYCTL_FETCH_TIMEOUT` is not valid.
    public init(repository: String? = nil, environment: FactoryEnvironment) throws(FactoryError) {
        self.init(repository: repository ?? environment.repoURL, factoryDirectory: environment.factoryDirectory,
                  environment: environment.values, timeout: try environment.fetchTimeout())
    }

    /// The repository that would be asked; nil when there is none.
    public var repositoryURL: String? {
        var url = repository
        if url == nil, let factoryDirectory {
            url = try? Repository.open(at: factoryDirectory).remoteURL("origin")
        }
        guard let url, !url.isEmpty else { return nil }
        return url
    }

    public enum Resolution: Sendable, Equatable {
        /// No repository to ask: each factory takes the branch's tip when it fetches.
        case unpinned
        /// The tip's full id, and the repository it was read from (credentials redacted).
        case pinned(commit: String, shownURL: String)
    }

    /// The tip could not be read; nothing should be published.
    public struct Failure: Error, CustomStringConvertible, Sendable {
        public enum Reason: Sendable {
            case noSuchBranch
            /// The remote did not answer, refused, or timed out: its error's text.
            case unreadable(String)
        }

        public let branch: String
        /// The repository, credentials redacted.
        public let shownURL: String
        public let reason: Reason

        public var description: String {
            switch reason {
            case .noSuchBranch: "\(shownURL) has no branch '\(branch)'"
            case .unreadable(let error): "could not read the tip of \(branch) from \(shownURL): \(error)"
            }
        }
    }

    /// Asks the repository for `branch`'s tip (blocking: a network round trip, at most `timeout`
    /// without progress).
    public func resolve(_ branch: String) throws(Failure) -> Resolution {
        guard let url = repositoryURL else { return .unpinned }
        let shown = UpdatePipeline.redact(url)
        let tip: ObjectID?
        do {
            tip = try IsolatedFetch.remoteTip(url: url, branch: branch, helper: helper, environment: environment, timeout: timeout)
        } catch {
            throw Failure(branch: branch, shownURL: shown, reason: .unreadable("\(error)"))
        }
        guard let tip else { throw Failure(branch: branch, shownURL: shown, reason: .noSuchBranch) }
        return .pinned(commit: tip.hex, shownURL: shown)
    }

    /// `resolve` on a thread of its own, for async callers (a slow remote holds no shared thread).
    public func resolveDetached(_ branch: String) async -> Result<Resolution, Failure> {
        // Nothing to ask: no thread for it.
        guard repository != nil || factoryDirectory != nil else { return .success(.unpinned) }
        return await withCheckedContinuation { (continuation: CheckedContinuation<Result<Resolution, Failure>, Never>) in
            detachThread {
                do throws(Failure) {
                    continuation.resume(returning: .success(try resolve(branch)))
                } catch {
                    continuation.resume(returning: .failure(error))
                }
            }
        }
    }
}
