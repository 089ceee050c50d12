import Logging
@testable import ServiceKit
import ServiceLifecycle
import Testing

/// A part that records its start, the shutdown request and its stop, finishing a bit of in-flight
/// work in between.
struct RecordingService: Service {
    let name: String
    let recorder: Recorder

    func run() async throws {
        recorder.record("\(name) started")
        try? await gracefulShutdown()
        recorder.record("\(name) asked to stop")
        await Task.yield()
        recorder.record("\(name) stopped")
    }
}

@Suite("Lifecycle")
struct LifecycleTests {
    @Test("graceful shutdown asks every part to stop, in reverse order, after readiness drops")
    func gracefulShutdown() async throws {
        let recorder = Recorder()
        let readiness = Readiness()
        readiness.satisfy("test.running")
        let group = ServiceRunner.serviceGroup(
            parts: [("first", RecordingService(name: "first", recorder: recorder)),
                    ("second", RecordingService(name: "second", recorder: recorder))],
            readiness: readiness, shutdownTimeout: .seconds(5), signals: [],
            logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() })

        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            #expect(await waitUntil { recorder.all.count == 2 })
            #expect(readiness.isReady)
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        #expect(!readiness.isReady)
        #expect(recorder.all == [
            "first started", "second started",
            "second asked to stop", "second stopped",
            "first asked to stop", "first stopped",
        ])
    }

    @Test("a part that fails stops the others gracefully and the group reports the failure")
    func failingPart() async throws {
        struct Broken: Error {}
        struct FailingService: Service {
            let recorder: Recorder
            func run() async throws {
                _ = await waitUntil { recorder.all.contains("steady started") }
                throw Broken()
            }
        }
        let recorder = Recorder()
        let group = ServiceRunner.serviceGroup(
            parts: [("steady", RecordingService(name: "steady", recorder: recorder)),
                    ("failing", FailingService(recorder: recorder))],
            readiness: Readiness(), shutdownTimeout: .seconds(5), signals: [],
            logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() })
        await #expect(throws: Broken.self) { try await group.run() }
        #expect(recorder.all == ["steady started", "steady asked to stop", "steady stopped"])
    }
}
