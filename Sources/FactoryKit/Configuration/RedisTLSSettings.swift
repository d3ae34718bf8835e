import RedisKit

/// Redis over TLS (`rediss://`): how the server is trusted and how a factory proves itself.
extension FactoryEnvironment {
    /// The names read by `redisTLSOptions()`, in the order messages mention them.
    public static let redisTLSNames = ["UA_REDIS_TLS_CA", "UA_REDIS_TLS_CERT", "UA_REDIS_TLS_KEY"]

    /// `UA_REDIS_TLS_CA`: a PEM file of the CA certificates the server's certificate must chain
    /// to (else the system bundle); `UA_REDIS_TLS_CERT` and `UA_REDIS_TLS_KEY`: the client
    /// certificate (chain) and its unencrypted key, for a server with `tls-auth-clients yes` (a
    /// key inside the certificate's file needs no `UA_REDIS_TLS_KEY`).
    public func redisTLSOptions() throws(FactoryError) -> RedisTLSOptions {
        let options = RedisTLSOptions(ca: self["UA_REDIS_TLS_CA"], cert: self["UA_REDIS_TLS_CERT"], key: self["UA_REDIS_TLS_KEY"])
        if options.key != nil && options.cert == nil {
            throw .invalidArgument("UA_REDIS_TLS_KEY is set without UA_REDIS_TLS_CERT: set both (the client certificate and its key) or neither")
        }
        return options
    }

    /// The Redis server: `flag` (`--redis-url`), else `redisURL`, parsed; a `rediss://` URL
    /// carries `redisTLSOptions()`. TLS settings with a plain `redis://` URL are refused rather
    /// than ignored: the link, and the password on it, would not be encrypted.
    public func redisServerURL(flag: String? = nil) throws(FactoryError) -> RedisURL {
        let options = try redisTLSOptions()
        let url: RedisURL
        do {
            url = try RedisURL(flag ?? redisURL, tls: options)
        } catch {
            throw .invalidArgument("\(error)")
        }
        if url.tls == nil, case .tcp = url.endpoint, let name = Self.redisTLSNames.first(where: { self[$0] != nil }) {
            throw .invalidArgument("\(name) is set but the Redis URL \(url) is plain text: use rediss:// for TLS, or unset \(name)")
        }
        return url
    }
}
