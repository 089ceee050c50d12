// swift-tools-version: 6.1
import PackageDescription

/// librdkafka is installed by `deploy/local/install.sh` into `.local/librdkafka` when the system's is
/// older than 2.2; binaries carry an rpath to it so they never load an older system copy at run time.
let localLibrdkafka = Context.packageDirectory + "/.local/librdkafka/lib"

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "FeedbackLoop",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "ingest", targets: ["IngestApp"]),
        .executable(name: "feature-store", targets: ["FeatureStoreApp"]),
        .executable(name: "scorer", targets: ["ScorerApp"]),
        .executable(name: "feedback", targets: ["FeedbackApp"]),
        .executable(name: "retrainer", targets: ["RetrainerApp"]),
        .executable(name: "loopctl", targets: ["LoopctlApp"]),
        .executable(name: "loop-bench", targets: ["Bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1", traits: []),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
    ],
    targets: [
        // MARK: - C shims

        .systemLibrary(name: "CRdKafka", path: "Shared/CRdKafka", pkgConfig: "rdkafka",
                       providers: [.apt(["librdkafka-dev"])]),
        .systemLibrary(name: "CSQLite", path: "Shared/CSQLite", providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(name: "CCrypto", path: "Shared/CCrypto", pkgConfig: "libcrypto",
                       providers: [.apt(["libssl-dev"])]),

        // MARK: - Shared libraries

        .target(
            name: "Kafka",
            dependencies: ["CRdKafka", .product(name: "Logging", package: "swift-log")],
            path: "Shared/Kafka",
            swiftSettings: swiftSettings,
            linkerSettings: [.unsafeFlags(["-Xlinker", "-rpath", "-Xlinker", localLibrdkafka])]
        ),
        .target(
            name: "Contracts",
            dependencies: [.product(name: "Yams", package: "Yams")],
            path: "Shared/Contracts",
            swiftSettings: swiftSettings
        ),
        .target(name: "Storage", dependencies: ["CSQLite"], path: "Shared/Storage", swiftSettings: swiftSettings),
        .target(name: "Features", dependencies: ["Contracts"], path: "Shared/Features", swiftSettings: swiftSettings),
        .target(name: "Learning", dependencies: ["Contracts"], path: "Shared/Learning", swiftSettings: swiftSettings),
        .target(
            name: "ServiceKit",
            dependencies: [
                "Kafka", "Contracts", "CCrypto",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            path: "Shared/ServiceKit",
            swiftSettings: swiftSettings
        ),

        // MARK: - Services: logic in a library, `main` only wires

        .target(name: "Ingest", dependencies: ["ServiceKit", "Storage", "CCrypto"], path: "Services/Ingest/Core", swiftSettings: swiftSettings),
        .executableTarget(name: "IngestApp", dependencies: ["Ingest"], path: "Services/Ingest/App", swiftSettings: swiftSettings),
        .target(name: "FeatureStore", dependencies: ["ServiceKit", "Storage", "Features"], path: "Services/FeatureStore/Core", swiftSettings: swiftSettings),
        .executableTarget(name: "FeatureStoreApp", dependencies: ["FeatureStore"], path: "Services/FeatureStore/App", swiftSettings: swiftSettings),
        .target(name: "Scorer", dependencies: ["ServiceKit", "Storage", "Features", "Learning"], path: "Services/Scorer/Core", swiftSettings: swiftSettings),
        .executableTarget(name: "ScorerApp", dependencies: ["Scorer"], path: "Services/Scorer/App", swiftSettings: swiftSettings),
        .target(name: "Feedback", dependencies: ["ServiceKit", "Storage", "Learning"], path: "Services/Feedback/Core", swiftSettings: swiftSettings),
        .executableTarget(name: "FeedbackApp", dependencies: ["Feedback"], path: "Services/Feedback/App", swiftSettings: swiftSettings),
        .target(name: "Retrainer", dependencies: ["ServiceKit", "Storage", "Learning"], path: "Services/Retrainer/Core", swiftSettings: swiftSettings),
        .executableTarget(name: "RetrainerApp", dependencies: ["Retrainer"], path: "Services/Retrainer/App", swiftSettings: swiftSettings),

        .target(
            name: "Loopctl",
            dependencies: ["ServiceKit", "Learning", .product(name: "Yams", package: "Yams"), .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Services/Loopctl/Core", swiftSettings: swiftSettings
        ),
        .executableTarget(name: "LoopctlApp", dependencies: ["Loopctl", .product(name: "ArgumentParser", package: "swift-argument-parser")], path: "Services/Loopctl/App", swiftSettings: swiftSettings),

        // MARK: - Benchmarks

        .executableTarget(name: "Bench", dependencies: ["Kafka", "Learning", "Ingest", "FeatureStore", "Scorer", "Feedback", "TestSupport", .product(name: "Logging", package: "swift-log")], path: "Benchmarks", swiftSettings: swiftSettings),

        // MARK: - Tests

        .target(name: "TestSupport", dependencies: ["Kafka"], path: "Tests/TestSupport", swiftSettings: swiftSettings),
        .testTarget(name: "KafkaTests", dependencies: ["Kafka", "TestSupport"], path: "Tests/KafkaTests", swiftSettings: swiftSettings),
        .testTarget(name: "ContractsTests", dependencies: ["Contracts"], path: "Tests/ContractsTests", swiftSettings: swiftSettings),
        .testTarget(name: "StorageTests", dependencies: ["Storage"], path: "Tests/StorageTests", swiftSettings: swiftSettings),
        .testTarget(name: "FeaturesTests", dependencies: ["Features"], path: "Tests/FeaturesTests", swiftSettings: swiftSettings),
        .testTarget(name: "LearningTests", dependencies: ["Learning"], path: "Tests/LearningTests", swiftSettings: swiftSettings),
        .testTarget(name: "ServiceKitTests", dependencies: ["ServiceKit", "TestSupport"], path: "Tests/ServiceKitTests", swiftSettings: swiftSettings),
        .testTarget(name: "IngestTests", dependencies: ["Ingest", "TestSupport"], path: "Tests/IngestTests", swiftSettings: swiftSettings),
        .testTarget(name: "FeatureStoreTests", dependencies: ["FeatureStore", "TestSupport"], path: "Tests/FeatureStoreTests", swiftSettings: swiftSettings),
        .testTarget(name: "ScorerTests", dependencies: ["Scorer", "TestSupport"], path: "Tests/ScorerTests", swiftSettings: swiftSettings),
        .testTarget(name: "FeedbackTests", dependencies: ["Feedback", "TestSupport"], path: "Tests/FeedbackTests", swiftSettings: swiftSettings),
        .testTarget(name: "RetrainerTests", dependencies: ["Retrainer", "Scorer", "TestSupport"], path: "Tests/RetrainerTests", swiftSettings: swiftSettings),
        .testTarget(
            name: "DeployTests",
            dependencies: ["Ingest", "FeatureStore", "Scorer", "Feedback", "Retrainer", .product(name: "Yams", package: "Yams")],
            path: "Tests/DeployTests", swiftSettings: swiftSettings
        ),
        .testTarget(name: "LoopctlTests", dependencies: ["Loopctl", "TestSupport"], path: "Tests/LoopctlTests", swiftSettings: swiftSettings),
        .testTarget(
            name: "EndToEndTests",
            dependencies: ["Contracts", "Kafka", "ServiceKit", "TestSupport", .product(name: "Logging", package: "swift-log")],
            path: "Tests/EndToEndTests", swiftSettings: swiftSettings
        ),
    ]
)
