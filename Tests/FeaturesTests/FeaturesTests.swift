import Contracts
import Features
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Helpers

/// A time that is a multiple of every bucket width used here (12 600 s = 7d/48 is a multiple of
/// 1800 s, 150 s, 75 s and 37.5 s), so `t0 + k·b` are bucket edges.
let t0: Double = 1_699_992_000

func minutes(_ value: Double) -> TimeSpan { TimeSpan(seconds: value * 60) }
func hours(_ value: Double) -> TimeSpan { TimeSpan(seconds: value * 3600) }
func days(_ value: Double) -> TimeSpan { TimeSpan(seconds: value * 86400) }

let observation = "loop.observation.v1"
let request = "loop.score_request.v1"

func event(_ offset: Double, _ values: [String: Double] = [:], type: String = observation) -> FeatureEvent {
    FeatureEvent(time: t0 + offset, type: type, values: values)
}

/// Every aggregation over field `x`: windows of 1h, decayed mean with a 10 minute half-life.
func everyAggregationSchema(lateness: TimeSpan = hours(1)) throws -> FeatureSchema {
    try FeatureSchema(features: [
        FeatureSpec(name: "count_1h", aggregation: .count, window: hours(1)),
        FeatureSpec(name: "sum_1h", field: "x", aggregation: .sum, window: hours(1)),
        FeatureSpec(name: "mean_1h", field: "x", aggregation: .mean, window: hours(1)),
        FeatureSpec(name: "min_1h", field: "x", aggregation: .min, window: hours(1)),
        FeatureSpec(name: "max_1h", field: "x", aggregation: .max, window: hours(1)),
        FeatureSpec(name: "std_1h", field: "x", aggregation: .stddev, window: hours(1)),
        FeatureSpec(name: "last_x", field: "x", aggregation: .last),
        FeatureSpec(name: "since_last", aggregation: .timeSinceLast),
        FeatureSpec(name: "ewm_x", field: "x", aggregation: .decayedMean, halfLife: minutes(10)),
    ], allowedLateness: lateness)
}

/// The features of examples/elec2/loop.yaml.
func elec2Schema() throws -> FeatureSchema {
    try FeatureSchema(features: [
        FeatureSpec(name: "nswprice_mean_2h", field: "nswprice", aggregation: .mean, window: hours(2)),
        FeatureSpec(name: "nswprice_mean_24h", field: "nswprice", aggregation: .mean, window: hours(24)),
        FeatureSpec(name: "nswprice_std_24h", field: "nswprice", aggregation: .stddev, window: hours(24)),
        FeatureSpec(name: "nswprice_max_24h", field: "nswprice", aggregation: .max, window: hours(24)),
        FeatureSpec(name: "nswprice_min_24h", field: "nswprice", aggregation: .min, window: hours(24)),
        FeatureSpec(name: "nswprice_ewm_6h", field: "nswprice", aggregation: .decayedMean, halfLife: hours(6)),
        FeatureSpec(name: "nswprice_last", field: "nswprice", aggregation: .last),
        FeatureSpec(name: "nswdemand_mean_24h", field: "nswdemand", aggregation: .mean, window: hours(24)),
        FeatureSpec(name: "vicprice_mean_24h", field: "vicprice", aggregation: .mean, window: hours(24)),
        FeatureSpec(name: "transfer_mean_7d", field: "transfer", aggregation: .mean, window: days(7)),
        FeatureSpec(name: "events_1h", aggregation: .count, window: hours(1)),
        FeatureSpec(name: "since_last", aggregation: .timeSinceLast),
    ], allowedLateness: hours(1))
}

/// A deterministic pseudo-random generator (SplitMix64), so failures reproduce.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

func isClose(_ lhs: Double?, _ rhs: Double?, tolerance: Double = 1e-9) -> Bool {
    switch (lhs, rhs) {
    case (nil, nil): return true
    case let (l?, r?): return abs(l - r) <= tolerance * max(1, abs(l), abs(r))
    default: return false
    }
}

func apply(_ events: [FeatureEvent], to state: inout EntityFeatureState) throws {
    for event in events {
        #expect(try state.apply(event) == .applied)
    }
}

// MARK: - Schema

