import Contracts

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// One event as the features see it: its event time, its CloudEvents type and its numeric fields.
public struct FeatureEvent: Sendable, Equatable {
    /// Event time, in seconds since the Unix epoch (kept to the millisecond).
    public var time: Double
    /// The CloudEvents `type`, e.g. `loop.observation.v1`.
    public var type: String
    /// Numeric field values by field name (booleans as 0/1). Fields no feature reads are ignored.
    public var values: [String: Double]

    public init(time: Double, type: String, values: [String: Double]) {
        self.time = time
        self.type = type
        self.values = values
    }
}

/// What ``EntityFeatureState/apply(_:)`` did with an event.
public enum ApplyOutcome: Sendable, Equatable {
    /// The event updated the state.
    case applied
    /// The event was older than the entity's latest event time minus the allowed lateness and
    /// was not applied; `behindBy` is how far behind the latest event time it was, in seconds.
    /// The caller counts it: late events are never dropped silently.
    case late(behindBy: Double)
}

/// The features of one entity: event-time window aggregates kept as buckets, plus the last
/// values and exponentially decayed sums. The feature-store and the scorer both evaluate this
/// same value, so they compute identical numbers from the same record.
///
/// See ``FeatureSchema`` for the bucket scheme and how exact windows are. Events may arrive out
/// of order: an event no further behind the latest event time than the allowed lateness is
/// applied to its own buckets, giving the same state as in-order application (up to
/// floating-point rounding of sums, which depends on addition order); an event further behind
/// is returned as ``ApplyOutcome/late(behindBy:)`` and leaves the state unchanged.
public struct EntityFeatureState: Sendable, Equatable {
    /// The compiled definitions this state follows.
    public let schema: FeatureSchema
    /// The entity (the CloudEvents `subject`).
    public let entityID: String

    /// Latest applied event time in ms, `noTime` before the first event.
    var latest: Int64
    var windows: [WindowBuckets]
    var points: [PointValue]
    var decays: [DecayValue]

    static let noTime = Int64.min

    /// An empty state for `entityID`.
    public init(entityID: String, schema: FeatureSchema) {
        self.schema = schema
        self.entityID = entityID
        self.latest = Self.noTime
        self.windows = schema.windows.map { _ in WindowBuckets() }
        self.points = Array(repeating: PointValue(), count: schema.points.count)
        self.decays = Array(repeating: DecayValue(), count: schema.decays.count)
    }

    /// The latest applied event time in seconds since the epoch (the record's as-of time), or
    /// `nil` before the first event.
    public var latestEventTime: Double? { latest == Self.noTime ? nil : Double(latest) / 1000 }

