import Contracts
import Kafka

/// Validates an event straight from its bytes (a binary-mode Kafka record's `ce_*` headers and
/// value, or a structured-mode event's JSON, from Kafka or an HTTP batch), without building a
/// `CloudEvent` or a JSON tree, and copies the bytes through where the canonical output equals the
/// input.
///
/// It answers only for inputs it can prove valid: the common shape (JSON data, a current event type,
/// ASCII attributes, no extensions but `traceparent`, a flat data object whose strings have no
/// escapes and whose numbers are already canonical). Anything else, valid or not, gives `nil` and
/// goes through ``KafkaBinding`` or ``JSONFormat`` and ``EventValidator``, which make every decision
/// (and every rejection) the same way; for the inputs it accepts the record is byte-identical to theirs.
struct FastPath: Sendable {
    /// What a data member may be, for one event kind.
    struct Rule: Sendable {
        var name: [UInt8]
        var own: EventValidator.OwnField?
        var spec: FieldSpec?
        /// The bit of this member in the kind's required mask.
        var requiredBit: UInt64
        /// `spec.values` as bytes.
        var values: [[UInt8]]?
    }

    struct KindRules: Sendable {
        var type: [UInt8]
        var kind: EventKind
        var rules: [Rule]
        var requiredMask: UInt64
    }

    let validator: EventValidator
    let kinds: [KindRules]

    init?(validator: EventValidator) {
        self.validator = validator
        let config = validator.config
        var kinds: [KindRules] = []
        for kind in EventKind.allCases {
            let own = validator.ownFields[kind] ?? [:]
            var required = Set(own.filter(\.value.required).map(\.key))
            if kind == .observation || kind == .scoreRequest { required.formUnion(validator.required) }
            guard required.count <= 64 else { return nil }
            var names = Set(own.keys)
            names.formUnion(validator.fields.keys)
            var rules: [Rule] = []
            let mask: UInt64 = required.count == 64 ? ~0 : (1 << UInt64(required.count)) - 1
            let requiredOrder = required.sorted()
            for name in names.sorted() {
                let bit = requiredOrder.firstIndex(of: name).map { UInt64(1) << UInt64($0) } ?? 0
                let spec = validator.fields[name]
                rules.append(Rule(
                    name: Array(name.utf8), own: own[name],
                    spec: own[name] == nil || name == config.label.field ? spec : nil,
                    requiredBit: bit, values: spec?.values?.map { Array($0.utf8) }))
            }
            kinds.append(KindRules(type: Array(kind.currentType.description.utf8), kind: kind, rules: rules, requiredMask: mask))
        }
        self.kinds = kinds
    }

    static let specVersionValue: [UInt8] = Array(CloudEvent.specVersion.utf8)
    static let jsonContentType: [UInt8] = Array("application/json".utf8)
    static let structuredContentType: [UInt8] = Array(JSONFormat.mediaType.utf8)

    // MARK: - Binary mode

    /// The validated event for a binary-mode `record`, or for a structured-mode one whose only
    /// header is `content-type: application/cloudevents+json`; `nil` when the general path must decide.
    func validate(
        _ record: ConsumedRecord, ingestTime: [UInt8], traces: inout TraceGenerator
    ) -> ValidatedEvent? {
        if record.headers.count == 1, record.headers[0].key == "content-type", record.headers[0].value == Self.structuredContentType {
            return record.value?.withUnsafeBytes { validate(structured: $0, ingestTime: ingestTime, traces: &traces) }
        }
        var id: [UInt8]?, source: [UInt8]?, type: [UInt8]?, subject: [UInt8]?, time: [UInt8]?, traceparent: [UInt8]?
        var specVersion = false, contentType = false, ingestTimeSeen = false
        for header in record.headers {
            let name = header.key
            guard let value = header.value else { return nil }
            if name.utf8.starts(with: "ce_".utf8) {
                switch name {
                case "ce_specversion":
                    guard !specVersion, value == Self.specVersionValue else { return nil }
                    specVersion = true
                case "ce_id": guard id == nil, Self.isPlainText(value) else { return nil }; id = value
                case "ce_source": guard source == nil, Self.isSimpleURIReference(value) else { return nil }; source = value
                case "ce_type": guard type == nil else { return nil }; type = value
                case "ce_subject": guard subject == nil, Self.isPlainText(value) else { return nil }; subject = value
                case "ce_time": guard time == nil else { return nil }; time = value
                case "ce_traceparent":
                    guard traceparent == nil, Self.isPlainText(value) || value.isEmpty else { return nil }
                    traceparent = value
                case "ce_ingesttime":
                    guard !ingestTimeSeen, Self.isPlainText(value) || value.isEmpty else { return nil }
                    ingestTimeSeen = true
                default: return nil
                }
            } else if name == "content-type" {
                guard !contentType, value == Self.jsonContentType else { return nil }
                contentType = true
            } else if name.utf8.count == 12, name.lowercased() == "content-type" {
                return nil
            }
        }
        guard specVersion, contentType, let id, let source, let type, let subject, let time, let value = record.value else { return nil }
        return value.withUnsafeBytes { data in
            type.withUnsafeBytes { type in
                event(
                    id: id, source: source, type: type, subject: subject, time: time, traceparent: traceparent,
                    data: data, dataBytes: value, ingestTime: ingestTime, traces: &traces)
            }
        }
    }

