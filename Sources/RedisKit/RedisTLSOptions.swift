/// How a `rediss://` connection trusts the server and proves itself: the server's certificate is
/// verified against `ca` (a PEM file of trusted CA certificates; nil: the system bundle) and the
/// URL's host name or IP address. `cert` and `key` (PEM files) are the client certificate chain
/// and its private key, for a server that requires one (`tls-auth-clients yes`); a nil `key`
/// reads the key from `cert`. An encrypted key is refused (there is nobody to ask for its
/// passphrase).
public struct RedisTLSOptions: Sendable, Equatable {
    public var ca: String?
    public var cert: String?
    public var key: String?

    public init(ca: String? = nil, cert: String? = nil, key: String? = nil) {
        self.ca = ca
        self.cert = cert
        self.key = key
    }

    /// What the server's certificate is verified against, for messages.
    var trustDescription: String {
        ca.map { "the CA file \($0)" } ?? "the system CA bundle"
    }
}
