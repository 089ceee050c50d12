import Contracts

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A `loop.predictions` record as the join and the monitor need it, read straight from its bytes
/// without building a JSON tree. The original bytes are kept: the labeled example is spliced from
/// them, so its feature vector is byte for byte the one served.
///
/// Immutable and shared by reference: handing it from the decoder to the join, the monitor and
/// the labeled examples retains one object rather than copying its fields.
public final class ServedPrediction: Sendable {
    /// The record bytes exactly as consumed.
    public let bytes: [UInt8]
    public let requestId: String
    public let entity: String
    /// The request's event time, milliseconds since the epoch.
    public let eventTimeMs: Int64
    /// The version that decided (`nil` for the baseline policy).
    public let modelVersion: Int64?
    public let score: Double
    public let route: Route
    public let challengers: [ChallengerScore]
    /// Feature names in served order (shared between predictions with the same layout).
    public let featureNames: [String]
    /// Feature values in served order (`nil`: missing).
    public let featureValues: [Double?]
    /// Where each top-level value that a labeled example copies sits in ``bytes``.
    let spans: Spans

    /// Byte ranges of the top-level values of a prediction record.
    struct Spans: Sendable {
        var challengers = 0..<0
        var decision = 0..<0
        var entity = 0..<0
        var eventTimeMs = 0..<0
        var features = 0..<0
        var modelVersion = 0..<0
        var requestId = 0..<0
        var role = 0..<0
        var route = 0..<0
        var score = 0..<0
    }

    /// Reads a prediction record, checking its `schemaVersion` and the fields the join relies on;
    /// the other fields are checked to be well-formed JSON.
    public convenience init(bytes: [UInt8]) throws(RecordError) {
        var names = FeatureNameCache()
        try self.init(bytes: bytes, names: &names)
    }

    /// Like ``init(bytes:)``, reusing `names` when the feature layout repeats.
    init(bytes: [UInt8], names: inout FeatureNameCache) throws(RecordError) {
        let read = bytes.withUnsafeBytes { buffer in
            var scanner = RecordScanner(buffer)
            return Result { () throws(RecordError) in try scanner.read(names: &names) }
        }
        let fields = try read.get()
        self.bytes = bytes
        requestId = fields.requestId
        entity = fields.entity
        eventTimeMs = fields.eventTimeMs
        modelVersion = fields.modelVersion
        score = fields.score
        route = fields.route
        challengers = fields.challengers
        featureNames = fields.featureNames
        featureValues = fields.featureValues
        spans = fields.spans
    }

    /// The full record (every field), for callers that need more than the join reads.
    public func decoded() throws(RecordError) -> Prediction { try Prediction(bytes: bytes) }

    // MARK: - Labeled example bytes

    /// `LabeledExample.schemaVersion` as JSON digits.
    private static let labeledSchemaVersion = Array(String(LabeledExample.schemaVersion.number).utf8)

    /// The canonical bytes of the ``LabeledExample`` this prediction makes with `label`, spliced from
    /// the prediction's own bytes (byte-identical to `LabeledExample(prediction:…).bytes` when the
    /// prediction bytes are canonical, as the scorer writes them).
    public func labeledExampleBytes(label: Bool, source: LabelSource, delaySeconds: Double, value: Double?) -> [UInt8] {
        let delayText = numberText(delaySeconds)
        let valueText = value.map(numberText) ?? "null"
        let sourceText = source.rawValue
        // The copied spans are disjoint parts of the record, the keys and punctuation fewer than
        // `labeledKeyBytes`: the example is written straight into storage of that size.
        let capacity = bytes.count + Self.labeledKeyBytes + Self.labeledSchemaVersion.count
            + delayText.utf8.count + valueText.utf8.count + sourceText.utf8.count
        return bytes.withUnsafeBufferPointer { record in
            [UInt8](unsafeUninitializedCapacity: capacity) { output, count in
                var writer = ByteWriter(output.baseAddress!)
                func copy(_ key: StaticString, _ span: Range<Int>, to writer: inout ByteWriter) {
                    writer.put(key)
                    writer.put(UnsafeBufferPointer(rebasing: record[span]))
                }
                copy("{\"challengers\":", spans.challengers, to: &writer)
                copy(",\"decision\":", spans.decision, to: &writer)
                copy(",\"entity\":", spans.entity, to: &writer)
                copy(",\"eventTimeMs\":", spans.eventTimeMs, to: &writer)
                copy(",\"features\":", spans.features, to: &writer)
                writer.put(label ? ",\"label\":true,\"labelDelaySeconds\":" : ",\"label\":false,\"labelDelaySeconds\":")
                writer.put(delayText)
                writer.put(",\"labelSource\":\"")
                writer.put(sourceText)
                writer.put("\"")
                copy(",\"modelVersion\":", spans.modelVersion, to: &writer)
                copy(",\"requestId\":", spans.requestId, to: &writer)
                copy(",\"role\":", spans.role, to: &writer)
                copy(",\"route\":", spans.route, to: &writer)
                writer.put(",\"schemaVersion\":")
                Self.labeledSchemaVersion.withUnsafeBufferPointer { writer.put($0) }
                copy(",\"score\":", spans.score, to: &writer)
                writer.put(",\"value\":")
                writer.put(valueText)
                writer.put("}")
                count = writer.cursor - output.baseAddress!
            }
        }
    }