@Suite struct SchemaTests {
    @Test func bucketWidthIsTheWindowOverFortyEight() throws {
        let schema = try elec2Schema()
        #expect(schema.bucketWidth(for: hours(1))?.seconds == 75)
        #expect(schema.bucketWidth(for: hours(2))?.seconds == 150)
        #expect(schema.bucketWidth(for: hours(24))?.seconds == 1800)
        #expect(schema.bucketWidth(for: days(7))?.seconds == 12600)
        #expect(schema.bucketWidth(for: minutes(5)) == nil)
        #expect(schema.featureNames.count == 12)
    }

    @Test func bucketWidthDividesAWindowThatFortyEightDoesNot() throws {
        let schema = try FeatureSchema(
            features: [FeatureSpec(name: "c", aggregation: .count, window: TimeSpan(seconds: 7))],
            allowedLateness: .init(seconds: 0))
        // 7000 ms: the largest divisor not above 48 is 40, so buckets of 175 ms.
        #expect(schema.bucketWidth(for: TimeSpan(seconds: 7))?.seconds == 0.175)
    }

    @Test(arguments: [
        FeatureSpec(name: "m", field: "x", aggregation: .mean),
        FeatureSpec(name: "m", aggregation: .mean, window: hours(1)),
        FeatureSpec(name: "m", field: "x", aggregation: .mean, window: TimeSpan(seconds: 0)),
        FeatureSpec(name: "m", field: "x", aggregation: .mean, window: TimeSpan(seconds: 0.0005)),
        FeatureSpec(name: "m", field: "x", aggregation: .mean, window: TimeSpan(seconds: .infinity)),
        FeatureSpec(name: "m", field: "x", aggregation: .mean, window: hours(1), halfLife: hours(1)),
        FeatureSpec(name: "d", field: "x", aggregation: .decayedMean),
        FeatureSpec(name: "d", field: "x", aggregation: .decayedMean, window: hours(1), halfLife: hours(1)),
        FeatureSpec(name: "l", aggregation: .last),
        FeatureSpec(name: "l", field: "x", aggregation: .last, window: hours(1)),
        FeatureSpec(name: "t", aggregation: .timeSinceLast, window: hours(1)),
        FeatureSpec(name: "", aggregation: .count, window: hours(1)),
    ])
    func invalidDefinitionIsRefused(spec: FeatureSpec) {
        let error = #expect(throws: FeatureError.self) {
            try FeatureSchema(features: [spec], allowedLateness: hours(1))
        }
        #expect(error?.code == .invalidDefinition)
    }

    @Test func duplicateNamesAndBadLatenessAreRefused() {
        let count = FeatureSpec(name: "c", aggregation: .count, window: hours(1))
        #expect(throws: FeatureError.self) { try FeatureSchema(features: [count, count], allowedLateness: hours(1)) }
        #expect(throws: FeatureError.self) { try FeatureSchema(features: [count], allowedLateness: TimeSpan(seconds: -1)) }
        #expect(throws: FeatureError.self) {
            try FeatureSchema(features: [count], allowedLateness: hours(1), bucketsPerWindow: 0)
        }
    }

    @Test func fingerprintFollowsTheLayoutNotTheNames() throws {
        let a = try FeatureSchema(
            features: [FeatureSpec(name: "a", field: "x", aggregation: .mean, window: hours(1))],
            allowedLateness: hours(1))
        let renamed = try FeatureSchema(
            features: [FeatureSpec(name: "b", field: "x", aggregation: .sum, window: hours(1))],
            allowedLateness: hours(1))
        let otherWindow = try FeatureSchema(
            features: [FeatureSpec(name: "a", field: "x", aggregation: .mean, window: hours(2))],
            allowedLateness: hours(1))
        #expect(a.fingerprint == renamed.fingerprint)
        #expect(a.fingerprint != otherWindow.fingerprint)
    }
}

// MARK: - Window math