    // MARK: - Structured mode

    /// The validated event for one structured-mode event (`application/cloudevents+json`, e.g. one
    /// element of a batch), or `nil` when the general path must decide. `bytes` must be no larger
    /// than the payload limit: the canonical form of an input this path accepts is never longer.
    func validate(
        structured bytes: UnsafeRawBufferPointer, ingestTime: [UInt8], traces: inout TraceGenerator
    ) -> ValidatedEvent? {
        var index = 0
        var seen: UInt16 = 0
        var id: [UInt8]?, source: [UInt8]?, subject: [UInt8]?, time: [UInt8]?, traceparent: [UInt8]?
        var type: UnsafeRawBufferPointer?
        var data: Range<Int>?
        Self.skipSpace(bytes, &index)
        guard index < bytes.count, bytes[index] == UInt8(ascii: "{") else { return nil }
        index += 1
        Self.skipSpace(bytes, &index)
        guard index < bytes.count, bytes[index] != UInt8(ascii: "}") else { return nil }
        while true {
            Self.skipSpace(bytes, &index)
            guard let key = scanString(bytes, &index), let member = StructuredMember(UnsafeRawBufferPointer(rebasing: bytes[key])),
                  seen & member.bit == 0
            else { return nil }
            seen |= member.bit
            Self.skipSpace(bytes, &index)
            guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { return nil }
            index += 1
            Self.skipSpace(bytes, &index)
            if member == .data {
                let start = index
                guard Self.skipObject(bytes, &index) else { return nil }
                data = start..<index
            } else {
                guard let range = scanString(bytes, &index) else { return nil }
                let text = UnsafeRawBufferPointer(rebasing: bytes[range])
                switch member {
                case .specVersion: guard text.elementsEqual(Self.specVersionValue) else { return nil }
                case .id: guard Self.isPlainText(text) else { return nil }; id = Array(text)
                case .source: guard Self.isSimpleURIReference(text) else { return nil }; source = Array(text)
                case .type: type = text
                case .subject: guard Self.isPlainText(text) else { return nil }; subject = Array(text)
                case .time: time = Array(text)
                case .dataContentType: guard text.elementsEqual(Self.jsonContentType) else { return nil }
                case .traceparent:
                    let value = Array(text)
                    guard TraceGenerator.isValid(value) else { return nil }
                    traceparent = value
                case .ingestTime: guard Self.isPlainText(text) else { return nil }
                case .data: return nil
                }
            }
            Self.skipSpace(bytes, &index)
            guard index < bytes.count else { return nil }
            if bytes[index] == UInt8(ascii: ",") {
                index += 1
                continue
            }
            guard bytes[index] == UInt8(ascii: "}") else { return nil }
            index += 1
            break
        }
        Self.skipSpace(bytes, &index)
        guard index == bytes.count, seen & StructuredMember.specVersion.bit != 0, let id, let source, let type, let subject, let time, let data
        else { return nil }
        return event(
            id: id, source: source, type: type, subject: subject, time: time, traceparent: traceparent,
            data: UnsafeRawBufferPointer(rebasing: bytes[data]), dataBytes: nil, ingestTime: ingestTime, traces: &traces)
    }

    /// The members of a structured event this path understands; any other member (an extension,
    /// `dataschema`, `data_base64`) leaves the event to the general path.
    private enum StructuredMember: UInt16 {
        case specVersion, id, source, type, subject, time, dataContentType, traceparent, ingestTime, data

        /// Its bit in a set of members seen.
        var bit: UInt16 { 1 << rawValue }

