import Foundation
import Contracts

/// Why a training run starts. Every run records the triggers it covers, each with its reason.
public struct Trigger: Sendable, Hashable {
    /// What kind of condition fired.
    public enum Kind: String, Sendable, Hashable, CaseIterable {
        /// `retraining.everyLabels` new labeled examples arrived.
        case everyLabels = "every_labels"
        /// The labeled examples' event time crossed a multiple of `retraining.everyEventTime`.
        case eventTime = "event_time"
        /// The wall-clock schedule `retraining.everyWallClock` came round.
        case schedule
        /// A drift alert opened on `loop.monitoring`.
        case driftAlert = "drift_alert"
        /// A performance alert (measured or estimated drop) opened on `loop.monitoring`.
        case performanceAlert = "performance_alert"
        /// An operator asked (`POST /v1/retrain`).
        case manual
    }

    /// Unique per firing and stable across restarts for data-driven triggers
    /// (`event_time:<boundary>`, `every_labels:<count>`, `alert:<alertId>`), so a replayed firing is
    /// recognised rather than run twice.
    public var id: String
    public var kind: Kind
    /// Why it fired, for lineage, logs and the model card.
    public var reason: String
    /// Train only on examples with event time before this (the boundary for event-time triggers,
    /// just after the firing example for every-N triggers), so a replay at any speed, or a run
    /// resumed after a restart, trains on the same data.
    public var cutoffEventTimeMs: Int64?
    /// When it was requested (wall clock, milliseconds since the epoch).
    public var requestedAtMs: Int64
    /// Who asked: an API key's name for manual triggers, `system` otherwise.
    public var actor: String

    /// A trigger; see the properties for the meaning of each part.
    public init(id: String, kind: Kind, reason: String, cutoffEventTimeMs: Int64? = nil, requestedAtMs: Int64, actor: String = "system") {
        self.id = id
        self.kind = kind
        self.reason = reason
        self.cutoffEventTimeMs = cutoffEventTimeMs
        self.requestedAtMs = requestedAtMs
        self.actor = actor
    }

    /// The trigger as lineage JSON.
    public var json: JSONValue {
        .object([
            "id": .string(id), "kind": .string(kind.rawValue), "reason": .string(reason),
            "cutoffEventTimeMs": JSONValue(cutoffEventTimeMs), "requestedAtMs": .int(requestedAtMs),
            "actor": .string(actor),
        ])
    }
}

/// The triggers driven by the labeled stream itself: every N new labels and every T of event time.
///
/// Both depend only on the sequence of new examples, never on the clock or on batch sizes, so the
/// same input fires at the same points however fast it is replayed. The state is stored with the
/// examples, in the same transaction.
public struct StreamTriggers: Sendable, Equatable {
    /// What the triggers remember between examples.
    public struct State: Sendable, Equatable {
        /// New examples since the last every-N trigger.
        public var labelsSinceTrigger: Int64 = 0
        /// Unique examples stored so far (names every-N triggers).
        public var totalLabels: Int64 = 0
        /// The next multiple of the event-time period to cross (`nil` before the first example).
        public var nextBoundaryMs: Int64?

        public init(labelsSinceTrigger: Int64 = 0, totalLabels: Int64 = 0, nextBoundaryMs: Int64? = nil) {
            self.labelsSinceTrigger = labelsSinceTrigger
            self.totalLabels = totalLabels
            self.nextBoundaryMs = nextBoundaryMs
        }
    }

    /// `retraining.everyLabels` (`nil`: off).
    public var everyLabels: Int?
    /// `retraining.everyEventTime` in milliseconds (`nil`: off).
    public var everyEventTimeMs: Int64?

    /// The stream triggers `policy` asks for.
    public init(policy: RetrainingPolicy) {
        everyLabels = policy.everyLabels
        everyEventTimeMs = policy.everyEventTime.map { Int64($0.seconds * 1000) }.flatMap { $0 > 0 ? $0 : nil }
    }

    /// Stream triggers with explicit periods.
    public init(everyLabels: Int?, everyEventTimeMs: Int64?) {
        self.everyLabels = everyLabels
        self.everyEventTimeMs = everyEventTimeMs
    }