    public static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.schema.fingerprint == rhs.schema.fingerprint && lhs.entityID == rhs.entityID
            && lhs.latest == rhs.latest && lhs.windows == rhs.windows && lhs.points == rhs.points
            && lhs.decays == rhs.decays
    }

    // MARK: - Applying events

    /// Applies one event.
    /// - Returns: ``ApplyOutcome/applied``, or ``ApplyOutcome/late(behindBy:)`` when the event is
    ///   older than the latest event time minus the allowed lateness (the state is unchanged).
    /// - Throws: ``FeatureError/Code/invalidEvent`` when the time or a value the features read is
    ///   not finite (the state is unchanged).
    public mutating func apply(_ event: FeatureEvent) throws(FeatureError) -> ApplyOutcome {
        let time = try Self.millis(event.time)
        if let late = lateness(of: time) { return late }
        let fields = schema.fields
        return try withUnsafeTemporaryAllocation(of: Double.self, capacity: fields.count) {
            (values: UnsafeMutableBufferPointer<Double>) throws(FeatureError) -> ApplyOutcome in
            for index in fields.indices {
                if let value = event.values[fields[index]] {
                    guard value.isFinite else {
                        throw FeatureError(.invalidEvent, "field \(fields[index]) is \(value), not a finite number")
                    }
                    values[index] = value
                } else {
                    values[index] = .nan
                }
            }
            apply(time: time, types: schema.typeMask(of: event.type), values: UnsafeBufferPointer(values))
            return .applied
        }
    }

    /// Applies one event given as its field values in ``FeatureSchema/eventFields`` order, NaN
    /// where the event has no value: the same as ``apply(_:)`` for decoders that read the fields
    /// straight from bytes, without a dictionary per event.
    /// - Throws: ``FeatureError/Code/invalidEvent`` when `time` or a value is infinite, or when
    ///   `values` does not have one entry per event field (the state is unchanged).
    public mutating func apply(
        time seconds: Double, type: String, values: UnsafeBufferPointer<Double>
    ) throws(FeatureError) -> ApplyOutcome {
        let time = try Self.millis(seconds)
        if let late = lateness(of: time) { return late }
        let fields = schema.fields
        guard values.count == fields.count else {
            throw FeatureError(.invalidEvent, "\(values.count) field values for \(fields.count) event fields")
        }
        for index in values.indices where values[index].isInfinite {
            throw FeatureError(.invalidEvent, "field \(fields[index]) is \(values[index]), not a finite number")
        }
        apply(time: time, types: schema.typeMask(of: type), values: values)
        return .applied
    }

    /// ``ApplyOutcome/late(behindBy:)`` when an event at `time` (ms) is too late to apply.
    private func lateness(of time: Int64) -> ApplyOutcome? {
        guard latest != Self.noTime, time < latest - schema.latenessMillis else { return nil }
        return .late(behindBy: Double(latest - time) / 1000)
    }

    /// Applies a validated event; missing field values are NaN.
    private mutating func apply(time: Int64, types: UInt64, values: UnsafeBufferPointer<Double>) {
        if time > latest {
            latest = time
            evict()
        }
        for window in windows.indices {
            applyToWindow(window, time: time, types: types, values: values)
        }
        for point in points.indices {
            let slot = schema.points[point]
            guard slot.types & types != 0, time >= points[point].time else { continue }
            if let field = slot.field {
                let value = values[field]
                guard !value.isNaN else { continue }
                points[point] = PointValue(time: time, value: value)
            } else {
                points[point] = PointValue(time: time, value: 0)
            }
        }
        for decay in decays.indices {
            let layout = schema.decays[decay]
            guard layout.slot.types & types != 0, let field = layout.slot.field else { continue }
            let value = values[field]
            guard !value.isNaN else { continue }
            decays[decay].add(value, at: time, halfLifeMillis: layout.halfLifeMillis)
        }
    }

    private mutating func applyToWindow(_ window: Int, time: Int64, types: UInt64, values: UnsafeBufferPointer<Double>) {
        let layout = schema.windows[window]
        let bucket = ceilDiv(time, layout.bucketMillis)
        guard bucket > floorDiv(latest, layout.bucketMillis) - layout.span else { return }
        let slots = layout.slots
        let feeds = slots.contains { slot in
            slot.types & types != 0 && (slot.field.map { !values[$0].isNaN } ?? true)
        }
        guard feeds else { return }
        let position = windows[window].position(of: bucket, slotCount: slots.count)
        let base = position * slots.count
        for (offset, slot) in slots.enumerated() where slot.types & types != 0 {
            if let field = slot.field {
                let value = values[field]
                if !value.isNaN { windows[window].moments[base + offset].add(value) }
            } else {
                windows[window].moments[base + offset].count += 1
            }
        }
    }

    /// Drops the buckets no evaluation at or after the latest event time can count.
    private mutating func evict() {
        for window in windows.indices {
            let layout = schema.windows[window]
            let oldest = floorDiv(latest, layout.bucketMillis) - layout.span
            windows[window].dropBuckets(through: oldest, slotCount: layout.slots.count)
        }
    }

    // MARK: - Evaluation

    /// The feature values as of `time` (seconds since the epoch), in definition order; `nil`
    /// where a feature is undefined (mean, min, max of an empty window; stddev of fewer than
    /// two values; last, time_since_last or decayed mean before any event). Count and sum of an
    /// empty window are 0. `time_since_last` is in seconds; `decayed_mean` is the exponentially
    /// weighted mean with weight `2^(−age/halfLife)`, which does not change with `time` because
    /// every weight decays alike.
    /// - Throws: ``FeatureError/Code/asOfBeforeLatestEvent`` when `time` is before
    ///   ``latestEventTime`` (evaluate at `max(time, latestEventTime)` to serve a request that
    ///   is older than the record), ``FeatureError/Code/invalidEvent`` for a non-finite time.
    public func evaluate(asOf time: Double) throws(FeatureError) -> [Double?] {
        let now = try Self.millis(time)
        guard latest == Self.noTime || now >= latest else {
            throw FeatureError(
                .asOfBeforeLatestEvent,
                "asOf \(time) is before the latest event time \(Double(latest) / 1000) of entity \(entityID)")
        }
        var merged: [[Moments]?] = Array(repeating: nil, count: windows.count)
        var values: [Double?] = []
        values.reserveCapacity(schema.plans.count)
        for plan in schema.plans {
            switch plan {
            case .window(let window, let slot, let aggregation):
                if merged[window] == nil { merged[window] = windowMoments(window, asOf: now) }
                let moments = merged[window].unsafelyUnwrapped[slot]
                switch aggregation {
                case .count: values.append(moments.count)
                case .sum: values.append(moments.count > 0 ? moments.sum : 0)
                case .mean: values.append(moments.mean)
                case .min: values.append(moments.minimum)
                case .max: values.append(moments.maximum)
                case .stddev: values.append(moments.standardDeviation)
                }
            case .last(let point):
                values.append(points[point].time == Self.noTime ? nil : points[point].value)
            case .timeSinceLast(let point):
                values.append(points[point].time == Self.noTime ? nil : Double(now - points[point].time) / 1000)
            case .decayedMean(let decay):
                values.append(decays[decay].mean)
            }
        }
        return values
    }

    /// Every slot of `window` merged over the buckets that end after `now − W`.
    private func windowMoments(_ window: Int, asOf now: Int64) -> [Moments] {
        let layout = schema.windows[window]
        let oldest = floorDiv(now, layout.bucketMillis) - layout.span
        let buckets = windows[window]
        let slotCount = layout.slots.count
        var merged = Array(repeating: Moments.empty, count: slotCount)
        for (position, index) in buckets.indices.enumerated() where index > oldest {
            for slot in 0..<slotCount {
                merged[slot].merge(buckets.moments[position * slotCount + slot])
            }
        }
        return merged
    }

    // MARK: - Time

    /// Seconds to whole milliseconds, refusing what cannot be a time.
    static func millis(_ seconds: Double) throws(FeatureError) -> Int64 {
        guard seconds.isFinite, abs(seconds) < 1e13 else {
            throw FeatureError(.invalidEvent, "event time \(seconds) is not a finite time in range")
        }
        return Int64((seconds * 1000).rounded())
    }
}

