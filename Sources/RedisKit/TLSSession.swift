import CTLS
import FactoryBasics
import Glibc

/// The sole owner of OpenSSL's handles for one `rediss://` link: the `SSL_CTX` (trust, client
/// certificate), the `SSL` session and the TCP socket under it. `init` connects, handshakes and
/// verifies the server's certificate against the CA and the host name, or throws saying which
/// host and what failed; `deinit` frees the session and closes the socket.
///
/// Not Sendable: made on the connecting thread, then handed to `TLSRelay`'s pump thread, which
/// alone uses and releases it. The socket is non-blocking; `read`/`write` report what to wait for.
final class TLSSession {
    private let context: TLSContext
    private let ssl: OpaquePointer
    let socket: Int32
    /// `host:port` for messages.
    let peer: String
    private let host: String

    init(host: String, port: Int, options: RedisTLSOptions, timeout: Double) throws(RedisError) {
        let deadline = Monotonic.now + timeout
        let peer = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        let context = try TLSContext(options)
        let socket = try Self.connect(host: host, port: port, deadline: deadline, timeout: timeout)
        guard let ssl = ctls_SSL_new(context.raw) else {
            close(socket)
            throw .connection("TLS to \(peer): \(OpenSSL.failure("cannot create a session"))")
        }
        self.context = context
        self.ssl = ssl
        self.socket = socket
        self.peer = peer
        self.host = host
        // From here on, deinit frees the session and closes the socket if anything below throws.
        try verifyServer()
        guard ctls_SSL_set_fd(ssl, socket) == 1 else {
            throw .connection("TLS to \(peer): \(OpenSSL.failure("cannot attach the socket"))")
        }
        try handshake(deadline: deadline, timeout: timeout)
    }

    deinit {
        ctls_SSL_free(ssl)
        close(socket)
    }

    /// What one `read` or `write` did on the non-blocking socket.
    enum Step: Equatable {
        case transferred(Int)
        case wantRead
        case wantWrite
        /// The server ended the session (close_notify, or the TCP connection closed).
        case closed
        case failed(String)
    }

    func read(into buffer: UnsafeMutableRawBufferPointer) -> Step {
        ctls_ERR_clear_error()
        let count = ctls_SSL_read(ssl, buffer.baseAddress, Int32(buffer.count))
        return count > 0 ? .transferred(Int(count)) : step(after: count)
    }

    /// Writes from `buffer`; after `.wantRead`/`.wantWrite` call again with the same bytes.
    func write(_ buffer: UnsafeRawBufferPointer) -> Step {
        ctls_ERR_clear_error()
        let count = ctls_SSL_write(ssl, buffer.baseAddress, Int32(buffer.count))
        return count > 0 ? .transferred(Int(count)) : step(after: count)
    }

    /// Sends close_notify, once, without waiting for the server's (best effort: the relay is
    /// ending and the socket is closed next).
    func sendCloseNotify() {
        ctls_ERR_clear_error()
        _ = ctls_SSL_shutdown(ssl)
    }

