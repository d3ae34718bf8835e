import Foundation

/// A real TLS git host as sites run one: nginx in front of fcgiwrap and git's own CGI,
/// `git http-backend`, with HTTP basic auth, on a free loopback port. A throwaway CA signs its
/// certificate (`caFile`; the system bundle does not hold it). Both servers are started by the
/// test and stopped by pid; nginx runs as one process (`master_process off`), so it is that pid.
public final class NginxGitHost: @unchecked Sendable {
    /// nginx and fcgiwrap as Debian installs them, or as scripts/install-deps.sh extracts them
    /// (/usr/local/sbin: without the packages' services).
    public static func program(_ name: String) -> String? {
        ["/usr/local/sbin/", "/usr/sbin/", "/usr/local/bin/", "/usr/bin/"].map { $0 + name }
            .first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    public struct Unavailable: Error, CustomStringConvertible { public let description: String }

    public let directory: TemporaryDirectory
    public let port: Int
    /// The CA that signed the host's certificate (PEM).
    public let caFile: String
    private var servers: [ConsumerProcess] = []

    /// Serves the repositories under `root` (`https://127.0.0.1:PORT/NAME.git`) to `user` with
    /// `password`; anyone else gets 401.
    public init(root: String, user: String, password: String) throws {
        guard let nginx = Self.program("nginx"), let fcgiwrap = Self.program("fcgiwrap") else {
            throw Unavailable(description: "nginx and fcgiwrap are needed (scripts/install-deps.sh installs them)")
        }
        directory = TemporaryDirectory("factoryctl-nginx")
        port = freeLoopbackPort()
        caFile = directory.join("ca.crt")
        try makeCertificates()
        let hash = try Command.check(["openssl", "passwd", "-apr1", password]).trimmingCharacters(in: .whitespacesAndNewlines)
        try "\(user):\(hash)\n".write(toFile: directory.join("htpasswd"), atomically: true, encoding: .utf8)
        let socket = directory.join("fcgiwrap.sock")
        try FileManager.default.createDirectory(atPath: directory.join("tmp"), withIntermediateDirectories: true)
        try configuration(root: root, socket: socket).write(toFile: directory.join("nginx.conf"), atomically: true, encoding: .utf8)

        let environment = ["PATH": "/usr/local/bin:/usr/bin:/bin"]
        servers.append(try ConsumerProcess(binary: fcgiwrap, arguments: ["-s", "unix:" + socket], environment: environment,
                                           log: directory.join("fcgiwrap.log")))
        servers.append(try ConsumerProcess(binary: nginx, arguments: ["-p", directory.path, "-c", directory.join("nginx.conf"), "-e", "stderr"],
                                           environment: environment, log: directory.join("nginx.log")))
        let port = self.port
        guard eventually(timeout: 20, { FileManager.default.fileExists(atPath: socket) && Self.accepts(port: port) }) else {
            let logs = servers.map(\.output).joined(separator: "\n")
            stop()
            throw Unavailable(description: "nginx or fcgiwrap did not start: \(logs)")
        }
    }

    deinit { stop() }

    public func url(_ repository: String) -> String { "https://127.0.0.1:\(port)/\(repository)" }

    /// Stops both servers by pid (nginx first, so no request reaches a stopped fcgiwrap). SIGKILL,
    /// as for the tests' redis-server and sshd: a test runner may start children with SIGTERM
    /// blocked, and neither server holds anything to keep.
    public func stop() {
        for server in servers.reversed() {
            server.signal(SIGKILL)
            _ = server.waitForExit(timeout: 10)
        }
        servers = []
    }

    private func makeCertificates() throws {
        let key = directory.join("ca.key"), hostKey = directory.join("host.key"), request = directory.join("host.csr")
        try Command.check(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=factoryctl test CA",
                           "-days", "1", "-keyout", key, "-out", caFile])
        try Command.check(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
                           "-keyout", hostKey, "-out", request])
        // mbedTLS 2 (libgit2) matches a host only against dNSName entries: both are given.
        try "subjectAltName=IP:127.0.0.1,DNS:127.0.0.1\n".write(toFile: directory.join("san.ext"), atomically: true, encoding: .utf8)
        try Command.check(["openssl", "x509", "-req", "-in", request, "-CA", caFile, "-CAkey", key, "-CAcreateserial",
                           "-days", "1", "-extfile", directory.join("san.ext"), "-out", directory.join("host.crt")])
    }

    private func configuration(root: String, socket: String) -> String {
        let temp = directory.join("tmp")
        return """
        daemon off;
        master_process off;
        pid \(directory.join("nginx.pid"));
        error_log stderr warn;
        events { worker_connections 64; }
        http {
            access_log off;
            client_body_temp_path \(temp)/body;
            fastcgi_temp_path \(temp)/fastcgi;
            proxy_temp_path \(temp)/proxy;
            uwsgi_temp_path \(temp)/uwsgi;
            scgi_temp_path \(temp)/scgi;
            server {
                listen 127.0.0.1:\(port) ssl;
                ssl_certificate \(directory.join("host.crt"));
                ssl_certificate_key \(directory.join("host.key"));
                location / {
                    auth_basic "git";
                    auth_basic_user_file \(directory.join("htpasswd"));
                    fastcgi_pass unix:\(socket);
                    fastcgi_param SCRIPT_FILENAME /usr/lib/git-core/git-http-backend;
                    fastcgi_param GATEWAY_INTERFACE CGI/1.1;
                    fastcgi_param SERVER_PROTOCOL $server_protocol;
                    fastcgi_param REQUEST_METHOD $request_method;
                    fastcgi_param QUERY_STRING $query_string;
                    fastcgi_param CONTENT_TYPE $content_type;
                    fastcgi_param CONTENT_LENGTH $content_length;
                    fastcgi_param REMOTE_ADDR $remote_addr;
                    fastcgi_param HTTP_CONTENT_ENCODING $http_content_encoding;
                    fastcgi_param GIT_PROJECT_ROOT \(root);
                    fastcgi_param GIT_HTTP_EXPORT_ALL "";
                    fastcgi_param PATH_INFO $uri;
                    fastcgi_param REMOTE_USER $remote_user;
                    fastcgi_param GIT_PROTOCOL $http_git_protocol;
                }
            }
        }

        """
    }

    /// Whether something accepts TCP connections on 127.0.0.1:`port`.
    static func accepts(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        } == 0
    }
}
