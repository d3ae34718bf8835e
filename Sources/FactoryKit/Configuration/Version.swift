import CSupport

/// factoryctl's version: the number lives here and nowhere else. `scripts/package.sh` reads it
/// for the .deb and the tarball, and builds with the git commit compiled in
/// (`-Xcc -DFACTORYCTL_COMMIT=...`); `--version`, the registry's `version` field and the
/// `factoryctl:<version>` capability all show the result.
public enum FactoryctlVersion {
    public static let number = "0.2.0"

    /// The commit the binary was built from, or nil for a build that did not say (a plain
    /// `swift build`).
    public static let commit: String? = {
        let text = String(cString: factoryctl_build_commit())
        return text.isEmpty ? nil : text
    }()

    /// `0.2.0+3f1c2a9b7d10`, or `0.2.0` when the commit is unknown.
    public static var full: String {
        commit.map { "\(number)+\($0)" } ?? number
    }
}