    private func step(after result: Int32) -> Step {
        let code = ctls_SSL_get_error(ssl, result)
        switch code {
        case SSL_ERROR_WANT_READ: return .wantRead
        case SSL_ERROR_WANT_WRITE: return .wantWrite
        case SSL_ERROR_ZERO_RETURN: return .closed
        case SSL_ERROR_SYSCALL:
            let error = errno
            return ctls_ERR_peek_error() == 0 && (error == 0 || error == ECONNRESET || error == EPIPE)
                ? .closed : .failed(OpenSSL.failure(nil, errno: error))
        default:
            // A server that dies without close_notify: an ordinary disconnect, not a TLS fault.
            if ERR_GET_REASON(ctls_ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING {
                ctls_ERR_clear_error()
                return .closed
            }
            return .failed(OpenSSL.failure(nil))
        }
    }

    /// Checks the server's certificate against `host`: an IP address must be in its IP SANs, a
    /// name in its DNS SANs (or CN); a name is also sent as SNI.
    private func verifyServer() throws(RedisError) {
        let isAddress = ctls_X509_VERIFY_PARAM_set1_ip_asc(ctls_SSL_get0_param(ssl), host) == 1
        if !isAddress {
            ctls_ERR_clear_error() // set1_ip_asc leaves an error for a name that is not an address
            guard ctls_SSL_set1_host(ssl, host) == 1, ctls_set_sni(ssl, host) == 1 else {
                throw .connection("TLS to \(peer): \(OpenSSL.failure("cannot check the host name \(host)"))")
            }
        }
    }

    private func handshake(deadline: Double, timeout: Double) throws(RedisError) {
        while true {
            ctls_ERR_clear_error()
            let result = ctls_SSL_connect(ssl)
            if result == 1 { return }
            let events: Int16
            switch ctls_SSL_get_error(ssl, result) {
            case SSL_ERROR_WANT_READ: events = Int16(POLLIN)
            case SSL_ERROR_WANT_WRITE: events = Int16(POLLOUT)
            default: throw .connection(handshakeFailure(result))
            }
            guard Self.wait(socket, for: events, until: deadline) else {
                throw .connection("TLS handshake with \(peer) timed out after \(timeout.fixed(1)) s (is it a TLS port?)")
            }
        }
    }

    /// Why `SSL_connect` failed, read at once: the certificate check's own verdict if it is what
    /// failed (X509_verify_cert_error_string), else OpenSSL's error queue, else errno.
    private func handshakeFailure(_ result: Int32) -> String {
        let verdict = ctls_SSL_get_verify_result(ssl)
        if verdict != Int(X509_V_OK) {
            let reason = ctls_X509_verify_cert_error_string(verdict).map { String(cString: $0) } ?? "verify error \(verdict)"
            ctls_ERR_clear_error()
            return "TLS certificate verification of \(host) failed: \(reason) (verified against \(context.trust))"
        }
        let error = errno
        if ctls_SSL_get_error(ssl, result) == SSL_ERROR_SYSCALL, ctls_ERR_peek_error() == 0 {
            return "TLS handshake with \(peer) failed: " + (error == 0
                ? "the server closed the connection (is it a TLS port?)" : String(cString: strerror(error)))
        }
        return "TLS handshake with \(peer) failed: \(OpenSSL.failure(nil, errno: error))"
    }

    /// A non-blocking TCP connection to the first of `host`'s addresses that answers in time, with
    /// the keepalive hiredis would set (a dead peer breaks the link instead of hanging it).
    private static func connect(host: String, port: Int, deadline: Double, timeout: Double) throws(RedisError) -> Int32 {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let code = getaddrinfo(host, String(port), &hints, &list)
        guard code == 0, let list else {
            throw .connection("cannot resolve \(host): \(String(cString: gai_strerror(code)))")
        }
        defer { freeaddrinfo(list) }
        var failure = "no address"
        var next: UnsafeMutablePointer<addrinfo>? = list
        while let address = next?.pointee {
            next = address.ai_next
            let fd = Glibc.socket(address.ai_family, address.ai_socktype | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue),
                                  address.ai_protocol)
            guard fd >= 0 else { failure = String(cString: strerror(errno)); continue }
            if Glibc.connect(fd, address.ai_addr, address.ai_addrlen) != 0 {
                guard errno == EINPROGRESS else { failure = String(cString: strerror(errno)); close(fd); continue }
                guard wait(fd, for: Int16(POLLOUT), until: deadline) else {
                    failure = "timed out after \(timeout.fixed(1)) s"
                    close(fd)
                    continue
                }
                var error: Int32 = 0
                var length = socklen_t(MemoryLayout<Int32>.size)
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
                guard error == 0 else { failure = String(cString: strerror(error)); close(fd); continue }
            }
            var on: Int32 = 1
            var idle: Int32 = 15, interval: Int32 = 5, count: Int32 = 3
            let size = socklen_t(MemoryLayout<Int32>.size)
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &on, size)
            setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, size)
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_KEEPIDLE, &idle, size)
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_KEEPINTVL, &interval, size)
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_KEEPCNT, &count, size)
            return fd
        }
        throw .connection(failure)
    }

    /// Waits until `fd` is ready for `events` or `deadline` passes (false).
    static func wait(_ fd: Int32, for events: Int16, until deadline: Double) -> Bool {
        while true {
            let left = deadline - Monotonic.now
            guard left > 0 else { return false }
            var entry = pollfd(fd: fd, events: events, revents: 0)
            let ready = poll(&entry, 1, Int32(min(left * 1000 + 1, Double(Int32.max))))
            if ready > 0 { return true }
            if ready < 0 && errno != EINTR { return true } // let the next call report the error
        }
    }
}