@Suite struct WindowTests {
    @Test func everyAggregationMatchesHandComputedValues() throws {
        var state = EntityFeatureState(entityID: "e", schema: try everyAggregationSchema())
        try apply([event(0, ["x": 2]), event(600, ["x": 4]), event(1200, ["x": 9])], to: &state)
        let values = try state.evaluate(asOf: t0 + 1800)
        // Sample variance: ((2−5)² + (4−5)² + (9−5)²) / 2 = 13.
        // Decayed mean at the last event: weights 2^-2, 2^-1, 1 for ages 20, 10, 0 minutes.
        let decayed = (0.25 * 2 + 0.5 * 4 + 9) / 1.75
        let expected: [Double?] = [3, 15, 5, 2, 9, 13.0.squareRoot(), 9, 600, decayed]
        for (value, want) in zip(values, expected) {
            #expect(isClose(value, want, tolerance: 1e-12))
        }
        #expect(state.latestEventTime == t0 + 1200)
    }

    @Test func emptyStateHasCountZeroAndUndefinedRest() throws {
        let state = EntityFeatureState(entityID: "e", schema: try everyAggregationSchema())
        let values = try state.evaluate(asOf: t0)
        #expect(values == [0, 0, nil, nil, nil, nil, nil, nil, nil])
        #expect(state.latestEventTime == nil)
    }

    @Test func stddevOfOneValueIsUndefined() throws {
        var state = EntityFeatureState(entityID: "e", schema: try everyAggregationSchema())
        try apply([event(0, ["x": 2])], to: &state)
        let values = try state.evaluate(asOf: t0)
        #expect(values[5] == nil)
        #expect(values[2] == 2)
    }

    @Test func windowsEmptyAsTimeMovesOn() throws {
        var state = EntityFeatureState(entityID: "e", schema: try everyAggregationSchema())
        try apply([event(0, ["x": 2]), event(600, ["x": 4]), event(1200, ["x": 9])], to: &state)
        let before = try state.evaluate(asOf: t0 + 1200)

        // At t0 + 1h the event at t0 is exactly one window old: out.
        let hour = try state.evaluate(asOf: t0 + 3600)
        #expect(Array(hour[0...4]) == [2, 13, 6.5, 4, 9])
        #expect(isClose(hour[5], (12.5).squareRoot()))

        let later = try state.evaluate(asOf: t0 + 4200)
        #expect(Array(later[0...5]) == [1, 9, 9, 9, 9, nil])

        let empty = try state.evaluate(asOf: t0 + 4800)
        #expect(Array(empty[0...5]) == [0, 0, nil, nil, nil, nil])
        // Unwindowed features: last stays, time since last grows, the decayed mean is unchanged.
        #expect(empty[6] == 9)
        #expect(empty[7] == 3600)
        #expect(empty[8] == before[8])
    }

    @Test func eventExactlyOneWindowOldIsOutAndEventAtTheQueryTimeIsIn() throws {
        let schema = try FeatureSchema(
            features: [FeatureSpec(name: "count_1h", aggregation: .count, window: hours(1))],
            allowedLateness: hours(1))
        var state = EntityFeatureState(entityID: "e", schema: schema)
        try apply([event(0)], to: &state)
        #expect(try state.evaluate(asOf: t0) == [1])
        #expect(try state.evaluate(asOf: t0 + 3599.999) == [1])
        #expect(try state.evaluate(asOf: t0 + 3600) == [0])
        try apply([event(3600)], to: &state)
        #expect(try state.evaluate(asOf: t0 + 3600) == [1])
    }

    @Test func bucketStraddlingTheWindowStartCountsWhole() throws {
        // 1h window, 75 s buckets. An event 1 s after an edge sits in the bucket (t0, t0 + 75].
        let schema = try FeatureSchema(
            features: [FeatureSpec(name: "count_1h", aggregation: .count, window: hours(1))],
            allowedLateness: hours(1))
        var state = EntityFeatureState(entityID: "e", schema: schema)
        try apply([event(1)], to: &state)
        // Exactly one window old, but its bucket ends after t − W: still counted (never shorter
        // than W, at most one bucket longer) ...
        #expect(try state.evaluate(asOf: t0 + 1 + 3600) == [1])
        #expect(try state.evaluate(asOf: t0 + 75 + 3599.999) == [1])
        // ... until the query reaches the next edge past its bucket's end plus the window.
        #expect(try state.evaluate(asOf: t0 + 75 + 3600) == [0])
    }

