import Glibc
import Synchronization

/// Carries a hiredis connection over TLS inside the process (Debian 12's hiredis 0.14 has no TLS):
/// hiredis gets one end of a unix socketpair (`redisConnectFd`), and a thread of the relay's own
/// pumps bytes between the other end and the `TLSSession`, with poll(2) on both sockets.
///
/// - Timeouts stay hiredis': its socket timeouts apply to its end of the pair, and the pump
///   waits without a timeout, so a long `BLOCK` read is never cut by the relay. A dead server
///   is found by TCP keepalive on the TLS socket, or by hiredis' own timeout.
/// - Shutdown: when hiredis' end is shut down (`RedisClient.interrupt()`) or closed
///   (`redisFree`), the pump sees EOF or a hang-up, sends close_notify and ends, which frees the
///   session and closes the TCP socket. When the server ends the session or TLS fails, the pump
///   records why (`Status.failure`) and closes its end, so hiredis' read ends too.
final class TLSRelay {
    /// What the connection's owner may read from another thread.
    final class Status: Sendable {
        private let recorded = Mutex<String?>(nil)

        /// Why the link failed on the TLS side (an alert, a protocol error), if it did; set
        /// before hiredis' end sees EOF.
        var failure: String? { recorded.withLock { $0 } }

        fileprivate func record(_ failure: String) {
            recorded.withLock { $0 = failure }
        }
    }

    /// How the pump ended.
    private enum End {
        /// hiredis' end was shut down or closed.
        case client
        /// The server ended the session (close_notify, or its TCP connection closed).
        case server
        case failed(String)
    }

    private let session: TLSSession
    /// The relay's end of the socketpair (non-blocking).
    private let local: Int32
    private let status: Status
    private let toServer = RelayBuffer()
    private let toClient = RelayBuffer()

    private init(session: TLSSession, local: Int32, status: Status) {
        self.session = session
        self.local = local
        self.status = status
    }

    deinit { close(local) }

