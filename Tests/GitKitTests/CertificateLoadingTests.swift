import GitKit
import Testing

/// libgit2 (mbedTLS) parses the system CA bundle inside git_libgit2_init; factoryctl records that
/// call and runs it only before an HTTPS fetch.
@Suite struct CertificateLoadingTests {
    @Test func caBundleIsDeferredUntilAskedForThenLoadedOnce() throws {
        try GitLibrary.initialize()
        #expect(GitLibrary.isLoaded)
        // Deferred (unless an earlier test in this process already asked for it).
        #expect(GitLibrary.certificatesLoaded || GitLibrary.deferredCertificateLoads >= 1)
        #expect(GitLibrary.loadCertificates())
        #expect(GitLibrary.certificatesLoaded)
        #expect(GitLibrary.deferredCertificateLoads == 0)
        #expect(GitLibrary.loadCertificates()) // idempotent
    }
}