    @Test func fieldsMissingFromAnEventAreSkippedButTheEventIsCounted() throws {
        var state = EntityFeatureState(entityID: "e", schema: try everyAggregationSchema())
        try apply([event(0, ["x": 3]), event(60, ["other": 100]), event(120, [:])], to: &state)
        let values = try state.evaluate(asOf: t0 + 120)
        #expect(Array(values[0...4]) == [3, 3, 3, 3, 3])
        #expect(values[6] == 3)  // last x
        #expect(values[7] == 0)  // since the last event of any kind
    }

    @Test func eventTypesSelectWhichEventsFeedAFeature() throws {
        let schema = try FeatureSchema(features: [
            FeatureSpec(name: "all", aggregation: .count, window: hours(1)),
            FeatureSpec(name: "requests", aggregation: .count, window: hours(1), eventTypes: [request]),
            FeatureSpec(name: "observed_mean", field: "x", aggregation: .mean, window: hours(1), eventTypes: [observation]),
            FeatureSpec(name: "since_request", aggregation: .timeSinceLast, eventTypes: [request]),
        ], allowedLateness: hours(1))
        var state = EntityFeatureState(entityID: "e", schema: schema)
        try apply([
            event(0, ["x": 1], type: observation),
            event(10, ["x": 100], type: request),
            event(20, ["x": 3], type: observation),
            event(30, ["x": 1000], type: "some.other.type"),
        ], to: &state)
        #expect(try state.evaluate(asOf: t0 + 40) == [4, 1, 2, 30])
    }

    @Test func evaluatingBeforeTheLatestEventIsAnError() throws {
        var state = EntityFeatureState(entityID: "e", schema: try everyAggregationSchema())
        try apply([event(100, ["x": 1])], to: &state)
        let error = #expect(throws: FeatureError.self) { try state.evaluate(asOf: t0 + 99) }
        #expect(error?.code == .asOfBeforeLatestEvent)
    }

    @Test func nonFiniteInputIsRejectedWithoutChangingTheState() throws {
        var state = EntityFeatureState(entityID: "e", schema: try everyAggregationSchema())
        try apply([event(0, ["x": 1])], to: &state)
        let before = state
        for bad in [event(10, ["x": .nan]), event(10, ["x": .infinity]), FeatureEvent(time: .nan, type: observation, values: [:])] {
            let error = #expect(throws: FeatureError.self) { try state.apply(bad) }
            #expect(error?.code == .invalidEvent)
        }
        #expect(state == before)
    }
}

// MARK: - Events as value rows

@Suite struct ValueRowTests {
    @Test("an event given as values in eventFields order changes the state exactly as the same event by name")
    func rowsMatchNamedValues() throws {
        let schema = try FeatureSchema(features: [
            FeatureSpec(name: "mean_x", field: "x", aggregation: .mean, window: hours(1)),
            FeatureSpec(name: "last_y", field: "y", aggregation: .last, eventTypes: [observation]),
            FeatureSpec(name: "count", aggregation: .count, window: hours(1)),
        ], allowedLateness: minutes(30))
        #expect(schema.eventFields == ["x", "y"])
        let events = [event(0, ["x": 1, "y": 5]), event(60, ["y": 7]), event(30, ["x": 3], type: "other.v1"),
                      event(7200, ["x": 2]), event(10, ["x": 9])]
        var byName = EntityFeatureState(entityID: "e", schema: schema)
        var byRow = byName
        for event in events {
            let expected = try byName.apply(event)
            let row = schema.eventFields.map { event.values[$0] ?? .nan }
            let outcome = try row.withUnsafeBufferPointer { try byRow.apply(time: event.time, type: event.type, values: $0) }
            #expect(outcome == expected)
            #expect(byRow == byName)
        }
        let before = byRow
        for bad in [[Double.infinity, 1], [1]] {
            let error = #expect(throws: FeatureError.self) {
                try bad.withUnsafeBufferPointer { try byRow.apply(time: t0 + 7300, type: observation, values: $0) }
            }
            #expect(error?.code == .invalidEvent)
        }
        #expect(byRow == before)
    }
}

// MARK: - Lateness and order

