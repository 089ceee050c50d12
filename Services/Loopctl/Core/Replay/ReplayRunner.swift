import Contracts
import Foundation

/// Sends a ``ReplayPlan``'s events to a sink in order: as fast as the sink accepts them, or paced so
/// that event time passes `speed` times faster than wall time. Shows progress and returns a summary.
public struct ReplayRunner: Sendable {
    /// Event seconds per wall second (`nil`: as fast as possible).
    public var speed: Double?
    /// Where progress goes.
    public var progress: ProgressDisplay

    public init(speed: Double? = nil, progress: ProgressDisplay) {
        self.speed = speed
        self.progress = progress
    }

    /// What a replay did.
    public struct Summary: Sendable, Hashable {
        public var destination: String
        public var observations = 0
        public var scoreRequests = 0
        public var outcomes = 0
        /// Score requests without a label (no outcome sent).
        public var unlabeled = 0
        public var firstEventTime: Timestamp?
        public var lastEventTime: Timestamp?
        public var wallSeconds: Double = 0

        public var events: Int { observations + scoreRequests + outcomes }
        public var eventsPerSecond: Double { wallSeconds > 0 ? Double(events) / wallSeconds : 0 }

        /// The summary as the lines `loopctl replay` prints.
        public var text: String {
            let span = firstEventTime.flatMap { first in lastEventTime.map { "\(first.text) … \($0.text)" } } ?? "-"
            return """
                replayed \(Format.count(events)) events to \(destination) in \(Format.duration(wallSeconds)) (\(Format.count(Int(eventsPerSecond.rounded()))) events/s)
                  score requests  \(Format.count(scoreRequests))
                  observations    \(Format.count(observations))
                  outcomes        \(Format.count(outcomes))\(unlabeled > 0 ? " (\(Format.count(unlabeled)) requests without a label)" : "")
                  event time      \(span)
                """
        }
    }

    /// Sends every event of `plan` to `sink`.
    public func run(_ plan: ReplayPlan, to sink: some EventSink) async throws(LoopctlError) -> Summary {
        var summary = Summary(destination: sink.destination)
        summary.unlabeled = plan.unlabeledCount
        let clock = ContinuousClock()
        let started = clock.now
        var lastShown = started - progress.interval
        var events = plan.events()
        var pending = events.next()
        let firstTime = pending?.time
        var batch: [CloudEvent] = []
        batch.reserveCapacity(sink.batchSize)

        func due(_ event: CloudEvent) -> ContinuousClock.Instant {
            guard let speed, let firstTime, let time = event.time else { return started }
            let eventSeconds = Double(time.seconds - firstTime.seconds) + Double(time.nanoseconds - firstTime.nanoseconds) / 1e9
            return started + .seconds(eventSeconds / speed)
        }

        while pending != nil || !batch.isEmpty {
            let now = clock.now
            while let event = pending, batch.count < sink.batchSize, due(event) <= now {
                batch.append(event)
                pending = events.next()
            }
            if batch.isEmpty, let event = pending {
                try? await Task.sleep(until: min(due(event), now + .milliseconds(250)), clock: clock)
            } else {
                try await sink.send(batch)
                for event in batch { count(event, into: &summary) }
                batch.removeAll(keepingCapacity: true)
            }
            if clock.now - lastShown >= progress.interval {
                lastShown = clock.now
                progress.show(progressLine(summary, total: plan.eventCount, elapsed: clock.now - started, plan: plan))
            }
            if Task.isCancelled { break }
        }
        summary.wallSeconds = Self.seconds(clock.now - started)
        progress.show(progressLine(summary, total: plan.eventCount, elapsed: clock.now - started, plan: plan))
        progress.finish()
        return summary
    }

    private func count(_ event: CloudEvent, into summary: inout Summary) {
        switch EventType(event.type)?.kind {
        case .observation: summary.observations += 1
        case .scoreRequest: summary.scoreRequests += 1
        case .outcome: summary.outcomes += 1
        default: break
        }
        if let time = event.time {
            if summary.firstEventTime.map({ time < $0 }) ?? true { summary.firstEventTime = time }
            if summary.lastEventTime.map({ time > $0 }) ?? true { summary.lastEventTime = time }
        }
    }

    /// `replay  41.2%  56,010/135,936 events  9,800/s  event time 1997-08-01T10:30:00Z  ETA 8s`
    func progressLine(_ summary: Summary, total: Int, elapsed: Duration, plan: ReplayPlan) -> String {
        let seconds = Self.seconds(elapsed)
        let rate = seconds > 0 ? Double(summary.events) / seconds : 0
        let share = total > 0 ? Double(summary.events) / Double(total) * 100 : 100
        var eta = rate > 0 ? Double(total - summary.events) / rate : .infinity
        if let speed, let last = summary.lastEventTime, let end = plan.lastTime {
            eta = max(eta.isFinite ? eta : 0, Double(end.seconds - last.seconds) / speed)
        }
        let etaText = summary.events >= total ? "done" : (eta.isFinite ? "ETA \(Format.duration(eta))" : "ETA -")
        return "replay \(String(format: "%5.1f%%", share))  \(Format.count(summary.events))/\(Format.count(total)) events  "
            + "\(Format.count(Int(rate.rounded())))/s  event time \(summary.lastEventTime?.text ?? "-")  \(etaText)"
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}
