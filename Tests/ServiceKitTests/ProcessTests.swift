#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
import TestSupport

/// Launches the built `ingest` binary as an operator would.
@Suite("ingest process")
struct ProcessTests {
    /// `ingest` in the build products directory, next to the test bundle.
    static func ingestBinary() throws -> URL {
        let executable = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var candidates = [Bundle.main.bundleURL.deletingLastPathComponent(), executable.deletingLastPathComponent()]
        for directory in [Bundle.main.bundleURL, executable] where directory.pathExtension == "xctest" {
            candidates.append(directory.deletingLastPathComponent())
        }
        for directory in candidates {
            let binary = directory.appendingPathComponent("ingest")
            if FileManager.default.isExecutableFile(atPath: binary.path) { return binary }
        }
        throw HTTPGet.Failure(description: "no ingest binary next to the tests in \(candidates.map(\.path)); run `swift build --product ingest`")
    }

    /// The package root, for `examples/elec2/loop.yaml`.
    static let packageRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    struct Launched {
        let process: Process
        let output: URL
        let errors: URL

        var outputText: String { (try? String(contentsOf: output, encoding: .utf8)) ?? "" }
        var errorText: String { (try? String(contentsOf: errors, encoding: .utf8)) ?? "" }
    }

    static func launch(_ arguments: [String]) throws -> Launched {
        let process = Process()
        process.executableURL = try ingestBinary()
        process.arguments = arguments
        process.currentDirectoryURL = packageRoot
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("LOOP_") }
        environment["LOOP_STATE_DIR"] = FileManager.default.temporaryDirectory.appendingPathComponent("ingest-\(UUID())").path
        // elec2's loop.yaml hashes a PII field, so ingest refuses to start without a key.
        environment["LOOP_PII_KEY"] = "process-tests"
        environment["LOOP_GROUP"] = Broker.uniqueTopic("process-tests")
        process.environment = environment
        let directory = FileManager.default.temporaryDirectory
        let output = directory.appendingPathComponent("ingest-\(UUID()).out")
        let errors = directory.appendingPathComponent("ingest-\(UUID()).err")
        _ = FileManager.default.createFile(atPath: output.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errors.path, contents: nil)
        process.standardOutput = try FileHandle(forWritingTo: output)
        process.standardError = try FileHandle(forWritingTo: errors)
        try process.run()
        return Launched(process: process, output: output, errors: errors)
    }

    /// The admin port the process logged in its JSON line `admin server listening`.
    static func loggedAdminPort(_ output: String) -> Int? {
        for line in output.split(separator: "\n") where line.contains("\"admin server listening\"") {
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let port = (object["admin.port"] as? String).flatMap(Int.init)
            else { continue }
            return port
        }
        return nil
    }

    @Test("starts on port 0, serves /healthz and exits 0 promptly on SIGTERM")
    func startAndStop() async throws {
        // Ingest creates its topics and recovers before it is ready, so it needs a broker.
        let broker = try await Broker.shared()
        let launched = try Self.launch(["--config", "examples/elec2/loop.yaml", "--brokers", broker.bootstrap, "--admin-port", "0",
                                        "--admin-host", "127.0.0.1"])
        defer { if launched.process.isRunning { launched.process.interrupt() } }

        var port: Int?
        #expect(await waitUntil(timeout: .seconds(20)) {
            port = Self.loggedAdminPort(launched.outputText)
            return port != nil || !launched.process.isRunning
        })
        let adminPort = try #require(port, "no admin port logged; stdout: \(launched.outputText) stderr: \(launched.errorText)")

        #expect(try await HTTPGet.fetch(port: adminPort, path: "/healthz").status == 200)
        #expect(await waitUntil { (try? await HTTPGet.fetch(port: adminPort, path: "/readyz"))?.status == 200 })

        kill(launched.process.processIdentifier, SIGTERM)
        #expect(await waitUntil(timeout: .seconds(15)) { !launched.process.isRunning }, "still running 15 s after SIGTERM")
        launched.process.waitUntilExit()
        #expect(launched.process.terminationReason == .exit)
        #expect(launched.process.terminationStatus == 0)
        #expect(launched.outputText.contains("\"message\":\"stopped\""))
        #expect(launched.outputText.contains("\"kafka.librdkafka.version\""))
    }

    @Test("a missing loop.yaml is refused with exit code 2 and a message naming the file")
    func badConfig() async throws {
        let launched = try Self.launch(["--config", "/nonexistent/loop.yaml", "--admin-port", "0"])
        #expect(await waitUntil(timeout: .seconds(20)) { !launched.process.isRunning })
        launched.process.waitUntilExit()
        #expect(launched.process.terminationStatus == 2)
        #expect(launched.errorText.contains("/nonexistent/loop.yaml"))
    }

    @Test("a bad flag exits 2 naming it; --help exits 0 listing the settings")
    func usage() async throws {
        let bad = try Self.launch(["--admin-port", "eighty"])
        #expect(await waitUntil(timeout: .seconds(20)) { !bad.process.isRunning })
        bad.process.waitUntilExit()
        #expect(bad.process.terminationStatus == 2)
        #expect(bad.errorText.contains("--admin-port"))

        let help = try Self.launch(["--help"])
        #expect(await waitUntil(timeout: .seconds(20)) { !help.process.isRunning })
        help.process.waitUntilExit()
        #expect(help.process.terminationStatus == 0)
        #expect(help.outputText.contains("LOOP_BROKERS"))
        #expect(help.outputText.contains("default 8081"))
    }
}
