#if canImport(Glibc)
import Glibc
#endif
import Foundation
import TestSupport
import Testing

/// The built `feature-store` executable as a child process.
@Suite("feature-store process", .serialized)
struct ProcessTests {
    /// `feature-store` in the build products directory, next to the test bundle.
    static func binary() throws -> URL {
        let executable = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var candidates = [Bundle.main.bundleURL.deletingLastPathComponent(), executable.deletingLastPathComponent()]
        for directory in [Bundle.main.bundleURL, executable] where directory.pathExtension == "xctest" {
            candidates.append(directory.deletingLastPathComponent())
        }
        for directory in candidates {
            let binary = directory.appendingPathComponent("feature-store")
            if FileManager.default.isExecutableFile(atPath: binary.path) { return binary }
        }
        throw Timeout(description: "no feature-store binary next to the tests in \(candidates.map(\.path)); run `swift build --product feature-store`")
    }

    struct Launched {
        let process: Process
        let output: URL

        var outputText: String { (try? String(contentsOf: output, encoding: .utf8)) ?? "" }

        /// The admin port logged in the JSON line `admin server listening`.
        var adminPort: Int? {
            for line in outputText.split(separator: "\n") where line.contains("\"admin server listening\"") {
                guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                      let port = (object["admin.port"] as? String).flatMap(Int.init) else { continue }
                return port
            }
            return nil
        }
    }

    static func launch(_ deployment: TestDeployment, stateDirectory: String) throws -> Launched {
        let process = Process()
        process.executableURL = try binary()
        process.arguments = [
            "--config", deployment.yamlPath, "--brokers", deployment.broker.bootstrap, "--state-dir", stateDirectory,
            "--admin-port", "0", "--admin-host", "127.0.0.1", "--batch-size", "50", "--group", deployment.prefix + ".process",
        ]
        process.environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("LOOP_") }
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("feature-store-\(UUID()).out")
        _ = FileManager.default.createFile(atPath: output.path, contents: nil)
        let handle = try FileHandle(forWritingTo: output)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        return Launched(process: process, output: output)
    }

    /// `feature_store_events_applied_total` from the process's `/metrics`.
    static func applied(port: Int) async -> Double? {
        guard let reply = try? await HTTPGet.fetch(port: port, path: "/metrics") else { return nil }
        for line in reply.body.split(separator: "\n") where line.hasPrefix("feature_store_events_applied_total ") {
            return Double(line.split(separator: " ")[1])
        }
        return nil
    }

    @Test("kill -9 of the executable mid-stream, then restart: every entity's state equals an uninterrupted run")
    func killAndRestart() async throws {
        let deployment = try await TestDeployment.make("fs-kill")
        let schema = try deployment.schema()
        let events = generateEvents(entities: 40, perEntity: 150, partitions: deployment.partitions, seed: 11)
        let half = events.count / 2
        try await deployment.produce(events[..<half])
        let stateDirectory = temporaryDirectory("fs-kill-state")

        let first = try Self.launch(deployment, stateDirectory: stateDirectory)
        defer { if first.process.isRunning { kill(first.process.processIdentifier, SIGKILL) } }
        #expect(await waitUntil(timeout: .seconds(30)) { first.adminPort != nil || !first.process.isRunning })
        let firstPort = try #require(first.adminPort, "no admin port logged: \(first.outputText.suffix(2000))")
        #expect(await waitUntil(timeout: .seconds(40)) { (await Self.applied(port: firstPort) ?? 0) >= 1000 })
        kill(first.process.processIdentifier, SIGKILL)
        first.process.waitUntilExit()
        #expect(first.process.terminationReason == .uncaughtSignal)
        let expected = encoded(try referenceStates(events[...], schema: schema))
        #expect(try storedStates(in: stateDirectory) != expected, "the kill came before the end of the input")

        try await deployment.produce(events[half...])
        let second = try Self.launch(deployment, stateDirectory: stateDirectory)
        defer { if second.process.isRunning { kill(second.process.processIdentifier, SIGKILL) } }
        try await deployment.waitForChangelog(expected, timeout: .seconds(60))
        #expect(await waitUntil(timeout: .seconds(10)) { second.adminPort != nil })
        let port = try #require(second.adminPort)
        let reply = try await HTTPGet.fetch(port: port, path: "/v1/features/entity-3")
        #expect(reply.status == 200)
        #expect(try await HTTPGet.fetch(port: port, path: "/readyz").status == 200)

        kill(second.process.processIdentifier, SIGTERM)
        #expect(await waitUntil(timeout: .seconds(20)) { !second.process.isRunning }, "still running 20 s after SIGTERM")
        second.process.waitUntilExit()
        #expect(second.process.terminationStatus == 0, "\(second.outputText.suffix(2000))")
        #expect(try storedStates(in: stateDirectory) == expected)
    }
}
