import Contracts

/// One feature to compute: the same content as `FeatureDefinition` in `loop.yaml`, as a value
/// this module can also build in code.
public struct FeatureSpec: Sendable, Hashable {
    public typealias Aggregation = FeatureDefinition.Aggregation

    /// The feature's name as models and APIs see it.
    public var name: String
    /// The event field aggregated (required except for `count` and `time_since_last`).
    public var field: String?
    public var aggregation: Aggregation
    /// The event-time window (required for count, sum, mean, min, max, stddev; none otherwise).
    public var window: TimeSpan?
    /// The half-life (required for `decayed_mean`; none otherwise).
    public var halfLife: TimeSpan?
    /// The event types that feed the feature; empty means every type.
    public var eventTypes: [String]

    /// Creates a feature spec; ``FeatureSchema`` validates it.
    public init(
        name: String, field: String? = nil, aggregation: Aggregation, window: TimeSpan? = nil,
        halfLife: TimeSpan? = nil, eventTypes: [String] = []
    ) {
        self.name = name
        self.field = field
        self.aggregation = aggregation
        self.window = window
        self.halfLife = halfLife
        self.eventTypes = eventTypes
    }

    /// The spec of a definition loaded from `loop.yaml`.
    public init(_ definition: FeatureDefinition) {
        self.init(
            name: definition.name, field: definition.field, aggregation: definition.aggregation,
            window: definition.window, halfLife: definition.halfLife, eventTypes: definition.eventTypes)
    }
}

/// The compiled, validated form of a deployment's feature definitions: which windows exist, how
/// wide their buckets are, which statistics each bucket keeps, and how each feature is read back.
///
/// Build it once at start-up and share it; every ``EntityFeatureState`` refers to it.
///
/// ## Buckets and exactness
/// Each distinct window `W` gets its own buckets of width `b = W / n`, where `n` is the largest
/// divisor of `W` (in milliseconds) not above `bucketsPerWindow` (48 by default, so `b = W/48`
/// for every window written in whole minutes: 30m → 37.5 s, 1h → 75 s, 24h → 30 min, 7d → 3.5 h).
/// Bucket `c` holds the events with time in `((c − 1)·b, c·b]` (milliseconds since the epoch),
/// so bucket edges are multiples of `b`.
///
/// A window evaluated at time `t` counts every bucket that ends after `t − W`:
/// - when `t` is a bucket edge (a multiple of `b`) the window is exactly `(t − W, t]`: an event
///   exactly `W` old is out, an event at `t` is in;
/// - between edges, the oldest bucket, which straddles `t − W`, is counted whole: the window is
///   `(⌊(t − W)/b⌋·b, t]`, longer than `W` by less than one bucket width and never shorter. No
///   event inside the window is ever left out; events up to `b` older than `W` may be counted.
///
/// Because evaluation is only defined at or after the latest event, a window's buckets that end
/// at or before `latest − W` can never be counted again and are evicted; late events that fall
/// into them still update the unwindowed features (`last`, `time_since_last`, `decayed_mean`).
public final class FeatureSchema: Sendable {
    /// The features in definition order, which is the order of ``EntityFeatureState/evaluate(asOf:)``.
    public let features: [FeatureSpec]
    /// How far behind an entity's latest event time an event may be and still be applied.
    public let allowedLateness: TimeSpan
    /// The target number of buckets per window.
    public let bucketsPerWindow: Int
    /// A hash of the layout (windows, bucket widths, kept statistics): encoded states carry it,
    /// and a state written under another layout is refused when decoded.
    public let fingerprint: UInt32

    let latenessMillis: Int64
    /// The event fields the features read, each once.
    let fields: [String]
    let typeBits: [String: UInt64]
    let windows: [WindowLayout]
    let points: [SlotKey]
    let decays: [DecayLayout]
    let plans: [Plan]

