import FoundationEssentials
import FactoryBasics
import Glibc
import GitKit
import Logging

/// The clone of the template, natively: `git init` in a temporary sibling of the factory
/// directory, `origin` added, fetched the way `update` fetches (a network remote in the killable
/// `fetch-helper` child, with the same credentials, known_hosts and `FACTORYCTL_FETCH_TIMEOUT`),
/// the commit checked (a pin must be on origin's branch; `UA_ALLOWED_SIGNERS` applies), checked
/// out on the branch, and only then renamed to the factory directory. A failure (or a stop)
/// before the rename removes the temporary directory: nothing is left behind. One a killed
/// bootstrap left is removed by the next run.
struct BootstrapClone {
    let request: BootstrapRequest
    let settings: UpdateSettings
    let logger: Logger
    var shouldCancel: () -> Bool = { false }

    /// What is at the factory directory before the clone.
    enum Found: Equatable {
        case nothing
        case emptyDirectory
        /// A git checkout (in place, or the releases layout), with its origin's URL.
        case checkout(origin: String?)
        case other
    }

    static func inspect(_ directory: String) -> Found {
        guard ReleasesLayout.exists(directory) else { return .nothing }
        guard ReleasesLayout.isDirectory(directory) else { return .other }
        let entries = ReleasesLayout.listDirectory(directory)
        if entries.isEmpty { return .emptyDirectory }
        guard entries.contains(".git"), let repository = try? Repository.open(at: ReleasesLayout.repositoryPath(for: directory)) else {
            return .other
        }
        return .checkout(origin: repository.remoteURL("origin"))
    }

    private var directory: String { request.factoryDirectory }
    private var shownURL: String { UpdatePipeline.redact(request.repoURL) }

    /// Clones into the factory directory; returns the commit checked out.
    func clone() throws(BootstrapFailure) -> ObjectID {
        let parent = directory.deletingLastPathComponent
        guard ReleasesLayout.isDirectory(parent) else {
            throw BootstrapFailure(.usage, "\(parent) does not exist: create it (owned by this user), then run bootstrap again. Nothing was changed")
        }
        removeLeftovers(in: parent)
        let temporary = parent + "/." + directory.lastPathComponent + ".bootstrap-\(getpid())"
        do {
            let commit = try cloneInto(temporary)
            guard rename(temporary, directory) == 0 else {
                throw BootstrapFailure(.failed, "could not move the clone to \(directory): \(String(cString: strerror(errno)))")
            }
            return commit
        } catch let error as BootstrapFailure {
            try? ReleasesLayout.removeTree(temporary)
            throw BootstrapFailure(error.kind, "\(error.message). Nothing was left behind (\(directory) was not created); run the same bootstrap again once that is fixed")
        } catch {
            try? ReleasesLayout.removeTree(temporary)
            throw BootstrapFailure(.failed, "\(error). Nothing was left behind (\(directory) was not created)")
        }
    }

    /// Temporary clones of bootstrap runs that died (their pid is gone).
    private func removeLeftovers(in parent: String) {
        let prefix = "." + directory.lastPathComponent + ".bootstrap-"
        for name in ReleasesLayout.listDirectory(parent) where name.hasPrefix(prefix) {
            guard let pid = Int32(name.dropFirst(prefix.count)), pid != getpid(), kill(pid, 0) != 0, errno == ESRCH else { continue }
            logger.notice("removing \(parent)/\(name), the unfinished clone of a bootstrap that died")
            try? ReleasesLayout.removeTree(parent + "/" + name)
        }
    }

    private func cloneInto(_ path: String) throws(BootstrapFailure) -> ObjectID {
        do {
            let repository = try Repository.initialize(at: path)
            try repository.addRemote("origin", url: request.repoURL)
            logger.info("cloning \(shownURL) (\(request.branch))")
            try fetch(repository)
            guard let tip = try repository.resolve(reference: "refs/remotes/origin/\(request.branch)") else {
                throw BootstrapFailure(.failed, "\(shownURL) has no branch \(request.branch)")
            }
            let target = try pinned(repository, tip: tip)
            if let policy = settings.signaturePolicy {
                do {
                    let signer = try policy.check(target, in: repository)
                    logger.info("\(target.short) is signed by \(signer)")
                } catch {
                    throw BootstrapFailure(.failed, "refusing to clone \(target.short): \(error) (UA_ALLOWED_SIGNERS)")
                }
            }
            try repository.checkoutTree(of: target, force: true)
            try repository.setReference("refs/heads/\(request.branch)", to: target, message: "bootstrap: clone of \(shownURL)")
            try repository.setHead(branch: request.branch)
            try repository.setUpstream(branch: request.branch, remote: "origin")
            return target
        } catch let failure as BootstrapFailure {
            throw failure
        } catch let error as GitError {
            throw BootstrapFailure(.failed, "could not clone \(shownURL): \(error.message)")
        } catch {
            throw BootstrapFailure(.failed, "could not clone \(shownURL): \(error)")
        }
    }

    /// `--commit`, which must be on origin's branch; else the branch's tip.
    private func pinned(_ repository: Repository, tip: ObjectID) throws -> ObjectID {
        guard let commit = request.commit else { return tip }
        guard repository.hasCommit(commit), try repository.contains(commit, in: tip) else {
            throw BootstrapFailure(.failed, "the pinned commit \(commit.short) is not on origin/\(request.branch) (at \(tip.short))")
        }
        return commit
    }

    /// The fetch of `origin`, as `update` does it.
    private func fetch(_ repository: Repository) throws {
        let url = request.repoURL
        guard let helper = request.fetchHelper, !IsolatedFetch.isLocal(url) else {
            if IsolatedFetch.isLocal(url) {
                let path = url.hasPrefix("file://") ? String(url.dropFirst("file://".count)) : url
                guard ReleasesLayout.exists(path) else {
                    throw BootstrapFailure(.remoteUnreachable, "\(url) does not exist (a local repository path)")
                }
            }
            do {
                try repository.fetch(remote: "origin", options: FetchOptions(environment: settings.environment, shouldCancel: shouldCancel))
            } catch let error as GitError {
                if shouldCancel() { throw BootstrapFailure(.failed, "the clone was stopped") }
                throw BootstrapFailure(.remoteUnreachable, "could not fetch \(shownURL): \(error.message)")
            }
            return
        }
        do {
            try IsolatedFetch.fetch(helper: helper, gitDirectory: repository.gitDirectory, remote: "origin",
                                    environment: settings.environment, timeout: settings.fetchTimeout,
                                    shouldCancel: shouldCancel, progress: nil, onSpawn: { _ in })
        } catch {
            switch error {
            case .noProgress(let seconds):
                throw BootstrapFailure(.remoteUnreachable, "fetching \(shownURL) made no progress for \(Int(seconds)) s; stopped it (check the remote, or raise FACTORYCTL_FETCH_TIMEOUT)")
            case .cancelled: throw BootstrapFailure(.failed, "the clone was stopped")
            case .failed(let message): throw BootstrapFailure(.remoteUnreachable, "could not fetch \(shownURL): \(message)")
            case .launch(let message): throw BootstrapFailure(.failed, "could not start the fetch: \(message)")
            }
        }
    }
}