@Suite struct LatenessTests {
    @Test func eventsWithinTheAllowedLatenessAreAppliedAndLaterOnesReturned() throws {
        var state = EntityFeatureState(entityID: "e", schema: try everyAggregationSchema(lateness: minutes(30)))
        try apply([event(7200, ["x": 10])], to: &state)
        // Exactly the allowed lateness behind: applied.
        #expect(try state.apply(event(5400, ["x": 20])) == .applied)
        let before = state
        // One millisecond more: late, returned with how far behind it was, state untouched.
        #expect(try state.apply(event(5399.999, ["x": 30])) == .late(behindBy: 1800.001))
        #expect(try state.apply(event(0, ["x": 40])) == .late(behindBy: 7200))
        #expect(state == before)
        let values = try state.evaluate(asOf: t0 + 7200)
        #expect(Array(values[0...4]) == [2, 30, 15, 10, 20])
        #expect(values[6] == 10)  // last stays the newest event's value
        #expect(values[7] == 0)
    }

    @Test func lateEventOlderThanASmallWindowStillFeedsUnwindowedFeatures() throws {
        let schema = try FeatureSchema(features: [
            FeatureSpec(name: "count_30m", aggregation: .count, window: minutes(30)),
            FeatureSpec(name: "ewm", field: "x", aggregation: .decayedMean, halfLife: minutes(30)),
        ], allowedLateness: hours(2))
        var state = EntityFeatureState(entityID: "e", schema: schema)
        try apply([event(7200, ["x": 10]), event(3600, ["x": 2])], to: &state)
        let values = try state.evaluate(asOf: t0 + 7200)
        #expect(values[0] == 1)
        // Weights 1 (age 0) and 2^-2 (age 60 min).
        #expect(isClose(values[1], (10 + 0.25 * 2) / 1.25, tolerance: 1e-12))
    }

    @Test func outOfOrderApplicationMatchesInOrder() throws {
        let schema = try everyAggregationSchema(lateness: hours(3))
        var generator = SplitMix(state: 42)
        var events: [FeatureEvent] = []
        for _ in 0..<400 {
            let offset = Double(Int.random(in: 0..<10_800_000, using: &generator)) / 1000
            let value = Double(Int.random(in: -50...50, using: &generator)) / 4
            events.append(event(offset, ["x": value]))
        }
        let sorted = events.sorted { $0.time < $1.time }
        var inOrder = EntityFeatureState(entityID: "e", schema: schema)
        try apply(sorted, to: &inOrder)
        var shuffled = EntityFeatureState(entityID: "e", schema: schema)
        try apply(events.shuffled(using: &generator), to: &shuffled)

        for offset in stride(from: 10_800.0, through: 16_000, by: 350) {
            let expected = try inOrder.evaluate(asOf: t0 + offset)
            let actual = try shuffled.evaluate(asOf: t0 + offset)
            #expect(expected.count == actual.count)
            for (want, got) in zip(expected, actual) {
                #expect(isClose(want, got, tolerance: 1e-9), "at t0 + \(offset)")
            }
        }
        // Count, min, max and sums of quarter-integers are exact in any order.
        let exact = try inOrder.evaluate(asOf: t0 + 10_800)
        let exactShuffled = try shuffled.evaluate(asOf: t0 + 10_800)
        #expect(Array(exact[0...1]) == Array(exactShuffled[0...1]))
        #expect(Array(exact[3...4]) == Array(exactShuffled[3...4]))
    }

    @Test func windowedValuesMatchABruteForceOverRawEventsAtBucketEdges() throws {
        let schema = try everyAggregationSchema(lateness: hours(3))
        var generator = SplitMix(state: 7)
        var events: [FeatureEvent] = []
        for _ in 0..<300 {
            let offset = Double(Int.random(in: 0..<10_800_000, using: &generator)) / 1000
            events.append(event(offset, ["x": Double.random(in: -3...3, using: &generator)]))
        }
        var state = EntityFeatureState(entityID: "e", schema: schema)
        try apply(events, to: &state)
        let latest = events.map(\.time).max()!
        // Bucket edges (multiples of 75 s) at or after the latest event.
        let firstEdge = (latest / 75).rounded(.up) * 75
        for step in 0..<60 {
            let now = firstEdge + Double(step) * 75
            let inWindow = events.filter { $0.time > now - 3600 && $0.time <= now }.map { $0.values["x"]! }
            let values = try state.evaluate(asOf: now)
            #expect(values[0] == Double(inWindow.count))
            #expect(isClose(values[1], inWindow.reduce(0, +)))
            #expect(values[3] == inWindow.min())
            #expect(values[4] == inWindow.max())
            if inWindow.count >= 2 {
                let mean = inWindow.reduce(0, +) / Double(inWindow.count)
                let variance = inWindow.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(inWindow.count - 1)
                #expect(isClose(values[5], variance.squareRoot()))
            }
        }
    }

