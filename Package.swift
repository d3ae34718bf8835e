// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "factoryctl",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "factoryctl", targets: ["factoryctl"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        // No default traits: "FullFoundation" and "ConfigurationSupport" import Foundation proper
        // (ICU and all), which would undo keeping factoryctl on FoundationEssentials.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1", traits: []),
        // Ed25519 for signed missions (already built for Hummingbird; FoundationEssentials only).
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        // Metrics: FactoryKit records through swift-metrics (CoreMetrics); the Prometheus text
        // format is written by swift-prometheus at the edge (MetricsExport). Both need only
        // swift-atomics and CoreMetrics (no Foundation).
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // C libraries from Debian (libgit2-dev, libhiredis-dev).
        // libgit2's headers only: the library itself is loaded on first use (CGit2Loader).
        .systemLibrary(name: "CGit2", providers: [.apt(["libgit2-dev"])]),
        .target(name: "CGit2Loader", linkerSettings: [.linkedLibrary("dl")]),
        .systemLibrary(name: "CHiredis", providers: [.apt(["libhiredis-dev"])]),
        // OpenSSL's headers only (libssl-dev), for rediss://: libssl3 is loaded on first use.
        .target(name: "CTLS", linkerSettings: [.linkedLibrary("dl")]),
        // libcurl's header only (libcurl4-openssl-dev): the library is loaded on first use.
        .target(name: "CCurl", linkerSettings: [.linkedLibrary("dl")]),

        // Swift owners of the C handles.
        .target(name: "GitKit", dependencies: ["CGit2", "CGit2Loader", "CSupport", "FactoryBasics"]),
        .target(name: "RedisKit", dependencies: ["CHiredis", "CTLS", "FactoryBasics"]),
        .target(name: "HTTPKit", dependencies: ["CCurl"]),

        // Threads, the monotonic clock and string helpers, so no module needs Foundation proper (only
        // FoundationEssentials): see Sources/FactoryBasics/Basics.swift.
        .target(name: "FactoryBasics"),

        // glibc helpers Swift cannot see (posix_spawn chdir).
        // mbedtls_x509_crt_parse_file is exported so that it interposes the one libgit2 calls
        // (libgit2 is dlopen'ed, so nothing at link time asks for the export).
        .target(name: "CSupport", linkerSettings: [
            .unsafeFlags(["-Xlinker", "--export-dynamic-symbol=mbedtls_x509_crt_parse_file"]),
        ]),

        // The domain: configuration, update pipeline, missions, consumer, registry.
        .target(
            name: "FactoryKit",
            dependencies: [
                "GitKit",
                "RedisKit",
                "HTTPKit",
                "CSupport",
                "FactoryBasics",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ]
        ),

        // The metrics exporter: FactoryKit's metrics in the Prometheus text format (HQ's /metrics,
        // a factory's node_exporter textfile).
        .target(
            name: "MetricsExport",
            dependencies: [
                "FactoryKit",
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),

        // The HQ HTTP endpoint, on FactoryKit.
        .target(
            name: "FactoryGateway",
            dependencies: [
                "FactoryKit",
                "FactoryBasics",
                "MetricsExport",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        // The executable: one file per subcommand.
        .executableTarget(
            name: "factoryctl",
            dependencies: [
                "FactoryKit",
                "FactoryGateway",
                "FactoryBasics",
                "MetricsExport",
                "RedisKit",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        .testTarget(name: "GitKitTests", dependencies: ["GitKit", "TestSupport"]),
        .testTarget(name: "RedisKitTests", dependencies: ["RedisKit", "TestSupport"]),
        .testTarget(name: "FactoryKitTests", dependencies: ["FactoryKit", "GitKit", "RedisKit", "TestSupport"]),
        .testTarget(name: "FactoryGatewayTests", dependencies: ["FactoryGateway", "FactoryKit", "RedisKit", "TestSupport"]),
        .testTarget(
            name: "factoryctlTests",
            dependencies: ["factoryctl", "FactoryKit", "RedisKit", "TestSupport"]
        ),
        .target(name: "TestSupport", path: "Tests/TestSupport"),
    ]
)
