import Contracts

/// Writes a ``Prediction``'s record bytes straight into a reused buffer, without building a
/// `JSONValue` tree: the same canonical JSON (`Prediction.bytes`), keys in sorted order, doubles
/// in their shortest round-trip form, `null` for absent and non-finite values.
///
/// The feature vector's names are the same in every prediction of a layout, so the writer keeps
/// each `{"name":"…","value":` fragment of the last names it wrote and reuses it while they stay.
public struct PredictionWriter {
    /// The bytes of the last ``write(_:)``.
    public private(set) var buffer: [UInt8] = []
    /// The feature names of the last prediction written and each one's encoded fragment.
    private var featureNames: [String] = []
    private var featureFragments: [[UInt8]] = []

    /// A writer with an empty buffer.
    public init() { buffer.reserveCapacity(1024) }

    /// Replaces the buffer's content with `prediction`'s record bytes and returns them.
    @discardableResult
    public mutating func write(_ prediction: Prediction) -> [UInt8] {
        buffer.removeAll(keepingCapacity: true)
        let p = prediction
        raw("{\"challengers\":[")
        for (index, challenger) in p.challengers.enumerated() {
            if index > 0 { byte(UInt8(ascii: ",")) }
            raw("{\"modelVersion\":")
            integer(challenger.modelVersion)
            raw(",\"role\":")
            string(challenger.role.rawValue)
            raw(",\"score\":")
            double(challenger.score)
            byte(UInt8(ascii: "}"))
        }
        raw("],\"decision\":")
        raw(p.decision ? "true" : "false")
        raw(",\"entity\":")
        string(p.entity)
        raw(",\"eventTimeMs\":")
        integer(p.eventTimeMs)
        raw(",\"explanation\":[")
        for (index, contribution) in p.explanation.enumerated() {
            if index > 0 { byte(UInt8(ascii: ",")) }
            raw("{\"contribution\":")
            double(contribution.contribution)
            raw(",\"feature\":")
            string(contribution.feature)
            byte(UInt8(ascii: "}"))
        }
        raw("],\"featureAgeSeconds\":")
        double(p.featureAgeSeconds)
        raw(",\"features\":[")
        if !hasFragments(for: p.features) { makeFragments(for: p.features) }
        for index in p.features.indices {
            if index > 0 { byte(UInt8(ascii: ",")) }
            buffer.append(contentsOf: featureFragments[index])
            double(p.features[index].value)
            byte(UInt8(ascii: "}"))
        }
        raw("],\"featuresAsOfMs\":")
        integer(p.featuresAsOfMs)
        raw(",\"latencyMs\":")
        double(p.latencyMs)
        raw(",\"modelVersion\":")
        integer(p.modelVersion)
        raw(",\"reasons\":[")
        for (index, reason) in p.reasons.enumerated() {
            if index > 0 { byte(UInt8(ascii: ",")) }
            string(reason)
        }
        raw("],\"requestId\":")
        string(p.requestId)
        raw(",\"role\":")
        string(p.role.rawValue)
        raw(",\"route\":")
        string(p.route.rawValue)
        raw(",\"schemaVersion\":")
        integer(Int64(Prediction.schemaVersion.number))
        raw(",\"score\":")
        double(p.score)
        raw(",\"traceparent\":")
        if let traceparent = p.traceparent { string(traceparent) } else { raw("null") }
        byte(UInt8(ascii: "}"))
        return buffer
    }

    // MARK: - Feature fragments

    private func hasFragments(for features: [FeatureValue]) -> Bool {
        guard features.count == featureNames.count else { return false }
        for index in features.indices where features[index].name != featureNames[index] { return false }
        return true
    }

    private mutating func makeFragments(for features: [FeatureValue]) {
        let kept = buffer
        featureNames = features.map(\.name)
        featureFragments = features.map { feature in
            buffer = []
            raw("{\"name\":")
            string(feature.name)
            raw(",\"value\":")
            return buffer
        }
        buffer = kept
    }

    // MARK: - Primitives

    @inline(__always)
    private mutating func byte(_ value: UInt8) { buffer.append(value) }

    @inline(__always)
    private mutating func raw(_ text: StaticString) {
        buffer.append(contentsOf: UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    private mutating func integer(_ value: Int64?) {
        guard let value else { return raw("null") }
        var magnitude = value.magnitude
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)
        withUnsafeMutableBytes(of: &digits) { scratch in
            var index = scratch.count
            repeat {
                index -= 1
                scratch[index] = UInt8(ascii: "0") + UInt8(magnitude % 10)
                magnitude /= 10
            } while magnitude > 0
            if value < 0 {
                index -= 1
                scratch[index] = UInt8(ascii: "-")
            }
            buffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: scratch[index...]))
        }
    }

    private mutating func double(_ value: Double?) {
        guard let value else { return raw("null") }
        DoubleText.appendJSON(value, to: &buffer)
    }

    private mutating func string(_ value: String) {
        byte(UInt8(ascii: "\""))
        var text = value
        text.withUTF8 { utf8 in
            var runStart = 0
            for index in 0..<utf8.count {
                let unit = utf8[index]
                guard unit < 0x20 || unit == UInt8(ascii: "\"") || unit == UInt8(ascii: "\\") else { continue }
                buffer.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart..<index]))
                runStart = index + 1
                byte(UInt8(ascii: "\\"))
                switch unit {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"): byte(unit)
                case 0x08: byte(UInt8(ascii: "b"))
                case 0x09: byte(UInt8(ascii: "t"))
                case 0x0A: byte(UInt8(ascii: "n"))
                case 0x0C: byte(UInt8(ascii: "f"))
                case 0x0D: byte(UInt8(ascii: "r"))
                default:
                    raw("u00")
                    byte(Self.hexDigit(unit >> 4))
                    byte(Self.hexDigit(unit & 0xF))
                }
            }
            buffer.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart...]))
        }
        byte(UInt8(ascii: "\""))
    }

    private static func hexDigit(_ nibble: UInt8) -> UInt8 {
        nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "a") + nibble - 10
    }
}
