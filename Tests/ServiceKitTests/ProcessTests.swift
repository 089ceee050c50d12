import Foundation
import Testing
import TestSupport

/// Launches the built `ingest` binary as an operator would.
@Suite("ingest process")
struct ProcessTests {
    /// elec2's loop.yaml, by absolute path.
    static let config = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("examples/elec2/loop.yaml").path

    /// A fresh state directory and consumer group, and the PII key elec2's loop.yaml needs (it
    /// hashes a field, so ingest refuses to start without one).
    static func environment() -> [String: String] {
        [
            "LOOP_STATE_DIR": FileManager.default.temporaryDirectory.appendingPathComponent("ingest-\(UUID())").path,
            "LOOP_PII_KEY": "process-tests",
            "LOOP_GROUP": Broker.uniqueTopic("process-tests"),
        ]
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
        let child = try ChildProcess.launch(
            "ingest",
            arguments: ["--config", Self.config, "--brokers", broker.bootstrap, "--admin-port", "0", "--admin-host", "127.0.0.1"],
            environment: Self.environment(),
            logDirectory: FileManager.default.temporaryDirectory.appendingPathComponent("ingest-process-\(UUID())"))
        defer { child.kill() }
        func log() -> String { (try? String(contentsOf: child.logFile, encoding: .utf8)) ?? "" }

        var port: Int?
        #expect(await waitUntil(timeout: .seconds(20)) {
            port = Self.loggedAdminPort(log())
            return port != nil || !child.isRunning
        })
        let adminPort = try #require(port, "no admin port logged: \(log())")

        #expect(try await HTTPGet.fetch(port: adminPort, path: "/healthz").status == 200)
        #expect(await waitUntil { (try? await HTTPGet.fetch(port: adminPort, path: "/readyz"))?.status == 200 })

        #expect(await child.stop(grace: .seconds(15)) == .exited(0), "not a prompt, clean exit after SIGTERM: \(child.logTail())")
        #expect(log().contains("\"message\":\"stopped\""))
        #expect(log().contains("\"kafka.librdkafka.version\""))
    }

    @Test("a missing loop.yaml is refused with exit code 2 and a message naming the file")
    func badConfig() async throws {
        let output = try await ChildProcess.run(
            "ingest", arguments: ["--config", "/nonexistent/loop.yaml", "--admin-port", "0"], environment: Self.environment(),
            timeout: .seconds(20))
        #expect(output.termination == .exited(2))
        #expect(output.standardError.contains("/nonexistent/loop.yaml"))
    }

    @Test("a bad flag exits 2 naming it; --help exits 0 listing the settings")
    func usage() async throws {
        let bad = try await ChildProcess.run("ingest", arguments: ["--admin-port", "eighty"], environment: Self.environment(), timeout: .seconds(20))
        #expect(bad.termination == .exited(2))
        #expect(bad.standardError.contains("--admin-port"))

        let help = try await ChildProcess.run("ingest", arguments: ["--help"], environment: Self.environment(), timeout: .seconds(20))
        #expect(help.succeeded)
        #expect(help.standardOutput.contains("LOOP_BROKERS"))
        #expect(help.standardOutput.contains("default 8081"))
    }
}
