import GitKit
import Testing

/// libgit2 (mbedTLS) parses the system CA bundle inside git_libgit2_init; factoryctl records that
/// call and runs it only before an HTTPS fetch.
@Suite struct CertificateLoadingTests {
    /// In a fresh process of its own (an exit test): libgit2's state is process-wide, and another
    /// test in this process (any HTTPS fetch) may already have loaded the bundle.
    @Test func caBundleIsDeferredUntilAskedForThenLoadedOnce() async {
        await #expect(processExitsWith: .success) {
            #expect(!GitLibrary.isLoaded, "loaded on first use only")
            try GitLibrary.initialize()
            #expect(GitLibrary.isLoaded)
            #expect(!GitLibrary.certificatesLoaded)
            #expect(GitLibrary.deferredCertificateLoads >= 1, "git_libgit2_init's parse of the bundle was recorded, not run")
            #expect(GitLibrary.loadCertificates())
            #expect(GitLibrary.certificatesLoaded)
            #expect(GitLibrary.deferredCertificateLoads == 0)
            #expect(GitLibrary.loadCertificates()) // idempotent
            #expect(GitLibrary.certificatesLoaded)
        }
    }
}