    /// Compiles `features`.
    /// - Throws: ``FeatureError/Code/invalidDefinition`` naming the first bad feature.
    public init(
        features: [FeatureSpec], allowedLateness: TimeSpan, bucketsPerWindow: Int = 48
    ) throws(FeatureError) {
        guard bucketsPerWindow >= 1 else {
            throw FeatureError(.invalidDefinition, "bucketsPerWindow must be at least 1, got \(bucketsPerWindow)")
        }
        guard allowedLateness.seconds.isFinite, allowedLateness.seconds >= 0,
              allowedLateness.seconds < Self.maxSpanSeconds else {
            throw FeatureError(.invalidDefinition, "allowedLateness must be a non-negative time span, got \(allowedLateness)")
        }
        var builder = LayoutBuilder()
        var names = Set<String>()
        var plans: [Plan] = []
        for spec in features {
            guard !spec.name.isEmpty else { throw FeatureError(.invalidDefinition, "a feature has an empty name") }
            guard names.insert(spec.name).inserted else {
                throw FeatureError(.invalidDefinition, "feature \(spec.name) is defined twice")
            }
            plans.append(try builder.plan(for: spec, bucketsPerWindow: bucketsPerWindow))
        }
        guard builder.typeBits.count <= 63 else {
            throw FeatureError(.invalidDefinition, "features name more than 63 distinct event types")
        }
        self.features = features
        self.allowedLateness = allowedLateness
        self.bucketsPerWindow = bucketsPerWindow
        self.latenessMillis = Int64((allowedLateness.seconds * 1000).rounded())
        self.fields = builder.fields
        self.typeBits = builder.typeBits
        self.windows = builder.windows
        self.points = builder.points
        self.decays = builder.decays
        self.plans = plans
        self.fingerprint = builder.fingerprint()
    }

    /// Compiles the `features` section of `loop.yaml`.
    public convenience init(settings: FeatureSettings, bucketsPerWindow: Int = 48) throws(FeatureError) {
        try self.init(
            features: settings.definitions.map(FeatureSpec.init), allowedLateness: settings.allowedLateness,
            bucketsPerWindow: bucketsPerWindow)
    }

    /// The feature names in definition order.
    public var featureNames: [String] { features.map(\.name) }

    /// The event fields the features read, each once: the order of the values
    /// ``EntityFeatureState/apply(time:type:values:)`` takes.
    public var eventFields: [String] { fields }

    /// The bucket width used for `window`, or `nil` when no feature uses that window.
    public func bucketWidth(for window: TimeSpan) -> TimeSpan? {
        let millis = Int64((window.seconds * 1000).rounded())
        return windows.first { $0.windowMillis == millis }.map { TimeSpan(seconds: Double($0.bucketMillis) / 1000) }
    }

    /// The type mask of an event type: its own bit, or the "other types" bit for types no
    /// feature names (seen only by features that take every type).
    func typeMask(of type: String) -> UInt64 { typeBits[type] ?? Self.otherTypesBit }

    static let otherTypesBit: UInt64 = 1 << 63
    static let allTypes: UInt64 = .max
    /// Spans must stay far from Int64 overflow once in milliseconds (about 290 years).
    static let maxSpanSeconds = 1e10
}

// MARK: - Layout

/// A statistic kept per bucket or per entity: which field (none for plain counts) and which
/// event types feed it.
struct SlotKey: Hashable {
    var field: Int?
    var types: UInt64
}

/// One distinct window and the statistics its buckets keep.
struct WindowLayout {
    var windowMillis: Int64
    var bucketMillis: Int64
    /// Buckets per window: `windowMillis / bucketMillis`.
    var span: Int64
    var slots: [SlotKey] {
        didSet { slotHasValues = slots.map { $0.field != nil } }
    }
    /// Per slot, whether it keeps value statistics (false for plain counts).
    private(set) var slotHasValues: [Bool] = []
}

struct DecayLayout: Hashable {
    var slot: SlotKey
    var halfLifeMillis: Double
}

/// How one feature is read back from the state.
enum Plan {
    enum WindowAggregation { case count, sum, mean, min, max, stddev }

    case window(window: Int, slot: Int, WindowAggregation)
    case last(point: Int)
    case timeSinceLast(point: Int)
    case decayedMean(decay: Int)
}

private struct LayoutBuilder {
    var fields: [String] = []
    var typeBits: [String: UInt64] = [:]
    var windows: [WindowLayout] = []
    var points: [SlotKey] = []
    var decays: [DecayLayout] = []

