import Synchronization

/// Whether a service is ready for traffic, answered by `/readyz`.
///
/// A service names the conditions it needs (`kafka.assigned`, `state.restored`) with ``require(_:)``
/// when it is built and flips each with ``satisfy(_:)`` once met. It is ready when at least one
/// condition is registered and every one is met, so a service that registers nothing is never
/// reported ready by mistake. Once graceful shutdown begins it is not ready again, so load
/// balancers drain it while in-flight work finishes.
public final class Readiness: Sendable {
    private struct State {
        var conditions: [(name: String, isMet: Bool)] = []
        var isShuttingDown = false
    }

    private let state = Mutex(State())

    public init() {}

    /// Registers `condition` as not yet met (no change if it is already registered).
    public func require(_ condition: String) {
        state.withLock { state in
            if !state.conditions.contains(where: { $0.name == condition }) {
                state.conditions.append((condition, false))
            }
        }
    }

    /// Marks `condition` as met, registering it if needed.
    public func satisfy(_ condition: String) {
        set(condition, isMet: true)
    }

    /// Marks `condition` as no longer met (e.g. partitions revoked), registering it if needed.
    public func unsatisfy(_ condition: String) {
        set(condition, isMet: false)
    }

    /// Reports not ready from now on: graceful shutdown has begun.
    public func beginShutdown() {
        state.withLock { $0.isShuttingDown = true }
    }

    /// Every condition is met and shutdown has not begun.
    public var isReady: Bool {
        state.withLock { !$0.isShuttingDown && !$0.conditions.isEmpty && $0.conditions.allSatisfy(\.isMet) }
    }

    /// Why the service is not ready, or `nil` when it is.
    public var reasonNotReady: String? {
        state.withLock { state in
            if state.isShuttingDown { return "shutting down" }
            if state.conditions.isEmpty { return "no readiness conditions registered yet" }
            let pending = state.conditions.filter { !$0.isMet }.map(\.name)
            return pending.isEmpty ? nil : "waiting for " + pending.joined(separator: ", ")
        }
    }

    private func set(_ condition: String, isMet: Bool) {
        state.withLock { state in
            if let index = state.conditions.firstIndex(where: { $0.name == condition }) {
                state.conditions[index].isMet = isMet
            } else {
                state.conditions.append((condition, isMet))
            }
        }
    }
}