    /// Updates `state` for one new (not duplicate) example and returns the triggers it fires.
    ///
    /// Event time: periods are aligned to the epoch; the first example that reaches or passes the
    /// next boundary fires once, with the cutoff at the latest boundary at or before its event time
    /// (a gap spanning several periods fires once). Late examples never fire.
    public func observe(eventTimeMs: Int64, state: inout State, nowMs: Int64) -> [Trigger] {
        var fired: [Trigger] = []
        state.totalLabels += 1
        if let period = everyEventTimeMs {
            let floor = Self.floor(eventTimeMs, period)
            if let boundary = state.nextBoundaryMs {
                if eventTimeMs >= boundary {
                    fired.append(Trigger(
                        id: "event_time:\(floor)", kind: .eventTime,
                        reason: "event time reached \(eventTimeText(floor)) (every \(TimeSpan(seconds: Double(period) / 1000)))",
                        cutoffEventTimeMs: floor, requestedAtMs: nowMs))
                    state.nextBoundaryMs = floor + period
                }
            } else {
                state.nextBoundaryMs = floor + period
            }
        }
        if let every = everyLabels, every > 0 {
            state.labelsSinceTrigger += 1
            if state.labelsSinceTrigger >= Int64(every) {
                fired.append(Trigger(
                    id: "every_labels:\(state.totalLabels)", kind: .everyLabels,
                    reason: "\(state.labelsSinceTrigger) new labels (every \(every))",
                    cutoffEventTimeMs: eventTimeMs + 1, requestedAtMs: nowMs))
                state.labelsSinceTrigger = 0
            }
        }
        return fired
    }

    static func floor(_ value: Int64, _ period: Int64) -> Int64 {
        let quotient = value / period
        return (value % period < 0 ? quotient - 1 : quotient) * period
    }
}

/// The wall-clock schedule for live systems (`retraining.everyWallClock`): one `schedule` trigger
/// each time the interval elapses. Triggers that come round while a run is in progress coalesce
/// in the coordinator like any other.
public struct WallClockSchedule: Sendable, Equatable {
    /// The time between two triggers.
    public var interval: Duration

    /// The schedule `policy` asks for; `nil` when it has none.
    public init?(policy: RetrainingPolicy) {
        guard let every = policy.everyWallClock, every.seconds > 0 else { return nil }
        interval = .milliseconds(Int64((every.seconds * 1000).rounded()))
    }

    /// A schedule firing every `interval`.
    public init(interval: Duration) {
        self.interval = interval
    }

    /// Waits one interval with `sleep`, requests a `schedule` trigger stamped with `now`
    /// (milliseconds since the epoch), and repeats until the task is cancelled (`sleep` throws).
    /// The defaults are the real clocks; tests pass their own to step time.
    public func run(
        into coordinator: RetrainingCoordinator,
        sleep: @Sendable (Duration) async throws -> Void = { try await Task.sleep(for: $0) },
        now: @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970 * 1000) }
    ) async throws {
        let every = TimeSpan(seconds: Double(interval.components.seconds) + Double(interval.components.attoseconds) / 1e18)
        while true {
            try await sleep(interval)
            let time = now()
            try await coordinator.request(Trigger(
                id: "schedule:\(time)", kind: .schedule, reason: "wall-clock schedule (every \(every)) at \(eventTimeText(time))",
                requestedAtMs: time))
        }
    }
}

/// Coalescing of triggers into runs: at most one run at a time; triggers that arrive while a run
/// is in progress (or while one is already waiting) join the single waiting run.
public struct TriggerQueue: Sendable, Equatable {
    /// Whether a request started a new waiting run or joined one.
    public enum Disposition: String, Sendable, Equatable {
        /// No run was waiting or running: this trigger starts one.
        case scheduled
        /// Joined a waiting run (which will start when the current one ends).
        case coalesced
    }

    /// Triggers of the next run, in arrival order.
    public private(set) var waiting: [Trigger] = []
    /// Whether a run is in progress.
    public private(set) var isRunning = false

    public init() {}

    /// Adds `trigger` to the waiting run (a trigger with an id already waiting is ignored).
    @discardableResult
    public mutating func enqueue(_ trigger: Trigger) -> Disposition {
        let disposition: Disposition = isRunning || !waiting.isEmpty ? .coalesced : .scheduled
        if !waiting.contains(where: { $0.id == trigger.id }) { waiting.append(trigger) }
        return disposition
    }

    /// Starts the waiting run, if there is one and nothing runs: returns its triggers.
    public mutating func begin() -> [Trigger]? {
        guard !isRunning, !waiting.isEmpty else { return nil }
        isRunning = true
        defer { waiting = [] }
        return waiting
    }

    /// Ends the current run.
    public mutating func end() {
        isRunning = false
    }
}

/// Milliseconds since the epoch as RFC 3339 text (UTC).
func eventTimeText(_ milliseconds: Int64) -> String {
    let seconds = StreamTriggers.floor(milliseconds, 1000) / 1000
    let remainder = milliseconds - seconds * 1000
    return Timestamp(seconds: seconds, nanoseconds: Int32(remainder) * 1_000_000).text
}
