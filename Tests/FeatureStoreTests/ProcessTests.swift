#if canImport(Glibc)
import Glibc
#endif
import Foundation
import TestSupport
import Testing

/// The built `feature-store` executable as a child process.
@Suite("feature-store process", .serialized)
struct ProcessTests {
    /// A running `feature-store`.
    struct Launched {
        let child: ChildProcess

        var outputText: String { (try? String(contentsOf: child.logFile, encoding: .utf8)) ?? "" }

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
        let child = try ChildProcess.launch(
            "feature-store",
            arguments: [
                "--config", deployment.yamlPath, "--brokers", deployment.broker.bootstrap, "--state-dir", stateDirectory,
                "--admin-port", "0", "--admin-host", "127.0.0.1", "--batch-size", "50", "--group", deployment.prefix + ".process",
            ],
            logDirectory: FileManager.default.temporaryDirectory.appendingPathComponent("feature-store-\(UUID())"))
        return Launched(child: child)
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
        defer { first.child.kill() }
        #expect(await waitUntil(timeout: .seconds(30)) { first.adminPort != nil || !first.child.isRunning })
        let firstPort = try #require(first.adminPort, "no admin port logged: \(first.outputText.suffix(2000))")
        #expect(await waitUntil(timeout: .seconds(40)) { (await Self.applied(port: firstPort) ?? 0) >= 1000 })
        first.child.kill()
        #expect(await first.child.waitForExit(timeout: .seconds(20)))
        #expect(first.child.termination == .signalled(SIGKILL))
        let expected = encoded(try referenceStates(events[...], schema: schema))
        #expect(try storedStates(in: stateDirectory) != expected, "the kill came before the end of the input")

        try await deployment.produce(events[half...])
        let second = try Self.launch(deployment, stateDirectory: stateDirectory)
        defer { second.child.kill() }
        try await deployment.waitForChangelog(expected, timeout: .seconds(60))
        #expect(await waitUntil(timeout: .seconds(10)) { second.adminPort != nil })
        let port = try #require(second.adminPort)
        let reply = try await HTTPGet.fetch(port: port, path: "/v1/features/entity-3")
        #expect(reply.status == 200)
        #expect(try await HTTPGet.fetch(port: port, path: "/readyz").status == 200)

        #expect(await second.child.stop(grace: .seconds(20)) == .exited(0), "not a clean exit within 20 s of SIGTERM: \(second.child.logTail())")
        #expect(try storedStates(in: stateDirectory) == expected)
    }
}
