import CSupport
import FoundationEssentials
import Dispatch
import FactoryBasics
import Glibc

/// Writes whole lines to a file descriptor with one write(2) each.
final class LineWriter {
    let fd: Int32
    init(fd: Int32) { self.fd = fd }

    func write(_ line: String) {
        var bytes = Array((line + "\n").utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeMutableBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if written < 0 && errno == EINTR { continue }
            if written <= 0 { return }
            offset += written
        }
    }
}

/// How a streamed child ended.
enum StreamingOutcome: Equatable {
    case exited(Int32)
    /// Printed nothing for the silence timeout; its group was killed.
    case silent
    /// `shouldCancel` said so; its group was killed.
    case cancelled
}

extension ProcessRunner {
    /// Runs `argv` in a process group of its own, handing each line it prints (stdout; stderr is
    /// discarded) to `onLine`. Kills the group with SIGKILL when it prints nothing for
    /// `silenceTimeout` seconds or when `shouldCancel` returns true (checked every 100 ms).
    func runStreaming(_ argv: [String], silenceTimeout: Double, shouldCancel: () -> Bool,
                      onSpawn: (pid_t) -> Void, onLine: (String) -> Void) throws -> StreamingOutcome {
        let (pid, readEnd) = try spawn(argv, stderrToPipe: false)
        defer { close(readEnd) }
        onSpawn(pid)

        var ended: StreamingOutcome?
        var lastOutput = Date()
        var pending: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        var open = true
        while open {
            var poller = pollfd(fd: readEnd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, 100)
            if ready > 0 {
                let count = read(readEnd, &buffer, buffer.count)
                if count > 0 {
                    lastOutput = Date()
                    pending += buffer[0..<count]
                    while let newline = pending.firstIndex(of: 10) {
                        onLine(String(decoding: pending[..<newline], as: UTF8.self))
                        pending.removeSubrange(...newline)
                    }
                    if pending.count > 65536 { pending.removeAll() }
                    continue
                }
                if count < 0 && errno == EINTR { continue }
                open = false // EOF: the child (and anything it started) closed the pipe
            } else if ready < 0 && errno != EINTR {
                open = false
            }
            if open, shouldCancel() { ended = .cancelled }
            if open, ended == nil, Date().timeIntervalSince(lastOutput) >= silenceTimeout { ended = .silent }
            if ended != nil {
                kill(-pid, SIGKILL)
                open = false
            }
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        // Nothing of the group may outlive the fetch (it could write refs under our lock).
        kill(-pid, SIGKILL)
        if let ended { return ended }
        let exit = ChildExit()
        exit.set(status)
        return .exited(exit.exitCode)
    }
}
