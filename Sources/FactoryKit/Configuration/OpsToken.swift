/// The token rule for HQ's HTTP endpoint: `UA_OPS_TOKEN` must be set (unless the operator says
/// `--insecure-no-auth`) and at least `minimumLength` characters long.
public enum OpsToken {
    /// Shorter tokens are refused: 16 random characters is the least worth guarding an API with.
    public static let minimumLength = 16

    /// The token `serve` checks requests against; nil only with `insecureNoAuth` and no token.
    public static func forServing(_ environment: FactoryEnvironment, insecureNoAuth: Bool) throws(FactoryError) -> String? {
        guard let token = environment.opsToken else {
            if insecureNoAuth { return nil }
            throw .invalidArgument("UA_OPS_TOKEN is not set: refusing to serve /api/v1/ without a token (pass --insecure-no-auth to do it anyway)")
        }
        guard token.utf8.count >= minimumLength else {
            // Never echo the token itself, not even its length beyond "too short".
            throw .invalidArgument("UA_OPS_TOKEN is shorter than \(minimumLength) characters: refusing a token that can be guessed. Generate one with `openssl rand -hex 32`")
        }
        return token
    }
}