    /// Starts relaying `session` on a new thread; returns hiredis' end of the socketpair (a
    /// blocking socket the caller owns) and the relay's status.
    static func start(_ session: TLSSession) throws(RedisError) -> (socket: Int32, status: Status) {
        var pair: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
            throw .connection("TLS to \(session.peer): cannot create a socketpair: \(String(cString: strerror(errno)))")
        }
        _ = fcntl(pair[1], F_SETFL, fcntl(pair[1], F_GETFL) | O_NONBLOCK)
        let status = Status()
        // Handed over whole: from here on only the pump thread touches the relay and the session.
        let relay = Unmanaged.passRetained(TLSRelay(session: session, local: pair[1], status: status))
        var thread = pthread_t()
        let code = pthread_create(&thread, nil, { raw in
            let relay = Unmanaged<TLSRelay>.fromOpaque(raw!).takeRetainedValue()
            relay.run()
            return nil
        }, relay.toOpaque())
        guard code == 0 else {
            relay.release() // frees the session and closes the relay's end
            close(pair[0])
            throw .connection("TLS to \(session.peer): cannot start the relay thread: \(String(cString: strerror(code)))")
        }
        pthread_detach(thread)
        return (pair[0], status)
    }

    private func run() {
        switch pump() {
        case .client: session.sendCloseNotify()
        case .server: break
        case .failed(let failure): status.record(failure)
        }
        // hiredis' pending read (if any) ends now; deinit closes both sockets.
        _ = shutdown(local, Int32(SHUT_RDWR))
    }

    /// What one turn of the pump did, and what to poll for when nothing moved.
    private struct Turn {
        var progress = false
        var tlsEvents: Int16 = 0
        var localEvents: Int16 = 0
    }

    /// Moves bytes both ways until either side ends. Each turn tries every transfer that has room
    /// or data, and polls only when none moved.
    private func pump() -> End {
        var serverClosed = false
        while true {
            var turn = Turn()
            if let end = serverToClient(&turn, serverClosed: &serverClosed) { return end }
            if let end = clientToServer(&turn) { return end }
            if turn.progress { continue }

            // Nothing moved: wait, without a timeout (hiredis times its own reads), for what the
            // transfers asked for. hiredis' end is always watched, so its hang-up ends the relay.
            var entries = [pollfd(fd: turn.tlsEvents == 0 ? -1 : session.socket, events: turn.tlsEvents, revents: 0),
                           pollfd(fd: local, events: turn.localEvents, revents: 0)]
            if poll(&entries, 2, -1) < 0 {
                if errno == EINTR { continue }
                return .failed("poll failed: \(String(cString: strerror(errno)))")
            }
            if entries[1].revents & Int16(POLLHUP | POLLERR | POLLNVAL) != 0 && entries[1].revents & Int16(POLLIN) == 0 {
                return .client
            }
        }
    }

    /// Server → hiredis: one read from the session (whenever there is room, so bytes OpenSSL
    /// holds already are never left waiting for a poll that would not wake), one send to
    /// hiredis' end. Returns how the pump ends, if it does.
    private func serverToClient(_ turn: inout Turn, serverClosed: inout Bool) -> End? {
        if toClient.isEmpty && !serverClosed {
            switch session.read(into: toClient.space) {
            case .transferred(let count): toClient.filled(count); turn.progress = true
            case .wantRead: turn.tlsEvents |= Int16(POLLIN)
            case .wantWrite: turn.tlsEvents |= Int16(POLLOUT)
            case .closed: serverClosed = true; turn.progress = true
            case .failed(let text): return .failed(text)
            }
        }
        if !toClient.isEmpty {
            let count = send(local, toClient.data.baseAddress, toClient.data.count, Int32(MSG_NOSIGNAL))
            if count > 0 {
                toClient.consumed(count); turn.progress = true
            } else if errno == EAGAIN || errno == EWOULDBLOCK {
                turn.localEvents |= Int16(POLLOUT)
            } else if errno != EINTR {
                return .client // hiredis' end is closed
            }
        }
        return serverClosed && toClient.isEmpty ? .server : nil
    }

    /// hiredis → server: one read from hiredis' end, one write to the session. Returns how the
    /// pump ends, if it does.
    private func clientToServer(_ turn: inout Turn) -> End? {
        if toServer.isEmpty {
            let count = Glibc.read(local, toServer.space.baseAddress, toServer.space.count)
            if count > 0 {
                toServer.filled(count); turn.progress = true
            } else if count == 0 {
                return .client // hiredis' end was shut down or closed
            } else if errno == EAGAIN || errno == EWOULDBLOCK {
                turn.localEvents |= Int16(POLLIN)
            } else if errno != EINTR {
                return .client
            }
        }
        if !toServer.isEmpty {
            switch session.write(UnsafeRawBufferPointer(toServer.data)) {
            case .transferred(let count): toServer.consumed(count); turn.progress = true
            case .wantRead: turn.tlsEvents |= Int16(POLLIN)
            case .wantWrite: turn.tlsEvents |= Int16(POLLOUT)
            case .closed: return .server
            case .failed(let text): return .failed(text)
            }
        }
        return nil
    }
}

/// A fixed buffer of bytes waiting to go one way: filled at `space`, drained from `data`.
private final class RelayBuffer {
    private let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: 16 * 1024, alignment: 16)
    private var start = 0
    private var end = 0

    deinit { storage.deallocate() }

    var isEmpty: Bool { start == end }
    /// Free room; only asked for when empty.
    var space: UnsafeMutableRawBufferPointer { UnsafeMutableRawBufferPointer(rebasing: storage[end...]) }
    var data: UnsafeMutableRawBufferPointer { UnsafeMutableRawBufferPointer(rebasing: storage[start..<end]) }

    func filled(_ count: Int) { end += count }

    func consumed(_ count: Int) {
        start += count
        if start == end { start = 0; end = 0 }
    }
}
