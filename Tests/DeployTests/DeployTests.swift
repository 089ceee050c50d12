import FeatureStore
import Feedback
import Foundation
import Ingest
import Retrainer
import Scorer
import ServiceKit
import Testing
import Yams

/// The compose deployment checked statically (this machine has a Docker client but no engine).
@Suite("Deployment")
struct DeployTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// The settings each service's config reads, by the compose service that runs it.
    static let declared: [String: [SettingSpec]] = [
        IngestService.name: ServiceRunner.declaredSettings(of: IngestService.self),
        FeatureStoreService.name: ServiceRunner.declaredSettings(of: FeatureStoreService.self),
        ScorerService.name: ServiceRunner.declaredSettings(of: ScorerService.self),
        FeedbackService.name: ServiceRunner.declaredSettings(of: FeedbackService.self),
        RetrainerService.name: ServiceRunner.declaredSettings(of: RetrainerService.self),
    ]

    func composeServices() throws -> [String: [String: Any]] {
        let text = try String(contentsOf: Self.root.appendingPathComponent("docker-compose.yml"), encoding: .utf8)
        let document = try #require(try Yams.load(yaml: text) as? [String: Any])
        return try #require(document["services"] as? [String: [String: Any]])
    }

    func validate(_ file: URL) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", Self.root.appendingPathComponent("deploy/validate-compose.py").path, file.path]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, output)
    }

    @Test("docker-compose.yml validates against the Compose Specification schema")
    func composeMatchesSchema() throws {
        let result = try validate(Self.root.appendingPathComponent("docker-compose.yml"))
        #expect(result.status == 0, "\(result.output)")
    }

    @Test("the validator rejects a compose file that breaks the schema, naming the path")
    func validatorRejectsBadCompose() throws {
        let bad = FileManager.default.temporaryDirectory.appendingPathComponent("compose-\(UUID().uuidString).yml")
        try "services:\n  ingest:\n    image: x\n    restart: 42\n    healthcheck: { interval: [1] }\n"
            .write(to: bad, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: bad) }
        let result = try validate(bad)
        #expect(result.status == 1)
        #expect(result.output.contains("services.ingest"))
    }

    @Test("every service in compose runs a FeedbackLoop executable with its own admin port, state volume and readiness check")
    func everyServiceIsOperableOnItsOwn() throws {
        let services = try composeServices()
        for (name, specs) in Self.declared {
            let service = try #require(services[name], "compose has no service \(name)")
            #expect(service["command"] as? [String] == [name])
            let environment = try #require(service["environment"] as? [String: Any])
            let port = try #require(environment["LOOP_ADMIN_PORT"] as? String)
            let defaultPort = specs.first { $0.environmentVariable == "LOOP_ADMIN_PORT" }?.defaultText
            #expect(port == defaultPort, "\(name) admin port")
            let volumes = try #require(service["volumes"] as? [String])
            #expect(volumes.contains { $0.hasPrefix("\(name)-state:") })
            #expect(volumes.contains { $0.hasSuffix("loop.yaml:ro") })
            let check = try #require((service["healthcheck"] as? [String: Any])?["test"] as? [String])
            #expect(check.contains { $0.contains(":\(port)/readyz") })
        }
    }

    @Test("every environment variable compose sets is a setting that service reads, and required ones have values")
    func environmentParity() throws {
        let services = try composeServices()
        for (name, specs) in Self.declared {
            let environment = try #require(services[name]?["environment"] as? [String: Any])
            let known = Set(specs.map(\.environmentVariable))
            for variable in environment.keys {
                #expect(known.contains(variable), "compose sets \(variable) for \(name), which \(name) does not read")
            }
            for spec in specs where spec.isRequired {
                #expect(environment[spec.environmentVariable] != nil, "\(name) requires \(spec.environmentVariable)")
            }
        }
    }

    @Test("the Dockerfile's runtime stage installs a librdkafka of at least 2.2")
    func runtimeLibrdkafkaIsNewEnough() throws {
        let dockerfile = try String(contentsOf: Self.root.appendingPathComponent("deploy/Dockerfile"), encoding: .utf8)
        let runtime = try #require(dockerfile.components(separatedBy: "\nFROM ").last)
        #expect(runtime.hasPrefix("ubuntu:24.04"), "runtime stage is Ubuntu noble")
        let pin = try #require(runtime.firstMatch(of: /librdkafka1=(\d+)\.(\d+)\.(\d+)/), "librdkafka1 is pinned")
        let version = (Int(pin.1)!, Int(pin.2)!, Int(pin.3)!)
        #expect(version >= (2, 2, 0), "librdkafka1 \(version) is older than 2.2.0")
    }
}