    mutating func plan(for spec: FeatureSpec, bucketsPerWindow: Int) throws(FeatureError) -> Plan {
        func invalid(_ reason: String) -> FeatureError {
            FeatureError(.invalidDefinition, "feature \(spec.name) (\(spec.aggregation.rawValue)): \(reason)")
        }
        let types = typeMask(spec.eventTypes)
        switch spec.aggregation {
        case .count, .sum, .mean, .min, .max, .stddev:
            let aggregation: Plan.WindowAggregation = switch spec.aggregation {
            case .count: .count
            case .sum: .sum
            case .mean: .mean
            case .min: .min
            case .max: .max
            default: .stddev
            }
            guard let window = spec.window else { throw invalid("needs a window") }
            guard spec.halfLife == nil else { throw invalid("takes no halfLife") }
            let field: Int?
            if spec.aggregation == .count {
                field = nil
            } else {
                guard let name = spec.field, !name.isEmpty else { throw invalid("needs a field") }
                field = fieldIndex(name)
            }
            let windowMillis = try millis(window, invalid)
            let windowIndex = windowIndex(windowMillis: windowMillis, bucketsPerWindow: bucketsPerWindow)
            let slot = SlotKey(field: field, types: types)
            if let existing = windows[windowIndex].slots.firstIndex(of: slot) {
                return .window(window: windowIndex, slot: existing, aggregation)
            }
            windows[windowIndex].slots.append(slot)
            return .window(window: windowIndex, slot: windows[windowIndex].slots.count - 1, aggregation)
        case .last, .timeSinceLast:
            guard spec.window == nil, spec.halfLife == nil else { throw invalid("takes neither window nor halfLife") }
            let field: Int?
            if spec.aggregation == .last {
                guard let name = spec.field, !name.isEmpty else { throw invalid("needs a field") }
                field = fieldIndex(name)
            } else {
                field = nil
            }
            let slot = SlotKey(field: field, types: types)
            let point = points.firstIndex(of: slot) ?? { points.append(slot); return points.count - 1 }()
            return spec.aggregation == .last ? .last(point: point) : .timeSinceLast(point: point)
        case .decayedMean:
            guard let halfLife = spec.halfLife else { throw invalid("needs a halfLife") }
            guard spec.window == nil else { throw invalid("takes a halfLife, not a window") }
            guard let name = spec.field, !name.isEmpty else { throw invalid("needs a field") }
            let layout = DecayLayout(
                slot: SlotKey(field: fieldIndex(name), types: types), halfLifeMillis: Double(try millis(halfLife, invalid)))
            let decay = decays.firstIndex(of: layout) ?? { decays.append(layout); return decays.count - 1 }()
            return .decayedMean(decay: decay)
        }
    }

    private func millis(_ span: TimeSpan, _ invalid: (String) -> FeatureError) throws(FeatureError) -> Int64 {
        let millis = span.seconds * 1000
        guard span.seconds.isFinite, span.seconds > 0, span.seconds < FeatureSchema.maxSpanSeconds,
              millis == millis.rounded() else {
            throw invalid("\(span) must be a positive whole number of milliseconds")
        }
        return Int64(millis)
    }

    private mutating func fieldIndex(_ name: String) -> Int {
        if let index = fields.firstIndex(of: name) { return index }
        fields.append(name)
        return fields.count - 1
    }

    private mutating func typeMask(_ types: [String]) -> UInt64 {
        guard !types.isEmpty else { return FeatureSchema.allTypes }
        var mask: UInt64 = 0
        for type in types {
            let bit = typeBits[type] ?? {
                let bit = UInt64(1) << UInt64(min(typeBits.count, 62))
                typeBits[type] = bit
                return bit
            }()
            mask |= bit
        }
        return mask
    }

    private mutating func windowIndex(windowMillis: Int64, bucketsPerWindow: Int) -> Int {
        if let index = windows.firstIndex(where: { $0.windowMillis == windowMillis }) { return index }
        var buckets = Int64(min(bucketsPerWindow, Int(clamping: windowMillis)))
        while windowMillis % buckets != 0 { buckets -= 1 }
        windows.append(WindowLayout(
            windowMillis: windowMillis, bucketMillis: windowMillis / buckets, span: buckets, slots: []))
        return windows.count - 1
    }

    /// FNV-1a over a canonical text of the layout: names, not indices, so the same layout
    /// always hashes the same in every process.
    func fingerprint() -> UInt32 {
        let typeNames = typeBits.sorted { $0.value < $1.value }.map(\.key)
        func describe(_ slot: SlotKey) -> String {
            let field = slot.field.map { fields[$0] } ?? "*"
            let types = slot.types == FeatureSchema.allTypes
                ? "*" : typeNames.enumerated().filter { slot.types & (1 << UInt64($0.offset)) != 0 }.map(\.element).sorted()
                    .joined(separator: ",")
            return "\(field)|\(types)"
        }
        var text = "v1;"
        for window in windows {
            text += "w\(window.windowMillis)/\(window.bucketMillis):" + window.slots.map(describe).joined(separator: ";") + ";"
        }
        text += "p:" + points.map(describe).joined(separator: ";") + ";"
        text += "d:" + decays.map { "\(describe($0.slot))@\(Int64($0.halfLifeMillis))" }.joined(separator: ";")
        var hash: UInt32 = 0x811C_9DC5
        for byte in text.utf8 {
            hash ^= UInt32(byte)
            hash = hash &* 0x0100_0193
        }
        return hash
    }
}
