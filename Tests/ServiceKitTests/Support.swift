import Foundation
import Synchronization
import TestSupport

/// Waits until `condition` holds, checking every 10 ms, for at most `timeout`.
func waitUntil(timeout: Duration = .seconds(30), _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return try await condition()
}

/// Lines or events collected from concurrent tasks.
final class Recorder: Sendable {
    private let items = Mutex<[String]>([])

    func record(_ item: String) {
        items.withLock { $0.append(item) }
    }

    var all: [String] {
        items.withLock { $0 }
    }
}