    @Test func decayedMeanMatchesTheClosedForm() throws {
        let schema = try everyAggregationSchema(lateness: hours(10))
        var generator = SplitMix(state: 99)
        var events: [FeatureEvent] = []
        for _ in 0..<500 {
            let offset = Double.random(in: 0..<36_000, using: &generator).rounded()
            events.append(event(offset, ["x": Double.random(in: 0...100, using: &generator)]))
        }
        var state = EntityFeatureState(entityID: "e", schema: schema)
        try apply(events, to: &state)
        let now = events.map(\.time).max()! + 1234
        var numerator = 0.0
        var denominator = 0.0
        for event in events {
            let weight = exp2(-(now - event.time) / 600)
            numerator += weight * event.values["x"]!
            denominator += weight
        }
        let values = try state.evaluate(asOf: now)
        #expect(isClose(values[8], numerator / denominator, tolerance: 1e-12))
    }
}

// MARK: - Encoding

@Suite struct EncodingTests {
    /// Half-hourly elec2-like observations with some jitter (so a few arrive out of order);
    /// every third lacks `vicprice`.
    func elec2Events(count: Int) -> [FeatureEvent] {
        var generator = SplitMix(state: 3)
        return (0..<count).map { index in
            var values: [String: Double] = [
                "nswprice": Double.random(in: 0...1, using: &generator),
                "nswdemand": Double.random(in: 0...1, using: &generator),
                "transfer": Double.random(in: 0...1, using: &generator),
            ]
            if index % 3 != 0 { values["vicprice"] = Double.random(in: 0...1, using: &generator) }
            let jitter = Double(Int.random(in: -600...600, using: &generator))
            return event(Double(index) * 1800 + jitter, values)
        }
    }

    func populatedState(events count: Int = 500) throws -> EntityFeatureState {
        var state = EntityFeatureState(entityID: "region-NSW ✓", schema: try elec2Schema())
        try apply(elec2Events(count: count), to: &state)
        return state
    }

    @Test func roundTripsInEveryVersion() throws {
        let state = try populatedState()
        for version in FeatureRecordVersion.allCases {
            let bytes = state.encoded(version: version)
            let decoded = try EntityFeatureState(decoding: bytes, schema: state.schema)
            #expect(decoded == state)
            #expect(decoded.entityID == "region-NSW ✓")
            #expect(try decoded.evaluate(asOf: state.latestEventTime! + 60) == state.evaluate(asOf: state.latestEventTime! + 60))
        }
    }

    @Test func roundTripsAnEmptyAndADenseState() throws {
        let schema = try everyAggregationSchema()
        let empty = EntityFeatureState(entityID: "", schema: schema)
        #expect(try EntityFeatureState(decoding: empty.encoded(), schema: schema) == empty)

        var dense = EntityFeatureState(entityID: "dense", schema: schema)
        for index in 0..<5000 { _ = try dense.apply(event(Double(index) * 0.7, ["x": Double(index % 17)])) }
        #expect(try EntityFeatureState(decoding: dense.encoded(), schema: schema) == dense)
        #expect(try EntityFeatureState(decoding: dense.encoded(version: .v1), schema: schema) == dense)
    }

    @Test func encodingThroughAReusedScratchGivesTheSameBytes() throws {
        let large = try populatedState(events: 500)
        let small = try populatedState(events: 3)
        var scratch: [UInt8] = []
        for version in FeatureRecordVersion.allCases {
            // The small state after the large one: what the large one left in the scratch memory must not show.
            for state in [small, large, small] {
                let bytes = state.encoded(version: version, scratch: &scratch)
                #expect(bytes == state.encoded(version: version))
                #expect(try EntityFeatureState(decoding: bytes, schema: state.schema) == state)
            }
        }
        #expect(scratch.count >= large.encoded(version: .v1).count)
    }