    /// More than the bytes of every key and punctuation mark ``labeledExampleBytes(label:source:delaySeconds:value:)``
    /// writes around the copied spans and texts (215).
    private static let labeledKeyBytes = 256
}

/// Writes bytes one after another into storage the caller sized.
private struct ByteWriter {
    private(set) var cursor: UnsafeMutablePointer<UInt8>

    init(_ start: UnsafeMutablePointer<UInt8>) {
        cursor = start
    }

    mutating func put(_ bytes: UnsafeBufferPointer<UInt8>) {
        guard let start = bytes.baseAddress else { return }
        cursor.initialize(from: start, count: bytes.count)
        cursor += bytes.count
    }

    mutating func put(_ text: StaticString) {
        put(UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    mutating func put(_ text: String) {
        var text = text
        text.withUTF8 { put($0) }
    }
}

/// A double as canonical JSON writes it (shortest round-trip form; `null` when not finite).
private func numberText(_ value: Double) -> String {
    value.isFinite ? value.description : "null"
}

/// The last feature-name layout seen, so predictions with the same layout share one `[String]`,
/// and the scanner's scratch space for the names it reads (reused from record to record).
struct FeatureNameCache {
    var names: [String] = []
    var ranges: [Range<Int>] = []
    /// Per name, the bytes its member starts with in canonical JSON: `{"name":` and the name token
    /// as read, then `,"value":`. A record of the same layout matches them byte for byte.
    var members: [[UInt8]] = []
}

// MARK: - Scanner

/// What ``RecordScanner/read(names:)`` reads of a prediction.
struct PredictionFields {
    var requestId = ""
    var entity = ""
    var eventTimeMs: Int64 = 0
    var modelVersion: Int64?
    var score = 0.0
    var route = Route.auto
    var challengers: [ChallengerScore] = []
    var featureNames: [String] = []
    var featureValues: [Double?] = []
    var spans = ServedPrediction.Spans()
}

/// A single-pass reader of one JSON record (a prediction, or an outcome's data): validates the
/// syntax of everything, decodes only the fields the join needs.
struct RecordScanner {
    private let base: UnsafeRawBufferPointer
    private var index = 0
    private var depth = 0

    init(_ buffer: UnsafeRawBufferPointer) {
        base = buffer
    }

    private func fail(_ path: String, _ message: String) -> RecordError {
        RecordError(record: Prediction.recordName, path: path, message: message)
    }

    mutating func read(names: inout FeatureNameCache) throws(RecordError) -> PredictionFields {
        var fields = PredictionFields()
        var seen: UInt16 = 0
        var schemaVersion: Int64?
        skipWhitespace()
        try expect(UInt8(ascii: "{"), "$")
        skipWhitespace()
        if peek == UInt8(ascii: "}") { throw fail("$", "empty object") }
        while true {
            skipWhitespace()
            let key = try keyRange("$")
            skipWhitespace()
            try expect(UInt8(ascii: ":"), "$")
            skipWhitespace()
            let start = index
            switch keyID(key) {
            case .challengers:
                fields.challengers = try challengers()
                fields.spans.challengers = start..<index
                seen |= 1 << 0
            case .decision:
                try skipValue("decision")
                guard matches(start..<index, "true") || matches(start..<index, "false") else {
                    throw fail("decision", "expected a boolean")
                }
                fields.spans.decision = start..<index
                seen |= 1 << 1
            case .entity:
                fields.entity = try string("entity")
                fields.spans.entity = start..<index
                seen |= 1 << 2
            case .eventTimeMs:
                fields.eventTimeMs = try integer("eventTimeMs")
                fields.spans.eventTimeMs = start..<index
                seen |= 1 << 3
            case .features:
                fields.featureValues = try features(names: &names)
                fields.featureNames = names.names
                fields.spans.features = start..<index
                seen |= 1 << 4
            case .modelVersion:
                if peek == UInt8(ascii: "n") {
                    try literal("null", "modelVersion")
                } else {
                    fields.modelVersion = try integer("modelVersion")
                }
                fields.spans.modelVersion = start..<index
                seen |= 1 << 5
            case .requestId:
                fields.requestId = try string("requestId")
                fields.spans.requestId = start..<index
                seen |= 1 << 6
            case .role:
                _ = try role("role")
                fields.spans.role = start..<index
                seen |= 1 << 7
            case .route:
                fields.route = try route("route")
                fields.spans.route = start..<index
                seen |= 1 << 8
            case .score:
                fields.score = try number("score")
                fields.spans.score = start..<index
                seen |= 1 << 9
            case .schemaVersion:
                schemaVersion = try integer(SchemaVersion.fieldName)
            case .other:
                try skipValue(String(decoding: UnsafeRawBufferPointer(rebasing: base[key]), as: UTF8.self))
            }
            skipWhitespace()
            if peek == UInt8(ascii: ",") {
                index += 1
                continue
            }
            try expect(UInt8(ascii: "}"), "$")
            break
        }
        skipWhitespace()
        guard index == base.count else { throw fail("$", "unexpected bytes after the record") }
        guard let schemaVersion else { throw fail(SchemaVersion.fieldName, "the record has no schemaVersion") }
        guard schemaVersion >= 1, schemaVersion <= Int64(Int32.max),
              Prediction.schemaVersion.accepts(SchemaVersion(Int(schemaVersion)))
        else { throw fail(SchemaVersion.fieldName, "schemaVersion \(schemaVersion) is not readable here") }
        if seen != 0x3FF {
            let missing = KeyID.required.enumerated().first { seen & (1 << $0.offset) == 0 }.map(\.element) ?? "?"
            throw fail(missing, "missing")
        }
        return fields
    }

    // MARK: Fields

    private enum KeyID {
        case challengers, decision, entity, eventTimeMs, features, modelVersion, requestId, role, route, score
        case schemaVersion, other

        static let required = ["challengers", "decision", "entity", "eventTimeMs", "features", "modelVersion",
                               "requestId", "role", "route", "score"]
    }

    private func keyID(_ key: Range<Int>) -> KeyID {
        switch key.count {
        case 4: return matches(key, "role") ? .role : .other
        case 5: return matches(key, "route") ? .route : matches(key, "score") ? .score : .other
        case 6: return matches(key, "entity") ? .entity : .other
        case 8: return matches(key, "decision") ? .decision : matches(key, "features") ? .features : .other
        case 9: return matches(key, "requestId") ? .requestId : .other
        case 11: return matches(key, "challengers") ? .challengers : matches(key, "eventTimeMs") ? .eventTimeMs : .other
        case 12: return matches(key, "modelVersion") ? .modelVersion : .other
        case 13: return matches(key, "schemaVersion") ? .schemaVersion : .other
        default: return .other
        }
    }

    /// `[{"name": …, "value": number|null}, …]`; names are checked against (or replace) `names`.
    private mutating func features(names: inout FeatureNameCache) throws(RecordError) -> [Double?] {
        try expect(UInt8(ascii: "["), "features")
        if !names.members.isEmpty, let values = try cachedFeatures(names.members) { return values }
        var values: [Double?] = []
        values.reserveCapacity(names.names.count)
        names.ranges.removeAll(keepingCapacity: true)
        skipWhitespace()
        if peek == UInt8(ascii: "]") {
            index += 1
        } else {
            while true {
                skipWhitespace()
                try expect(UInt8(ascii: "{"), "features")
                var name: Range<Int>?
                var value: Double?
                while true {
                    skipWhitespace()
                    let key = try keyRange("features")
                    skipWhitespace()
                    try expect(UInt8(ascii: ":"), "features")
                    skipWhitespace()
                    if matches(key, "name") {
                        name = try stringRange("features.name")
                    } else if matches(key, "value") {
                        if peek == UInt8(ascii: "n") { try literal("null", "features.value") } else { value = try number("features.value") }
                    } else {
                        try skipValue("features")
                    }
                    skipWhitespace()
                    if peek == UInt8(ascii: ",") {
                        index += 1
                        continue
                    }
                    try expect(UInt8(ascii: "}"), "features")
                    break
                }
                guard let name else { throw fail("features.name", "missing") }
                names.ranges.append(name)
                values.append(value)
                skipWhitespace()
                if peek == UInt8(ascii: ",") {
                    index += 1
                    continue
                }
                try expect(UInt8(ascii: "]"), "features")
                break
            }
        }
        let known = sameNames(names.names, names.ranges)
        if !known {
            var fresh: [String] = []
            fresh.reserveCapacity(names.ranges.count)
            for range in names.ranges { fresh.append(try decodeString(range, "features.name")) }
            names.names = fresh
        }
        // The members of this record's names as read (an escaped name matches only itself).
        names.members = names.ranges.map { range in Self.memberStart + UnsafeRawBufferPointer(rebasing: base[range]) + Self.valueKey }
        return values
    }

    private static let memberStart = Array(#"{"name":"#.utf8)
    private static let valueKey = Array(#","value":"#.utf8)

    /// The features of a record in the cached layout, written canonically: each member is exactly
    /// its bytes in `members`, a number or `null`, and `}`, members separated by `,` and the array
    /// closed by `]`. At the first other byte the cursor goes back to where it started and the
    /// result is `nil` (the general reader takes over); an invalid value is the error it would be there.
    private mutating func cachedFeatures(_ members: [[UInt8]]) throws(RecordError) -> [Double?]? {
        let start = index
        var values: [Double?] = []
        values.reserveCapacity(members.count)
        for (position, member) in members.enumerated() {
            let matched = member.withUnsafeBytes { member in
                base.count - index >= member.count && memcmp(base.baseAddress! + index, member.baseAddress!, member.count) == 0
            }
            guard matched else {
                index = start
                return nil
            }
            index += member.count
            if peek == UInt8(ascii: "n") {
                try literal("null", "features.value")
                values.append(nil)
            } else {
                values.append(try number("features.value"))
            }
            let close = position == members.count - 1 ? UInt8(ascii: "]") : UInt8(ascii: ",")
            guard base.count - index >= 2, base[index] == UInt8(ascii: "}"), base[index + 1] == close else {
                index = start
                return nil
            }
            index += 2
        }
        return values
    }

    /// Whether the feature names just read (`ranges`) equal `cached` (unescaped names only; any escape re-decodes).
    private func sameNames(_ cached: [String], _ ranges: [Range<Int>]) -> Bool {
        guard cached.count == ranges.count else { return false }
        for (range, name) in zip(ranges, cached) {
            let inner = range.lowerBound + 1..<range.upperBound - 1
            var name = name
            let equal = name.withUTF8 { utf8 in
                utf8.count == inner.count && memcmp(utf8.baseAddress!, base.baseAddress! + inner.lowerBound, inner.count) == 0
            }
            if !equal { return false }
        }
        return true
    }

    /// `[{"modelVersion": int, "role": string, "score": number}, …]`.
    private mutating func challengers() throws(RecordError) -> [ChallengerScore] {
        try expect(UInt8(ascii: "["), "challengers")
        var result: [ChallengerScore] = []
        skipWhitespace()
        if peek == UInt8(ascii: "]") {
            index += 1
            return result
        }
        while true {
            skipWhitespace()
            try expect(UInt8(ascii: "{"), "challengers")
            var version: Int64?
            var role: ModelRole?
            var score: Double?
            while true {
                skipWhitespace()
                let key = try keyRange("challengers")
                skipWhitespace()
                try expect(UInt8(ascii: ":"), "challengers")
                skipWhitespace()
                if matches(key, "modelVersion") {
                    version = try integer("challengers.modelVersion")
                } else if matches(key, "role") {
                    role = try self.role("challengers.role")
                } else if matches(key, "score") {
                    score = try number("challengers.score")
                } else {
                    try skipValue("challengers")
                }
                skipWhitespace()
                if peek == UInt8(ascii: ",") {
                    index += 1
                    continue
                }
                try expect(UInt8(ascii: "}"), "challengers")
                break
            }
            guard let version, let role, let score else { throw fail("challengers", "a challenger needs modelVersion, role and score") }
            result.append(ChallengerScore(modelVersion: version, role: role, score: score))
            skipWhitespace()
            if peek == UInt8(ascii: ",") {
                index += 1
                continue
            }
            try expect(UInt8(ascii: "]"), "challengers")
            return result
        }
    }

    // MARK: Primitives

    @inline(__always)
    private var peek: UInt8 { index < base.count ? base[index] : 0 }

    @inline(__always)
    private mutating func skipWhitespace() {
        while index < base.count {
            switch base[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    @inline(__always)
    private mutating func expect(_ byte: UInt8, _ path: String) throws(RecordError) {
        guard peek == byte else {
            throw fail(path, "expected '\(Character(Unicode.Scalar(byte)))' at byte \(index)")
        }
        index += 1
    }

    @inline(__always)
    private func matches(_ range: Range<Int>, _ text: StaticString) -> Bool {
        range.count == text.utf8CodeUnitCount && memcmp(base.baseAddress! + range.lowerBound, text.utf8Start, range.count) == 0
    }

    private mutating func literal(_ text: StaticString, _ path: String) throws(RecordError) {
        let range = index..<min(base.count, index + text.utf8CodeUnitCount)
        guard matches(range, text) else { throw fail(path, "invalid literal at byte \(index)") }
        index = range.upperBound
    }

    /// The range of the string token at the cursor, quotes included (the key of a member, inside quotes).
    private mutating func stringRange(_ path: String) throws(RecordError) -> Range<Int> {
        let start = index
        try expect(UInt8(ascii: "\""), path)
        while index < base.count {
            // Eight bytes at a time up to the first quote, backslash or control character.
            if index + 8 <= base.count {
                let stops = Self.stringStops(UInt64(littleEndian: base.loadUnaligned(fromByteOffset: index, as: UInt64.self)))
                guard stops != 0 else {
                    index += 8
                    continue
                }
                index += stops.trailingZeroBitCount / 8
            }
            let byte = base[index]
            if byte == UInt8(ascii: "\"") {
                index += 1
                return start..<index
            }
            if byte == UInt8(ascii: "\\") {
                index += 2
                continue
            }
            if byte < 0x20 { throw fail(path, "control character in a string") }
            index += 1
        }
        throw fail(path, "unterminated string")
    }

    /// The high bit of each byte of `word` (read little-endian) that is a quote, a backslash or a
    /// control character, and possibly of bytes after the first such: the lowest bit set marks the first.
    @inline(__always)
    private static func stringStops(_ word: UInt64) -> UInt64 {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let high: UInt64 = 0x8080_8080_8080_8080
        let quotes = word ^ (ones &* UInt64(UInt8(ascii: "\"")))
        let backslashes = word ^ (ones &* UInt64(UInt8(ascii: "\\")))
        // A byte is zero, or below 0x20, where subtracting borrows into a high bit that was clear.
        let zeroQuote = (quotes &- ones) & ~quotes
        let zeroBackslash = (backslashes &- ones) & ~backslashes
        let control = (word &- ones &* 0x20) & ~word
        return (zeroQuote | zeroBackslash | control) & high
    }

    /// The bytes of a member's key, without its quotes.
    private mutating func keyRange(_ path: String) throws(RecordError) -> Range<Int> {
        let range = try stringRange(path)
        return range.lowerBound + 1..<range.upperBound - 1
    }

    /// A `Route` string value: its bytes compared with each case's name, the general reading
    /// (unescaping, then the raw value) for anything else.
    private mutating func route(_ path: String) throws(RecordError) -> Route {
        let range = try stringRange(path)
        let inner = range.lowerBound + 1..<range.upperBound - 1
        if matches(inner, "auto") { return .auto }
        if matches(inner, "review") { return .review }
        return try namedCase(range, path)
    }

    /// A `ModelRole` string value, read as ``route(_:)`` reads a route.
    private mutating func role(_ path: String) throws(RecordError) -> ModelRole {
        let range = try stringRange(path)
        let inner = range.lowerBound + 1..<range.upperBound - 1
        if matches(inner, "champion") { return .champion }
        if matches(inner, "shadow") { return .shadow }
        if matches(inner, "canary") { return .canary }
        if matches(inner, "baseline") { return .baseline }
        return try namedCase(range, path)
    }

    /// The case whose raw value is the string token at `range` (unescaped).
    private func namedCase<Value: RawRepresentable>(_ range: Range<Int>, _ path: String) throws(RecordError) -> Value
    where Value.RawValue == String {
        let text = try decodeString(range, path)
        guard let value = Value(rawValue: text) else { throw fail(path, "unknown value \"\(text)\"") }
        return value
    }

    /// A string value, unescaped.
    private mutating func string(_ path: String) throws(RecordError) -> String {
        try decodeString(try stringRange(path), path)
    }

    private func decodeString(_ range: Range<Int>, _ path: String) throws(RecordError) -> String {
        let inner = UnsafeRawBufferPointer(rebasing: base[range.lowerBound + 1..<range.upperBound - 1])
        if !inner.contains(UInt8(ascii: "\\")) { return String(decoding: inner, as: UTF8.self) }
        do {
            guard case .string(let text) = try JSONValue.parse(UnsafeRawBufferPointer(rebasing: base[range])) else {
                throw fail(path, "expected a string")
            }
            return text
        } catch let error as RecordError {
            throw error
        } catch {
            throw fail(path, "\(error)")
        }
    }

    /// The range of the number token at the cursor.
    private mutating func numberRange(_ path: String) throws(RecordError) -> Range<Int> {
        let start = index
        if peek == UInt8(ascii: "-") { index += 1 }
        let digits = index
        while index < base.count, base[index] >= UInt8(ascii: "0"), base[index] <= UInt8(ascii: "9") { index += 1 }
        guard index > digits else { throw fail(path, "expected a number at byte \(start)") }
        if base[digits] == UInt8(ascii: "0"), index - digits > 1 { throw fail(path, "leading zero") }
        if peek == UInt8(ascii: ".") {
            index += 1
            let fraction = index
            while index < base.count, base[index] >= UInt8(ascii: "0"), base[index] <= UInt8(ascii: "9") { index += 1 }
            guard index > fraction else { throw fail(path, "digits expected after '.'") }
        }
        if peek == UInt8(ascii: "e") || peek == UInt8(ascii: "E") {
            index += 1
            if peek == UInt8(ascii: "+") || peek == UInt8(ascii: "-") { index += 1 }
            let exponent = index
            while index < base.count, base[index] >= UInt8(ascii: "0"), base[index] <= UInt8(ascii: "9") { index += 1 }
            guard index > exponent else { throw fail(path, "digits expected in the exponent") }
        }
        return start..<index
    }

    /// An integer value (no fraction or exponent), within Int64.
    private mutating func integer(_ path: String) throws(RecordError) -> Int64 {
        let range = try numberRange(path)
        var value: Int64 = 0
        var position = range.lowerBound
        let negative = base[position] == UInt8(ascii: "-")
        if negative { position += 1 }
        while position < range.upperBound {
            let byte = base[position]
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { throw fail(path, "expected an integer") }
            let (times, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = negative ? times.subtractingReportingOverflow(Int64(byte - 48))
                                            : times.addingReportingOverflow(Int64(byte - 48))
            guard !overflow1, !overflow2 else { throw fail(path, "integer out of range") }
            value = sum
            position += 1
        }
        return value
    }

    /// A number value as a `Double` (correctly rounded), read in one pass with its grammar.
    private mutating func number(_ path: String) throws(RecordError) -> Double {
        guard let (end, value) = NumberText.read(base, at: index) else {
            let start = index
            // The grammar's own reading names what is wrong.
            _ = try numberRange(path)
            throw fail(path, "invalid number at byte \(start)")
        }
        index = end
        return value
    }

    /// Skips one value of any kind, checking its syntax.
    private mutating func skipValue(_ path: String) throws(RecordError) {
        switch peek {
        case UInt8(ascii: "\""):
            _ = try stringRange(path)
        case UInt8(ascii: "t"): try literal("true", path)
        case UInt8(ascii: "f"): try literal("false", path)
        case UInt8(ascii: "n"): try literal("null", path)
        case UInt8(ascii: "["), UInt8(ascii: "{"):
            let close = peek == UInt8(ascii: "[") ? UInt8(ascii: "]") : UInt8(ascii: "}")
            let isObject = peek == UInt8(ascii: "{")
            depth += 1
            guard depth <= JSONValue.defaultMaxDepth else { throw fail(path, "nested too deeply") }
            index += 1
            skipWhitespace()
            if peek == close {
                index += 1
            } else {
                while true {
                    skipWhitespace()
                    if isObject {
                        _ = try stringRange(path)
                        skipWhitespace()
                        try expect(UInt8(ascii: ":"), path)
                        skipWhitespace()
                    }
                    try skipValue(path)
                    skipWhitespace()
                    if peek == UInt8(ascii: ",") {
                        index += 1
                        continue
                    }
                    try expect(close, path)
                    break
                }
            }
            depth -= 1
        default:
            _ = try numberRange(path)
        }
    }
}

// MARK: - Outcome data

/// The fields of an outcome's data that the join reads.
struct OutcomeFields {
    var requestId: String
    /// The label token: a string's bytes (without quotes), or `true` / `false`.
    var label: Range<Int>
    var labelIsString: Bool
    var value: Double?
}

extension RecordScanner {
    /// The most members an outcome's data may have on the fast path (duplicate keys are checked pairwise).
    static let outcomeMemberLimit = 16

    /// Reads an outcome's data object: `requestId` (a string), `label` (a string or a boolean) and
    /// the business value (`value`, else `valueField`, when a number). Returns `nil`, never a
    /// wrong answer, for anything it does not prove equivalent to the full JSON parse: non-ASCII or
    /// escaped text, duplicate or too many keys, a numeric label, a missing `requestId` or `label`,
    /// invalid syntax. The caller then takes the general path, which names the problem.
    mutating func readOutcome(valueField: [UInt8]?) -> OutcomeFields? {
        for byte in base where byte >= 0x80 || byte == UInt8(ascii: "\\") { return nil }
        return withUnsafeTemporaryAllocation(of: Range<Int>.self, capacity: Self.outcomeMemberLimit) { keys in
            try? readOutcome(valueField: valueField, keys: keys)
        }
    }

    private mutating func readOutcome(valueField: [UInt8]?, keys: UnsafeMutableBufferPointer<Range<Int>>) throws(RecordError) -> OutcomeFields? {
        var keyCount = 0
        var requestId: String?
        var label: Range<Int>?
        var labelIsString = false
        var value: Double?
        var fieldValue: Double?
        skipWhitespace()
        try expect(UInt8(ascii: "{"), "$")
        skipWhitespace()
        if peek == UInt8(ascii: "}") { return nil }
        while true {
            skipWhitespace()
            let key = try keyRange("$")
            guard keyCount < keys.count else { return nil }
            for earlier in keys[0..<keyCount] where earlier.count == key.count
                && memcmp(base.baseAddress! + earlier.lowerBound, base.baseAddress! + key.lowerBound, key.count) == 0 {
                return nil
            }
            keys[keyCount] = key
            keyCount += 1
            skipWhitespace()
            try expect(UInt8(ascii: ":"), "$")
            skipWhitespace()
            let start = index
            if matches(key, "requestId") {
                guard peek == UInt8(ascii: "\"") else { return nil }
                requestId = try string("requestId")
            } else if matches(key, "label") {
                switch peek {
                case UInt8(ascii: "\""):
                    let range = try stringRange("label")
                    label = range.lowerBound + 1..<range.upperBound - 1
                    labelIsString = true
                case UInt8(ascii: "t"), UInt8(ascii: "f"):
                    try skipValue("label")
                    label = start..<index
                default:
                    return nil
                }
            } else if matches(key, "value") {
                value = try optionalNumber("value")
            } else if let valueField, key.count == valueField.count,
                      valueField.withUnsafeBytes({ memcmp(base.baseAddress! + key.lowerBound, $0.baseAddress!, key.count) }) == 0 {
                fieldValue = try optionalNumber("value")
            } else {
                try skipValue("$")
            }
            skipWhitespace()
            if peek == UInt8(ascii: ",") {
                index += 1
                continue
            }
            try expect(UInt8(ascii: "}"), "$")
            break
        }
        skipWhitespace()
        guard index == base.count, let requestId, let label else { return nil }
        return OutcomeFields(requestId: requestId, label: label, labelIsString: labelIsString, value: value ?? fieldValue)
    }

    /// A number value, or `nil` for any other value (skipped and checked).
    private mutating func optionalNumber(_ path: String) throws(RecordError) -> Double? {
        switch peek {
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            let number = try number(path)
            return number.isFinite ? number : nil
        default:
            try skipValue(path)
            return nil
        }
    }
}
