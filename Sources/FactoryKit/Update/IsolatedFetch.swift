import CSupport
import FoundationEssentials
import Dispatch
import FactoryBasics
import Glibc
import GitKit

/// Fetching a network remote in a child process that can be killed.
///
/// libgit2 1.5 has no connect or read timeout, and its SSH transport reads the raw socket, so a
/// remote that accepts the connection and never answers blocks `git_remote_fetch` for ever, with
/// no callback in which to give up. The fetch therefore runs in `factoryctl fetch-helper`, a
/// child in its own process group that reports progress on a pipe. The parent ends the group
/// when no progress came for `fetchTimeout` seconds, or at once on SIGTERM/SIGINT or a mission
/// deadline. Local remotes (a path or file://) are fetched in-process: nothing there can hang
/// on a network.
public enum IsolatedFetch {
    /// The helper's argv prefix: this executable when it is factoryctl, else nil (then network
    /// fetches run in-process, without the timeout; tests pass the built binary instead).
    public static let defaultHelper: [String]? = {
        guard let path = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"),
              path.lastPathComponent == "factoryctl" else { return nil }
        return [path]
    }()

    public static let subcommand = "fetch-helper"

    /// True for a remote that is a path on this machine.
    public static func isLocal(_ url: String) -> Bool {
        if url.hasPrefix("file://") { return true }
        if url.contains("://") { return false }
        // scp-like `user@host:path` (a colon before the first slash) is SSH.
        if let colon = url.firstIndex(of: ":") {
            let slash = url.firstIndex(of: "/") ?? url.endIndex
            if colon < slash { return false }
        }
        return true
    }

    /// The child's side: fetch `remote` of the repository at `gitDirectory`, write
    /// `progress <received> <indexed> <total> <bytes>` lines to stdout as the transfer moves, and
    /// `error <message>` before a non-zero exit. Returns the exit code.
    public static func runHelper(gitDirectory: String, remote: String, parent: Int32?,
                                 environment: [String: String]) -> Int32 {
        // A fetch nobody waits for must not go on writing refs: die with the parent.
        if let parent, factoryctl_die_with_parent(parent) != 0 { return 1 }
        let output = LineWriter(fd: 1)
        do {
            let repository = try Repository.open(at: gitDirectory)
            output.write("progress 0 0 0 0") // connected to our parent, about to contact the remote
            var last = Date.distantPast
            try repository.fetch(remote: remote, options: FetchOptions(environment: environment, progress: { progress in
                let now = Date()
                let complete = progress.totalObjects > 0 && progress.indexedObjects == progress.totalObjects
                guard complete || now.timeIntervalSince(last) >= 0.1 else { return }
                last = now
                output.write("progress \(progress.receivedObjects) \(progress.indexedObjects) \(progress.totalObjects) \(progress.receivedBytes)")
            }, activity: {
                let now = Date()
                guard now.timeIntervalSince(last) >= 0.1 else { return }
                last = now
                output.write("alive")
            }))
            return 0
        } catch {
            return report(error, to: output)
        }
    }

    /// A helper's failure, as one `error <message>` line; returns the exit code.
    static func report(_ error: any Error, to output: LineWriter) -> Int32 {
        let message = (error as? GitError)?.message ?? "\(error)"
        output.write("error " + message.replacing("\n", with: " "))
        return 1
    }

    /// The child's side of `remoteTip`: prints `tip <sha>` or `missing`, or `error <message>`
    /// before a non-zero exit.
    public static func runTipHelper(url: String, branch: String, parent: Int32?, environment: [String: String]) -> Int32 {
        if let parent, factoryctl_die_with_parent(parent) != 0 { return 1 }
        let output = LineWriter(fd: 1)
        output.write("alive")
        do {
            let tip = try Repository.remoteBranchTip(url: url, branch: branch, options: FetchOptions(environment: environment, activity: {
                output.write("alive")
            }))
            output.write(tip.map { "tip \($0.hex)" } ?? "missing")
            return 0
        } catch {
            return report(error, to: output)
        }
    }

    /// The commit `branch` points at on the remote at `url` (nil: no such branch). A network
    /// remote is asked from the helper child, ended after `timeout` seconds of silence.
    public static func remoteTip(url: String, branch: String, helper: [String]? = defaultHelper,
                                 environment: [String: String], timeout: Double) throws -> ObjectID? {
        guard let helper, !isLocal(url) else {
            return try Repository.remoteBranchTip(url: url, branch: branch, options: FetchOptions(environment: environment))
        }
        var error: String?
        var answer: String?
        let outcome: StreamingOutcome
        do {
            outcome = try ProcessRunner(environment: environment).runStreaming(
                helper + [subcommand, "--ls-remote", url, "--branch", branch, "--parent-pid", String(getpid())],
                silenceTimeout: timeout, shouldCancel: { false }, onSpawn: { _ in }
            ) { line in
                if line.hasPrefix("error ") { error = String(line.dropFirst(6)) } else if line != "alive" { answer = line }
            }
        } catch let launch {
            throw Failure.launch("\(launch)")
        }
        switch outcome {
        case .exited(0):
            if answer == "missing" { return nil }
            guard let answer, answer.hasPrefix("tip "), let id = ObjectID(hex: String(answer.dropFirst(4))) else {
                throw Failure.failed("unexpected answer from the helper: \(answer ?? "nothing")")
            }
            return id
        case .exited(let code): throw Failure.failed(error ?? "the helper exited with \(code)")
        case .silent: throw Failure.noProgress(seconds: timeout)
        case .cancelled: throw Failure.cancelled
        }
    }

    /// Why an isolated fetch failed.
    public enum Failure: Error, Sendable {
        case noProgress(seconds: Double)
        case cancelled
        case failed(String)
        case launch(String)
    }

    /// The parent's side. `onSpawn` gets the child's process group (for the intent record).
    static func fetch(helper: [String], gitDirectory: String, remote: String, environment: [String: String],
                      timeout: Double, shouldCancel: @escaping () -> Bool,
                      progress: ((FetchProgress) -> Void)?, onSpawn: (pid_t) -> Void) throws(Failure) {
        var error: String?
        let outcome: StreamingOutcome
        do {
            outcome = try ProcessRunner(environment: environment).runStreaming(
                helper + [subcommand, "--git-dir", gitDirectory, "--remote", remote, "--parent-pid", String(getpid())],
                silenceTimeout: timeout, shouldCancel: shouldCancel, onSpawn: onSpawn
            ) { line in
                if line.hasPrefix("error ") { error = String(line.dropFirst(6)); return }
                let fields = line.split(separator: " ")
                if fields.first == "progress", fields.count == 5, let progress,
                   let received = Int(fields[1]), let indexed = Int(fields[2]), let total = Int(fields[3]), let bytes = Int(fields[4]),
                   total > 0 {
                    progress(FetchProgress(receivedObjects: received, indexedObjects: indexed, totalObjects: total, receivedBytes: bytes))
                }
            }
        } catch let launch {
            throw .launch("\(launch)")
        }
        switch outcome {
        case .exited(0): return
        case .exited(let code): throw .failed(error ?? "the fetch helper exited with \(code)")
        case .silent: throw .noProgress(seconds: timeout)
        case .cancelled: throw .cancelled
        }
    }
}