    @Test func previousVersionIsDecodedFromHandWrittenBytes() throws {
        let schema = try FeatureSchema(
            features: [FeatureSpec(name: "sum_1h", field: "x", aggregation: .sum, window: hours(1))],
            allowedLateness: hours(1))
        var expected = EntityFeatureState(entityID: "e", schema: schema)
        #expect(try expected.apply(event(0, ["x": 1.5])) == .applied)

        func littleEndian<T: FixedWidthInteger>(_ value: T) -> [UInt8] { withUnsafeBytes(of: value.littleEndian) { Array($0) } }
        func varint(_ value: UInt64) -> [UInt8] {
            var value = value, bytes: [UInt8] = []
            while value >= 0x80 { bytes.append(UInt8(value & 0x7F) | 0x80); value >>= 7 }
            return bytes + [UInt8(value)]
        }
        let latest = Int64(t0 * 1000)
        let header: [UInt8] = [0x46, 0x53]
        let body = littleEndian(schema.fingerprint) + [1, UInt8(ascii: "e"), 1] + varint(UInt64(latest) << 1)
            + [1, 0, 1]  // one bucket, the newest, count 1
        let v1 = header + [1] + body + [1.5, 0, 1.5, 1.5].flatMap { littleEndian($0.bitPattern) }
        let v2 = header + [2] + body + littleEndian((1.5).bitPattern)

        #expect(try EntityFeatureState(decoding: v1, schema: schema) == expected)
        #expect(try EntityFeatureState(decoding: v2, schema: schema) == expected)
        #expect(expected.encoded(version: .v1) == v1)
        #expect(expected.encoded() == v2)
    }

    @Test func garbageIsATypedError() throws {
        let state = try populatedState(events: 100)
        let bytes = state.encoded()
        func code(_ bytes: [UInt8], _ schema: FeatureSchema? = nil) -> FeatureError.Code? {
            do {
                _ = try EntityFeatureState(decoding: bytes, schema: schema ?? state.schema)
                return nil
            } catch {
                return error.code
            }
        }
        #expect(code([]) == .truncated)
        #expect(code([0x46]) == .truncated)
        #expect(code(Array("{\"json\": true}".utf8)) == .badMagic)
        var future = bytes
        future[2] = 3
        #expect(code(future) == .unsupportedSchemaVersion)
        #expect(code(bytes, try everyAggregationSchema()) == .layoutMismatch)
        #expect(code(bytes + [0]) == .corrupt)
        for length in 0..<bytes.count {
            let error = code(Array(bytes.prefix(length)))
            #expect(error == .truncated || error == .corrupt, "prefix of \(length) bytes")
        }
    }

    @Test func randomCorruptionNeverCrashesTheDecoder() throws {
        let state = try populatedState(events: 100)
        let bytes = state.encoded()
        var generator = SplitMix(state: 11)
        var rejected = 0
        for _ in 0..<2000 {
            var mutated = bytes
            for _ in 0..<Int.random(in: 1...4, using: &generator) {
                // Past the magic, version and fingerprint, so the body decoder is exercised.
                mutated[Int.random(in: 7..<mutated.count, using: &generator)] = UInt8.random(in: 0...255, using: &generator)
            }
            do {
                _ = try EntityFeatureState(decoding: mutated, schema: state.schema)
            } catch {
                rejected += 1
            }
        }
        #expect(rejected > 0)
    }

    @Test func encodedStateIsAtMostTwiceTheRawFeatureData() throws {
        let events = elec2Events(count: 24 * 2 * 14)
        var state = EntityFeatureState(entityID: "region-NSW ✓", schema: try elec2Schema())
        try apply(events, to: &state)
        // Raw feature data: for every event still inside the longest window (7 days), its time
        // and each of its field values, eight bytes apiece.
        let latest = state.latestEventTime!
        let rawBytes = events.filter { $0.time > latest - 7 * 86400 }.map { 8 * (1 + $0.values.count) }.reduce(0, +)
        let encoded = state.encoded()
        #expect(encoded.count <= 2 * rawBytes, "encoded \(encoded.count) bytes for \(rawBytes) raw bytes")
        #expect(encoded.count < state.encoded(version: .v1).count)
    }
}
