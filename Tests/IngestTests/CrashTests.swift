#if canImport(Glibc)
import Glibc
#endif
import Contracts
import Foundation
import Kafka
import Logging
import ServiceKit
import TestSupport
import Testing

@Suite("ingest: crash and restart of the built executable")
struct CrashTests {
    /// Starts the built `ingest` on `deployment`, logging to `<logDirectory>/<name>.log`.
    static func launch(_ deployment: Deployment, name: String, logDirectory: URL) throws -> ChildProcess {
        try ChildProcess.launch(
            "ingest", name: name,
            environment: [
                "LOOP_BROKERS": deployment.broker.bootstrap, "LOOP_CONFIG": deployment.configPath,
                "LOOP_STATE_DIR": deployment.stateDirectory, "LOOP_GROUP": deployment.group, "LOOP_PII_KEY": Deployment.piiKey,
                "LOOP_ADMIN_HOST": "127.0.0.1", "LOOP_ADMIN_PORT": "0", "LOOP_BATCH_SIZE": "500",
            ],
            logDirectory: logDirectory)
    }

    @Test("SIGKILL of the ingest process mid-way through 50k raw events arriving while it runs, then a restart: every raw event exactly once in loop.events or the DLQ")
    func killAndRestart() async throws {
        let deployment = try await Deployment()
        let logger = Logger(label: "crash-test")
        try await TopicLayout(config: deployment.config).ensureTopics(kafka: deployment.kafka, logger: logger)
        let admin = try KafkaAdmin(config: deployment.kafka, logger: logger)
        let total = 50_000
        let raw = deployment.names.rawEvents
        let ids = (0..<total).map { "c-\($0)" }
        let invalid = Set(stride(from: 7, to: total, by: 20).map { ids[$0] })
        let records = ids.enumerated().map { index, id in
            var data = observationData()
            if invalid.contains(id) { data["dow"] = 9 }
            return binaryRecord(topic: raw, id: id, subject: "entity-\(index % 97)", data: data)
        }
        // The raw events arrive while ingest runs, in 50 chunks 200 ms apart, so the kill (at the
        // first 2,000 written) always lands before the last of them is even produced.
        let producing = Task {
            for start in stride(from: 0, to: total, by: 1_000) {
                try await deployment.produceRaw(Array(records[start..<min(start + 1_000, total)]))
                try await Task.sleep(for: .milliseconds(200))
            }
        }

        func written() async throws -> Int64 {
            try await deployment.recordCount(deployment.names.events, admin: admin)
                + deployment.recordCount(deployment.names.deadLetters, admin: admin)
        }
        let logs = FileManager.default.temporaryDirectory.appendingPathComponent(uniqueName("ingest-crash"))
        let first = try Self.launch(deployment, name: "first", logDirectory: logs)
        defer { first.kill() }
        var atKill: Int64 = 0
        let started = await waitFor(timeout: .seconds(60)) {
            atKill = (try? await written()) ?? 0
            return atKill >= 2_000 || !first.isRunning
        }
        first.kill()
        #expect(await first.waitForExit(timeout: .seconds(20)))
        #expect(started, "ingest wrote \(atKill) records in 60 s; log: \(first.logFile.path)")
        #expect(first.termination == .signalled(SIGKILL))
        #expect(atKill < Int64(total), "the kill came after everything was written (\(atKill)); it did not test a crash mid-way")

        try await producing.value

        let second = try Self.launch(deployment, name: "second", logDirectory: logs)
        defer { second.kill() }
        var after: Int64 = 0
        #expect(await waitFor(timeout: .seconds(60)) {
            after = (try? await written()) ?? 0
            return after >= Int64(total)
        }, "only \(after) of \(total) written after the restart; log: \(second.logFile.path)")
        #expect(await second.stop() == .exited(0), "\(second.logTail())")

        let events = try await deployment.readAll(deployment.names.events)
        let letters = try await deployment.readAll(deployment.names.deadLetters)
        let eventIDs = events.compactMap { $0.text("ce_id") }
        let letterIDs = try letters.compactMap { try DeadLetter(bytes: $0.value ?? []).headers["ce_id"] }
        #expect(events.count == total - invalid.count)
        #expect(letters.count == invalid.count)
        #expect(Set(eventIDs).count == eventIDs.count, "duplicates in loop.events")
        #expect(Set(letterIDs).count == letterIDs.count, "duplicates in the DLQ")
        #expect(Set(letterIDs) == invalid)
        #expect(Set(eventIDs).union(letterIDs) == Set(ids))
        #expect(Set(eventIDs).isDisjoint(with: letterIDs))
    }
}

private func uniqueName(_ prefix: String) -> String { "\(prefix)-\(getpid())-\(UUID().uuidString.prefix(8))" }