        init?(_ name: UnsafeRawBufferPointer) {
            func named(_ word: StaticString) -> Bool {
                name.count == word.utf8CodeUnitCount
                    && name.elementsEqual(UnsafeRawBufferPointer(start: word.utf8Start, count: word.utf8CodeUnitCount))
            }
            if named("specversion") { self = .specVersion }
            else if named("id") { self = .id }
            else if named("source") { self = .source }
            else if named("type") { self = .type }
            else if named("subject") { self = .subject }
            else if named("time") { self = .time }
            else if named("datacontenttype") { self = .dataContentType }
            else if named("traceparent") { self = .traceparent }
            else if named("ingesttime") { self = .ingestTime }
            else if named("data") { self = .data }
            else { return nil }
        }
    }

    /// The byte ranges of the elements of a batch body that is a JSON array of objects, or `nil`
    /// when it is not plainly that shape (the general parser then decides, errors included). The
    /// elements themselves are only delimited here, not checked.
    static func elements(ofBatch bytes: UnsafeRawBufferPointer) -> [Range<Int>]? {
        var index = 0
        var elements: [Range<Int>] = []
        skipSpace(bytes, &index)
        guard index < bytes.count, bytes[index] == UInt8(ascii: "[") else { return nil }
        index += 1
        skipSpace(bytes, &index)
        if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
            index += 1
        } else {
            while true {
                skipSpace(bytes, &index)
                let start = index
                guard skipObject(bytes, &index) else { return nil }
                elements.append(start..<index)
                skipSpace(bytes, &index)
                guard index < bytes.count else { return nil }
                if bytes[index] == UInt8(ascii: ",") {
                    index += 1
                    continue
                }
                guard bytes[index] == UInt8(ascii: "]") else { return nil }
                index += 1
                break
            }
        }
        skipSpace(bytes, &index)
        return index == bytes.count ? elements : nil
    }

    /// Moves past the object starting at `index` (brackets balanced outside strings); `false` if
    /// there is none.
    private static func skipObject(_ bytes: UnsafeRawBufferPointer, _ index: inout Int) -> Bool {
        guard index < bytes.count, bytes[index] == UInt8(ascii: "{") else { return false }
        var depth = 0
        var inString = false
        while index < bytes.count {
            let byte = bytes[index]
            index += 1
            if inString {
                if byte == UInt8(ascii: "\\") {
                    index += 1
                } else if byte == UInt8(ascii: "\"") {
                    inString = false
                }
                continue
            }
            switch byte {
            case UInt8(ascii: "\""): inString = true
            case UInt8(ascii: "{"), UInt8(ascii: "["): depth += 1
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                depth -= 1
                if depth == 0 { return index <= bytes.count }
            default: break
            }
        }
        return false
    }

    private static func skipSpace(_ bytes: UnsafeRawBufferPointer, _ index: inout Int) {
        while index < bytes.count, bytes[index] == 0x20 || bytes[index] == 0x0A || bytes[index] == 0x0D || bytes[index] == 0x09 {
            index += 1
        }
    }

    // MARK: - Event

    /// Validates `data` for the event with these attributes and builds its `loop.events` record;
    /// `dataBytes`, when given, holds the same bytes as `data` and is copied through if canonical.
    private func event(
        id: [UInt8], source: [UInt8], type: UnsafeRawBufferPointer, subject: [UInt8], time: [UInt8], traceparent: [UInt8]?,
        data: UnsafeRawBufferPointer, dataBytes: [UInt8]?, ingestTime: [UInt8], traces: inout TraceGenerator
    ) -> ValidatedEvent? {
        guard let kindRules = kinds.first(where: { $0.type.count == type.count && $0.type.elementsEqual(type) }),
              (try? Timestamp.epochMilliseconds(rfc3339: time)) != nil,
              let checked = checkData(data, kindRules)
        else { return nil }
        let value = checked ?? dataBytes ?? Array(data)
        let trace: [UInt8]
        if let traceparent, TraceGenerator.isValid(traceparent) {
            trace = traceparent
        } else {
            trace = traces.nextBytes()
        }
        let headers = [
            KafkaHeader(key: "ce_specversion", value: Self.specVersionValue),
            KafkaHeader(key: "ce_id", value: id),
            KafkaHeader(key: "ce_source", value: source),
            KafkaHeader(key: "ce_type", value: kindRules.type),
            KafkaHeader(key: "ce_subject", value: subject),
            KafkaHeader(key: "ce_time", value: time),
            KafkaHeader(key: "ce_ingesttime", value: ingestTime),
            KafkaHeader(key: "ce_traceparent", value: trace),
            KafkaHeader(key: "content-type", value: Self.jsonContentType),
        ]
        let output = OutgoingRecord(topic: validator.eventsTopic, key: subject, value: value, headers: headers)
        return ValidatedEvent(
            dedupeHash: DedupeStore.hash(source: source, id: id), id: String(decoding: id, as: UTF8.self), kind: kindRules.kind, record: output)
    }

    /// Visible ASCII and spaces: what CloudEvents strings allow, without the Unicode cases.
    static func isPlainText(_ bytes: some Collection<UInt8>) -> Bool {
        !bytes.isEmpty && bytes.allSatisfy { $0 >= 0x20 && $0 < 0x7F }
    }

    /// A conservative subset of RFC 3986 URI-references: unreserved and common delimiter characters.
    static func isSimpleURIReference(_ bytes: some Collection<UInt8>) -> Bool {
        !bytes.isEmpty && bytes.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"): true
            case UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"), UInt8(ascii: "/"), UInt8(ascii: ":"),
                 UInt8(ascii: "@"): true
            default: false
            }
        }
    }

    // MARK: - Data

    /// One member of the data object: byte ranges of its key (without quotes) and value.
    private struct Member {
        var key: Range<Int>
        var value: Range<Int>
        /// The replacement value text (a hashed PII field), if any.
        var replacement: [UInt8]?
    }

    private enum Scalar {
        case string, integer(Int64), decimal(Double), boolean, null
    }

    /// Checks the data object; `.some(nil)` means the value bytes are already the canonical output,
    /// `.some(bytes)` is the rewritten output, `nil` means the general path must decide.
    private func checkData(_ bytes: UnsafeRawBufferPointer, _ kind: KindRules) -> [UInt8]?? {
        var index = 0
        var canonical = true
        func skipSpace() {
            while index < bytes.count, bytes[index] == 0x20 || bytes[index] == 0x0A || bytes[index] == 0x0D || bytes[index] == 0x09 {
                index += 1
                canonical = false
            }
        }
        skipSpace()
        guard index < bytes.count, bytes[index] == UInt8(ascii: "{") else { return nil }
        index += 1
        var members: [Member] = []
        var keys: [Range<Int>] = []
        var ascending = true
        var present: UInt64 = 0
        var previousKey: Range<Int>?
        skipSpace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
            index += 1
        } else {
            while true {
                skipSpace()
                guard let key = scanString(bytes, &index) else { return nil }
                if let previousKey {
                    switch Self.compare(bytes, previousKey, key) {
                    case .same: return nil
                    case .descending:
                        canonical = false
                        ascending = false
                    case .ascending: break
                    }
                }
                previousKey = key
                keys.append(key)
                skipSpace()
                guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { return nil }
                index += 1
                skipSpace()
                let valueStart = index
                guard let scalar = scanScalar(bytes, &index) else { return nil }
                let valueRange = valueStart..<index
                switch check(bytes, key: key, value: valueRange, scalar, kind, present: &present) {
                case nil: return nil
                case .keep?: members.append(Member(key: key, value: valueRange))
                case .omit?: canonical = false
                case .replace(let text)?:
                    canonical = false
                    members.append(Member(key: key, value: valueRange, replacement: text))
                }
                skipSpace()
                guard index < bytes.count else { return nil }
                if bytes[index] == UInt8(ascii: ",") {
                    index += 1
                    continue
                }
                guard bytes[index] == UInt8(ascii: "}") else { return nil }
                index += 1
                break
            }
        }
        skipSpace()
        guard index == bytes.count, present & kind.requiredMask == kind.requiredMask else { return nil }
        if canonical { return .some(nil) }
        if !ascending {
            // Duplicate keys make the input invalid JSON; only sorting shows those that are not adjacent.
            keys.sort { Self.compare(bytes, $0, $1) == .ascending }
            for position in keys.indices.dropFirst() where Self.compare(bytes, keys[position - 1], keys[position]) == .same { return nil }
        }

        members.sort { Self.compare(bytes, $0.key, $1.key) == .ascending }
        var output: [UInt8] = []
        output.reserveCapacity(bytes.count + 64)
        output.append(UInt8(ascii: "{"))
        for (position, member) in members.enumerated() {
            if position > 0 { output.append(UInt8(ascii: ",")) }
            output.append(UInt8(ascii: "\""))
            output.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[member.key]))
            output.append(contentsOf: "\":".utf8)
            if let replacement = member.replacement {
                output.append(contentsOf: replacement)
            } else {
                output.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[member.value]))
            }
        }
        output.append(UInt8(ascii: "}"))
        return .some(output)
    }

    private enum Action {
        case keep, omit
        case replace([UInt8])
    }

    /// What to do with one member, or `nil` when it is not provably valid.
    private func check(
        _ bytes: UnsafeRawBufferPointer, key: Range<Int>, value: Range<Int>, _ scalar: Scalar, _ kind: KindRules,
        present: inout UInt64
    ) -> Action? {
        if case .null = scalar { return .omit }
        let keyBytes = UnsafeRawBufferPointer(rebasing: bytes[key])
        guard let rule = kind.rules.first(where: { $0.name.count == keyBytes.count && $0.name.elementsEqual(keyBytes) }) else {
            switch validator.config.events.unknownFields {
            case .reject: return nil
            case .drop: return .omit
            case .keep: return .keep
            }
        }
        present |= rule.requiredBit
        if let own = rule.own {
            switch own.shape {
            case .identifier: guard case .string = scalar, value.count > 2 else { return nil }
            case .text: guard case .string = scalar else { return nil }
            case .number:
                switch scalar {
                case .integer, .decimal: break
                default: return nil
                }
            case .label:
                switch scalar {
                case .string, .integer, .boolean: break
                default: return nil
                }
            }
            if let spec = rule.spec, !checkDeclared(bytes, value: value, scalar, spec, rule.values) { return nil }
            return .keep
        }
        guard let spec = rule.spec, checkDeclared(bytes, value: value, scalar, spec, rule.values) else { return nil }
        switch spec.pii {
        case .none: return .keep
        case .drop: return .omit
        case .hash:
            guard case .string = scalar else { return nil }
            var text: [UInt8] = []
            text.reserveCapacity(66)
            text.append(UInt8(ascii: "\""))
            validator.piiHasher.appendHex(UnsafeRawBufferPointer(rebasing: bytes[(value.lowerBound + 1)..<(value.upperBound - 1)]), to: &text)
            text.append(UInt8(ascii: "\""))
            return .replace(text)
        }
    }

    private func checkDeclared(
        _ bytes: UnsafeRawBufferPointer, value: Range<Int>, _ scalar: Scalar, _ spec: FieldSpec, _ values: [[UInt8]]?
    ) -> Bool {
        func inBounds(_ number: Double) -> Bool {
            !(spec.min.map { number < $0 } ?? false) && !(spec.max.map { number > $0 } ?? false)
        }
        func allowed(_ text: Range<Int>) -> Bool {
            guard let values else { return true }
            let candidate = UnsafeRawBufferPointer(rebasing: bytes[text])
            return values.contains { $0.count == candidate.count && $0.elementsEqual(candidate) }
        }
        let inner = (value.lowerBound + 1)..<max(value.lowerBound + 1, value.upperBound - 1)
        switch (spec.kind, scalar) {
        case (.double, .integer(let number)): return inBounds(Double(number))
        case (.double, .decimal(let number)): return inBounds(number)
        case (.int, .integer(let number)): return inBounds(Double(number))
        case (.bool, .boolean): return true
        case (.string, .string): return allowed(inner)
        case (.category, .string): return allowed(inner)
        case (.category, .integer), (.category, .boolean): return allowed(value)
        default: return false
        }
    }

    // MARK: - Scanning

    /// A string without escapes or control characters, valid UTF-8: the range inside the quotes.
    private func scanString(_ bytes: UnsafeRawBufferPointer, _ index: inout Int) -> Range<Int>? {
        guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { return nil }
        let start = index + 1
        var cursor = start
        var ascii = true
        while cursor < bytes.count {
            let byte = bytes[cursor]
            if byte == UInt8(ascii: "\"") { break }
            if byte == UInt8(ascii: "\\") || byte < 0x20 { return nil }
            if byte >= 0x80 { ascii = false }
            cursor += 1
        }
        guard cursor < bytes.count else { return nil }
        if !ascii, String(validating: UnsafeRawBufferPointer(rebasing: bytes[start..<cursor]), as: UTF8.self) == nil { return nil }
        index = cursor + 1
        return start..<cursor
    }

    /// A string, a canonical number, `true`, `false` or `null`; nested values give `nil`.
    private func scanScalar(_ bytes: UnsafeRawBufferPointer, _ index: inout Int) -> Scalar? {
        guard index < bytes.count else { return nil }
        switch bytes[index] {
        case UInt8(ascii: "\""):
            return scanString(bytes, &index) == nil ? nil : .string
        case UInt8(ascii: "t"): return literal("true", bytes, &index) ? .boolean : nil
        case UInt8(ascii: "f"): return literal("false", bytes, &index) ? .boolean : nil
        case UInt8(ascii: "n"): return literal("null", bytes, &index) ? .null : nil
        default: return scanNumber(bytes, &index)
        }
    }

    private func literal(_ word: StaticString, _ bytes: UnsafeRawBufferPointer, _ index: inout Int) -> Bool {
        let expected = UnsafeRawBufferPointer(start: word.utf8Start, count: word.utf8CodeUnitCount)
        guard index + expected.count <= bytes.count, bytes[index..<(index + expected.count)].elementsEqual(expected) else { return false }
        index += expected.count
        return true
    }

    private static let powersOfTen: [Double] = (0...22).map { exponent in
        var value = 1.0
        for _ in 0..<exponent { value *= 10 }
        return value
    }

    /// A number written exactly as the canonical writer writes it: integers without a sign on zero or
    /// leading zeros (up to 18 digits), decimals in plain notation with at most 15 significant digits,
    /// no trailing zero (except `x.0`), an integer part under 10⁹ and a magnitude of at least 0.001
    /// (Swift's shortest round-trip text is then the input itself). Anything else gives `nil`.
    private func scanNumber(_ bytes: UnsafeRawBufferPointer, _ index: inout Int) -> Scalar? {
        var cursor = index
        let negative = bytes[cursor] == UInt8(ascii: "-")
        if negative { cursor += 1 }
        func isDigit(_ at: Int) -> Bool { at < bytes.count && bytes[at] >= 0x30 && bytes[at] <= 0x39 }
        guard isDigit(cursor) else { return nil }
        var mantissa: UInt64 = 0
        var integerDigits = 0
        let integerStart = cursor
        while isDigit(cursor) {
            mantissa = mantissa &* 10 &+ UInt64(bytes[cursor] - 0x30)
            integerDigits += 1
            cursor += 1
        }
        let leadingZero = bytes[integerStart] == UInt8(ascii: "0")
        guard !(leadingZero && integerDigits > 1) else { return nil }
        if cursor < bytes.count, bytes[cursor] == UInt8(ascii: ".") {
            guard integerDigits <= 9 else { return nil }
            cursor += 1
            let fractionStart = cursor
            while isDigit(cursor) {
                mantissa = mantissa &* 10 &+ UInt64(bytes[cursor] - 0x30)
                cursor += 1
            }
            let fractionDigits = cursor - fractionStart
            guard fractionDigits > 0, fractionDigits <= 17 else { return nil }
            let fraction = UnsafeRawBufferPointer(rebasing: bytes[fractionStart..<cursor])
            let isPointZero = fractionDigits == 1 && fraction[0] == UInt8(ascii: "0")
            if !isPointZero {
                guard fraction[fractionDigits - 1] != UInt8(ascii: "0") else { return nil }
                var significant = integerDigits + fractionDigits
                if leadingZero {
                    let zeros = fraction.prefix { $0 == UInt8(ascii: "0") }.count
                    guard zeros <= 2 else { return nil }
                    significant = fractionDigits - zeros
                }
                guard significant <= 15 else { return nil }
            } else if negative && leadingZero {
                // -0.0 is canonical, but only the general path's double keeps its sign reliably here.
                return nil
            }
            if cursor < bytes.count, bytes[cursor] | 0x20 == UInt8(ascii: "e") { return nil }
            index = cursor
            let magnitude = Double(mantissa) / Self.powersOfTen[fractionDigits]
            return .decimal(negative ? -magnitude : magnitude)
        }
        guard integerDigits <= 18, !(negative && mantissa == 0) else { return nil }
        if cursor < bytes.count, bytes[cursor] | 0x20 == UInt8(ascii: "e") { return nil }
        index = cursor
        return .integer(negative ? -Int64(mantissa) : Int64(mantissa))
    }

    private static func compare(_ bytes: UnsafeRawBufferPointer, _ left: Range<Int>, _ right: Range<Int>) -> Order {
        let shared = min(left.count, right.count)
        for offset in 0..<shared {
            let a = bytes[left.lowerBound + offset], b = bytes[right.lowerBound + offset]
            if a != b { return a < b ? .ascending : .descending }
        }
        if left.count == right.count { return .same }
        return left.count < right.count ? .ascending : .descending
    }

    private enum Order { case ascending, same, descending }
}