/// The sole owner of one `SSL_CTX`: TLS 1.2 or later, the peer verified against `ca` (else the
/// system bundle), and the client certificate if one is given.
private final class TLSContext {
    let raw: OpaquePointer
    let trust: String

    init(_ options: RedisTLSOptions) throws(RedisError) {
        // OpenSSL is loaded on the first TLS connection; nothing else calls into it before this.
        if let failure = ctls_load() { throw .connection(String(cString: failure)) }
        guard let raw = ctls_TLS_client_method().flatMap({ ctls_SSL_CTX_new($0) }) else {
            throw .connection(OpenSSL.failure("cannot create a TLS context"))
        }
        self.raw = raw
        trust = options.trustDescription
        // From here on, deinit frees the context if anything below throws.
        ctls_SSL_CTX_set_verify(raw, SSL_VERIFY_PEER, nil)
        ctls_ctx_set_relay_modes(raw)
        // No passphrase prompt on the terminal for an encrypted key: loading it fails instead.
        ctls_SSL_CTX_set_default_passwd_cb(raw) { _, _, _, _ in 0 }
        guard ctls_ctx_set_min_tls12(raw) == 1 else {
            throw .connection(OpenSSL.failure("cannot require TLS 1.2"))
        }
        if let ca = options.ca {
            guard ctls_SSL_CTX_load_verify_locations(raw, ca, nil) == 1 else {
                throw .connection(OpenSSL.failure("cannot read the CA file \(ca)"))
            }
        } else if ctls_SSL_CTX_set_default_verify_paths(raw) != 1 {
            throw .connection(OpenSSL.failure("cannot read the system CA bundle"))
        }
        if let cert = options.cert {
            let key = options.key ?? cert
            guard ctls_SSL_CTX_use_certificate_chain_file(raw, cert) == 1 else {
                throw .connection(OpenSSL.failure("cannot read the client certificate \(cert)"))
            }
            guard ctls_SSL_CTX_use_PrivateKey_file(raw, key, SSL_FILETYPE_PEM) == 1 else {
                throw .connection(OpenSSL.failure("cannot use the client key \(key) (an unencrypted PEM key for \(cert))"))
            }
            guard ctls_SSL_CTX_check_private_key(raw) == 1 else {
                throw .connection(OpenSSL.failure("the client key \(key) does not match the certificate \(cert)"))
            }
        } else if let key = options.key {
            throw .connection("a client key (\(key)) was given without its certificate")
        }
    }

    deinit { ctls_SSL_CTX_free(raw) }
}

/// OpenSSL's error text, in one place: the calling thread's error queue, read at once and cleared.
enum OpenSSL {
    /// "`what`: reason" with the queue's first (innermost) reason; the queue may be empty: then
    /// errno, if given, else "unknown error".
    static func failure(_ what: String?, errno error: Int32 = 0) -> String {
        var first: String?
        while true {
            let code = ctls_ERR_get_error()
            if code == 0 { break }
            if first == nil { first = reason(code) }
        }
        let text = first ?? (error != 0 ? String(cString: strerror(error)) : "unknown error")
        return what.map { "\($0): \(text)" } ?? text
    }

    private static func reason(_ code: UInt) -> String {
        if ERR_GET_LIB(code) == ERR_LIB_SYS { return String(cString: strerror(ERR_GET_REASON(code))) }
        if let text = ctls_ERR_reason_error_string(code) { return String(cString: text) }
        var buffer = [CChar](repeating: 0, count: 256)
        buffer.withUnsafeMutableBufferPointer { ctls_ERR_error_string_n(code, $0.baseAddress, $0.count) }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