// MARK: - Stored parts

/// The non-empty buckets of one window, oldest first: `indices[i]` is the bucket index, and
/// `moments[i * slotCount ..< (i + 1) * slotCount]` its statistics, one per slot.
struct WindowBuckets: Equatable {
    var indices: [Int64] = []
    var moments: [Moments] = []

    /// The position of bucket `index`, inserting an empty bucket if it is not there.
    mutating func position(of index: Int64, slotCount: Int) -> Int {
        if let last = indices.last {
            if last == index { return indices.count - 1 }
            if last < index {
                return append(index, slotCount: slotCount)
            }
        } else {
            return append(index, slotCount: slotCount)
        }
        var low = 0
        var high = indices.count
        while low < high {
            let middle = (low + high) / 2
            if indices[middle] < index { low = middle + 1 } else { high = middle }
        }
        if indices[low] == index { return low }
        indices.insert(index, at: low)
        moments.insert(contentsOf: repeatElement(Moments.empty, count: slotCount), at: low * slotCount)
        return low
    }

    private mutating func append(_ index: Int64, slotCount: Int) -> Int {
        indices.append(index)
        for _ in 0..<slotCount { moments.append(.empty) }
        return indices.count - 1
    }

    mutating func dropBuckets(through oldest: Int64, slotCount: Int) {
        guard let first = indices.first, first <= oldest else { return }
        let count = indices.firstIndex { $0 > oldest } ?? indices.count
        indices.removeFirst(count)
        moments.removeFirst(count * slotCount)
    }
}

/// The latest event (and its value, for `last`) of one point slot.
struct PointValue: Equatable {
    var time: Int64 = EntityFeatureState.noTime
    var value: Double = 0
}

/// An exponentially decayed sum and weight, both as of `reference` (the newest event's time), so
/// the stored numbers never overflow however long the entity lives.
struct DecayValue: Equatable {
    var reference: Int64 = EntityFeatureState.noTime
    var weightedSum: Double = 0
    var weight: Double = 0

    mutating func add(_ value: Double, at time: Int64, halfLifeMillis: Double) {
        if reference == EntityFeatureState.noTime {
            self = DecayValue(reference: time, weightedSum: value, weight: 1)
        } else if time >= reference {
            let factor = exp2(-Double(time - reference) / halfLifeMillis)
            weightedSum = weightedSum * factor + value
            weight = weight * factor + 1
            reference = time
        } else {
            let factor = exp2(-Double(reference - time) / halfLifeMillis)
            weightedSum += factor * value
            weight += factor
        }
    }

    var mean: Double? { weight > 0 ? weightedSum / weight : nil }
}

// MARK: - Integer division toward minus infinity

@inline(__always)
func floorDiv(_ value: Int64, _ divisor: Int64) -> Int64 {
    let quotient = value / divisor
    return (value % divisor != 0 && (value < 0) != (divisor < 0)) ? quotient - 1 : quotient
}

@inline(__always)
func ceilDiv(_ value: Int64, _ divisor: Int64) -> Int64 {
    -floorDiv(-value, divisor)
}
