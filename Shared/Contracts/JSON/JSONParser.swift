// MARK: - Entry points

extension JSONValue {
    /// The default limit on nesting of arrays and objects.
    public static let defaultMaxDepth = 128

    /// Parses one JSON text (strict RFC 8259): exactly one value, optional surrounding whitespace.
    ///
    /// Rejects duplicate object keys, unpaired surrogates, invalid UTF-8, and nesting deeper than
    /// `maxDepth`. Errors carry the byte offset.
    public static func parse(_ buffer: UnsafeRawBufferPointer, maxDepth: Int = defaultMaxDepth) throws(JSONError) -> JSONValue {
        var parser = JSONParser(maxDepth: maxDepth)
        return try parser.parse(buffer)
    }

    /// Parses one JSON text from bytes; see ``parse(_:maxDepth:)-(UnsafeRawBufferPointer,_)``.
    public static func parse(_ bytes: [UInt8], maxDepth: Int = defaultMaxDepth) throws(JSONError) -> JSONValue {
        let result: Result<JSONValue, JSONError> = bytes.withUnsafeBytes { buffer in
            do throws(JSONError) {
                return .success(try parse(buffer, maxDepth: maxDepth))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    /// Parses one JSON text from a string's UTF-8.
    public static func parse(_ text: String, maxDepth: Int = defaultMaxDepth) throws(JSONError) -> JSONValue {
        try parse(Array(text.utf8), maxDepth: maxDepth)
    }
}

// MARK: - Parser

/// A strict RFC 8259 parser that keeps its scratch buffers between documents.
///
/// ``JSONValue/parse(_:maxDepth:)-(UnsafeRawBufferPointer,_)`` makes a fresh one per call; a hot path
/// keeps one parser per task and calls ``parse(_:)`` for each document, which saves allocations.
/// (It is `@unchecked Sendable` because the input pointer is held only for the duration of ``parse(_:)``.)
public struct JSONParser: @unchecked Sendable {
    private var bytes = UnsafeRawBufferPointer(start: nil, count: 0)
    private var position = 0
    private var depth = 0
    /// The limit on nesting of arrays and objects.
    public let maxDepth: Int
    /// Scratch space for strings with escapes, reused across strings.
    private var scratch: [UInt8] = []
    /// Elements and members of the open containers; each container is copied out once, at its exact size.
    private var elementStack: [JSONValue] = []
    private var memberStack: [JSONObject.Member] = []
    private var keyStack: [KeyInfo] = []
    /// Scratch for sorting the members of one object.
    private var order: [Int] = []
    /// The first eight UTF-8 bytes (big-endian, zero-padded) of the last string parsed, for fast key ordering.
    private var lastStringPrefix: UInt64 = 0

    private struct KeyInfo {
        var prefix: UInt64
        var offset: Int
    }

    /// A parser that rejects nesting deeper than `maxDepth`.
    public init(maxDepth: Int = JSONValue.defaultMaxDepth) {
        self.maxDepth = maxDepth
        scratch.reserveCapacity(64)
        elementStack.reserveCapacity(16)
        memberStack.reserveCapacity(32)
        keyStack.reserveCapacity(32)
        order.reserveCapacity(32)
    }

    /// Parses one JSON text: exactly one value with optional surrounding whitespace.
    public mutating func parse(_ buffer: UnsafeRawBufferPointer) throws(JSONError) -> JSONValue {
        bytes = buffer
        position = 0
        depth = 0
        elementStack.removeAll(keepingCapacity: true)
        memberStack.removeAll(keepingCapacity: true)
        keyStack.removeAll(keepingCapacity: true)
        defer { bytes = UnsafeRawBufferPointer(start: nil, count: 0) }
        skipWhitespace()
        let value = try parseValue()
        skipWhitespace()
        if position != bytes.count {
            throw JSONError(.trailingData, at: position, "unexpected \(describe(bytes[position])) after the JSON value")
        }
        return value
    }

    // MARK: Values

    private mutating func parseValue() throws(JSONError) -> JSONValue {
        guard position < bytes.count else { throw JSONError(.unexpectedEnd, at: position, "expected a value, found the end of input") }
        switch bytes[position] {
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        case UInt8(ascii: "t"): try expectLiteral("true"); return .bool(true)
        case UInt8(ascii: "f"): try expectLiteral("false"); return .bool(false)
        case UInt8(ascii: "n"): try expectLiteral("null"); return .null
        case let byte: throw JSONError(.unexpectedByte, at: position, "expected a value, found \(describe(byte))")
        }
    }

    private mutating func expectLiteral(_ literal: StaticString) throws(JSONError) {
        let count = literal.utf8CodeUnitCount
        let start = literal.utf8Start
        for offset in 0..<count {
            guard position + offset < bytes.count else {
                throw JSONError(.unexpectedEnd, at: position + offset, "input ends inside `\(literal)`")
            }
            if bytes[position + offset] != start[offset] {
                throw JSONError(.unexpectedByte, at: position + offset, "expected `\(literal)`")
            }
        }
        position += count
    }

    private mutating func enterContainer() throws(JSONError) {
        depth += 1
        if depth > maxDepth {
            throw JSONError(.depthLimitExceeded, at: position, "arrays and objects nest deeper than \(maxDepth)")
        }
    }

    private mutating func parseArray() throws(JSONError) -> JSONValue {
        try enterContainer()
        position += 1
        skipWhitespace()
        if position < bytes.count, bytes[position] == UInt8(ascii: "]") {
            position += 1
            depth -= 1
            return .array([])
        }
        let base = elementStack.count
        while true {
            skipWhitespace()
            let element = try parseValue()
            elementStack.append(element)
            skipWhitespace()
            guard position < bytes.count else { throw JSONError(.unexpectedEnd, at: position, "input ends inside an array") }
            switch bytes[position] {
            case UInt8(ascii: ","): position += 1
            case UInt8(ascii: "]"):
                position += 1
                depth -= 1
                let elements = Array(elementStack[base...])
                elementStack.removeSubrange(base...)
                return .array(elements)
            case let byte: throw JSONError(.unexpectedByte, at: position, "expected `,` or `]` in an array, found \(describe(byte))")
            }
        }
    }

    private mutating func parseObject() throws(JSONError) -> JSONValue {
        try enterContainer()
        position += 1
        skipWhitespace()
        if position < bytes.count, bytes[position] == UInt8(ascii: "}") {
            position += 1
            depth -= 1
            return .object(JSONObject())
        }
        let base = memberStack.count
        var sorted = true
        while true {
            skipWhitespace()
            guard position < bytes.count else { throw JSONError(.unexpectedEnd, at: position, "input ends inside an object") }
            guard bytes[position] == UInt8(ascii: "\"") else {
                throw JSONError(.unexpectedByte, at: position, "expected a string key in an object, found \(describe(bytes[position]))")
            }
            let keyOffset = position
            let key = try parseString()
            let prefix = lastStringPrefix
            skipWhitespace()
            guard position < bytes.count else { throw JSONError(.unexpectedEnd, at: position, "input ends inside an object") }
            guard bytes[position] == UInt8(ascii: ":") else {
                throw JSONError(.unexpectedByte, at: position, "expected `:` after an object key, found \(describe(bytes[position]))")
            }
            position += 1
            skipWhitespace()
            let value = try parseValue()
            if sorted, memberStack.count > base {
                switch compare(prefix, key, memberStack.count - 1) {
                case .orderedAscending: break
                case .orderedSame: throw JSONError(.duplicateKey, at: keyOffset, "duplicate object key \"\(key)\"")
                case .orderedDescending: sorted = false
                }
            }
            memberStack.append(JSONObject.Member(key: key, value: value))
            keyStack.append(KeyInfo(prefix: prefix, offset: keyOffset))
            skipWhitespace()
            guard position < bytes.count else { throw JSONError(.unexpectedEnd, at: position, "input ends inside an object") }
            switch bytes[position] {
            case UInt8(ascii: ","): position += 1
            case UInt8(ascii: "}"):
                position += 1
                depth -= 1
                let members = sorted ? Array(memberStack[base...]) : try sortedMembers(from: base)
                memberStack.removeSubrange(base...)
                keyStack.removeSubrange(base...)
                return .object(JSONObject(sortedUniqueMembers: members))
            case let byte: throw JSONError(.unexpectedByte, at: position, "expected `,` or `}` in an object, found \(describe(byte))")
            }
        }
    }

    /// Orders a key (with its 8-byte prefix) against the member at `index` of the stack.
    @inline(__always)
    private func compare(_ prefix: UInt64, _ key: String, _ index: Int) -> KeyOrder {
        let other = keyStack[index].prefix
        if other != prefix { return other < prefix ? .orderedAscending : .orderedDescending }
        return compareKeys(memberStack[index].key, key)
    }

    /// The members of the object being closed in key order, duplicates rejected. Objects are small,
    /// so this insertion-sorts positions by the 8-byte key prefixes and compares whole keys only on ties.
    private mutating func sortedMembers(from base: Int) throws(JSONError) -> [JSONObject.Member] {
        let count = memberStack.count - base
        order.removeAll(keepingCapacity: true)
        for index in 0..<count { order.append(base + index) }
        var failure: JSONError?
        memberStack.withUnsafeBufferPointer { members in
            keyStack.withUnsafeBufferPointer { keys in
                order.withUnsafeMutableBufferPointer { order in
                    for index in 1..<count {
                        let current = order[index]
                        var slot = index
                        while slot > 0 {
                            let previous = order[slot - 1]
                            var ordering: KeyOrder
                            if keys[previous].prefix != keys[current].prefix {
                                ordering = keys[previous].prefix < keys[current].prefix ? .orderedAscending : .orderedDescending
                            } else {
                                ordering = compareKeys(members[previous].key, members[current].key)
                            }
                            if ordering == .orderedAscending { break }
                            if ordering == .orderedSame {
                                let later = max(keys[previous].offset, keys[current].offset)
                                failure = JSONError(.duplicateKey, at: later, "duplicate object key \"\(members[current].key)\"")
                                return
                            }
                            order[slot] = previous
                            slot -= 1
                        }
                        order[slot] = current
                    }
                }
            }
        }
        if let failure { throw failure }
        return order.map { memberStack[$0] }
    }

    // MARK: Strings

    /// Parses a string starting at the opening quote.
    private mutating func parseString() throws(JSONError) -> String {
        let start = position + 1
        var index = start
        var ascii = true
        while index < bytes.count {
            // Jump eight plain ASCII bytes at a time, or straight to the first byte that needs a look.
            if index + 8 <= bytes.count {
                let mask = attentionMask(UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self)))
                if mask == 0 {
                    index += 8
                    continue
                }
                index += mask.trailingZeroBitCount >> 3
            }
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                let slice = UnsafeRawBufferPointer(rebasing: bytes[start..<index])
                position = index + 1
                lastStringPrefix = keyPrefix(slice)
                if ascii { return String(decoding: slice, as: UTF8.self) }
                guard let text = String(validating: slice, as: UTF8.self) else {
                    throw JSONError(.invalidUTF8, at: start - 1, "string is not valid UTF-8")
                }
                return text
            }
            if byte == UInt8(ascii: "\\") {
                return try parseEscapedString(start: start, escapeAt: index)
            }
            if byte < 0x20 {
                throw JSONError(.controlCharacter, at: index, "unescaped control character \(describe(byte)) in a string")
            }
            if byte >= 0x80 { ascii = false }
            index += 1
        }
        throw JSONError(.unexpectedEnd, at: index, "input ends inside a string")
    }

    /// The slow path: a string with escapes, decoded into the scratch buffer.
    private mutating func parseEscapedString(start: Int, escapeAt firstEscape: Int) throws(JSONError) -> String {
        scratch.removeAll(keepingCapacity: true)
        scratch.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[start..<firstEscape]))
        var index = firstEscape
        while index < bytes.count {
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "\""):
                position = index + 1
                guard let text = String(validating: scratch, as: UTF8.self) else {
                    throw JSONError(.invalidUTF8, at: start - 1, "string is not valid UTF-8")
                }
                lastStringPrefix = scratch.withUnsafeBytes { keyPrefix($0) }
                return text
            case UInt8(ascii: "\\"):
                guard index + 1 < bytes.count else { throw JSONError(.unexpectedEnd, at: index + 1, "input ends inside an escape") }
                let escaped = bytes[index + 1]
                index += 2
                switch escaped {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): scratch.append(escaped)
                case UInt8(ascii: "b"): scratch.append(0x08)
                case UInt8(ascii: "f"): scratch.append(0x0C)
                case UInt8(ascii: "n"): scratch.append(0x0A)
                case UInt8(ascii: "r"): scratch.append(0x0D)
                case UInt8(ascii: "t"): scratch.append(0x09)
                case UInt8(ascii: "u"):
                    let escapeStart = index - 2
                    var scalar = try readHex4(at: index)
                    index += 4
                    if (0xD800...0xDBFF).contains(scalar) {
                        guard index + 1 < bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") else {
                            throw JSONError(.invalidEscape, at: escapeStart, "high surrogate \\u\(hex(scalar)) without a following low surrogate")
                        }
                        let low = try readHex4(at: index + 2)
                        guard (0xDC00...0xDFFF).contains(low) else {
                            throw JSONError(.invalidEscape, at: index, "high surrogate \\u\(hex(scalar)) followed by \\u\(hex(low)), not a low surrogate")
                        }
                        index += 6
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00...0xDFFF).contains(scalar) {
                        throw JSONError(.invalidEscape, at: escapeStart, "unpaired low surrogate \\u\(hex(scalar))")
                    }
                    appendUTF8(scalar)
                default:
                    throw JSONError(.invalidEscape, at: index - 2, "unknown escape \\\(describeRaw(escaped))")
                }
            default:
                if byte < 0x20 {
                    throw JSONError(.controlCharacter, at: index, "unescaped control character \(describe(byte)) in a string")
                }
                scratch.append(byte)
                index += 1
            }
        }
        throw JSONError(.unexpectedEnd, at: index, "input ends inside a string")
    }

    private func readHex4(at index: Int) throws(JSONError) -> UInt32 {
        guard index + 4 <= bytes.count else { throw JSONError(.unexpectedEnd, at: bytes.count, "input ends inside a \\u escape") }
        var value: UInt32 = 0
        for offset in 0..<4 {
            let byte = bytes[index + offset]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw JSONError(.invalidEscape, at: index + offset, "\\u needs four hex digits, found \(describe(byte))")
            }
            value = value << 4 | UInt32(digit)
        }
        return value
    }

    private mutating func appendUTF8(_ scalar: UInt32) {
        switch scalar {
        case ..<0x80:
            scratch.append(UInt8(scalar))
        case ..<0x800:
            scratch.append(UInt8(0xC0 | scalar >> 6))
            scratch.append(UInt8(0x80 | scalar & 0x3F))
        case ..<0x10000:
            scratch.append(UInt8(0xE0 | scalar >> 12))
            scratch.append(UInt8(0x80 | scalar >> 6 & 0x3F))
            scratch.append(UInt8(0x80 | scalar & 0x3F))
        default:
            scratch.append(UInt8(0xF0 | scalar >> 18))
            scratch.append(UInt8(0x80 | scalar >> 12 & 0x3F))
            scratch.append(UInt8(0x80 | scalar >> 6 & 0x3F))
            scratch.append(UInt8(0x80 | scalar & 0x3F))
        }
    }

    // MARK: Numbers

    /// Parses `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    private mutating func parseNumber() throws(JSONError) -> JSONValue {
        let start = position
        var index = position
        let negative = bytes[index] == UInt8(ascii: "-")
        if negative { index += 1 }

        var mantissa: UInt64 = 0
        var significantDigits = 0
        var mantissaOverflow = false

        @inline(__always) func isDigit(_ i: Int) -> Bool {
            i < bytes.count && bytes[i] &- UInt8(ascii: "0") < 10
        }
        @inline(__always) func accumulate(_ digit: UInt8) {
            if mantissa == 0 && digit == 0 { return }
            if significantDigits < 19 {
                mantissa = mantissa &* 10 &+ UInt64(digit)
            } else {
                mantissaOverflow = true
            }
            significantDigits += 1
        }

        guard isDigit(index) else {
            if index < bytes.count {
                throw JSONError(.invalidNumber, at: index, "expected a digit, found \(describe(bytes[index]))")
            }
            throw JSONError(.unexpectedEnd, at: index, "input ends inside a number")
        }
        if bytes[index] == UInt8(ascii: "0") {
            index += 1
            if isDigit(index) { throw JSONError(.invalidNumber, at: start, "numbers must not have leading zeros") }
        } else {
            while isDigit(index) {
                accumulate(bytes[index] - UInt8(ascii: "0"))
                index += 1
            }
        }
        let integerDigits = significantDigits
        var fractionDigits = 0
        var isInteger = true
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            isInteger = false
            index += 1
            guard isDigit(index) else { throw JSONError(.invalidNumber, at: index, "expected a digit after the decimal point") }
            while isDigit(index) {
                accumulate(bytes[index] - UInt8(ascii: "0"))
                fractionDigits += 1
                index += 1
            }
        }
        var exponent = 0
        if index < bytes.count, bytes[index] | 0x20 == UInt8(ascii: "e") {
            isInteger = false
            index += 1
            var exponentNegative = false
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") {
                exponentNegative = bytes[index] == UInt8(ascii: "-")
                index += 1
            }
            guard isDigit(index) else { throw JSONError(.invalidNumber, at: index, "expected a digit in the exponent") }
            while isDigit(index) {
                if exponent < 100_000 { exponent = exponent * 10 + Int(bytes[index] - UInt8(ascii: "0")) }
                index += 1
            }
            if exponentNegative { exponent = -exponent }
        }
        position = index

        if isInteger && !mantissaOverflow && integerDigits <= 19 {
            if negative {
                if mantissa <= UInt64(Int64.max) + 1 { return .int(mantissa == UInt64(Int64.max) + 1 ? Int64.min : -Int64(mantissa)) }
            } else if mantissa <= UInt64(Int64.max) {
                return .int(Int64(mantissa))
            }
        }
        // Clinger's fast path: an exact mantissa and a small power of ten give the correctly rounded result.
        let scale = exponent - fractionDigits
        if !mantissaOverflow && mantissa < (1 << 53) && scale >= -22 && scale <= 22 {
            var value = Double(mantissa)
            value = scale < 0 ? value / powersOfTen[-scale] : value * powersOfTen[scale]
            return .double(negative ? -value : value)
        }
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
        guard let value = Double(text), value.isFinite else {
            throw JSONError(.numberOutOfRange, at: start, "number \(text) is too large for a double")
        }
        return .double(value)
    }

    // MARK: Helpers

    @inline(__always)
    private func keyPrefix(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        if bytes.count >= 8 { return UInt64(bigEndian: bytes.loadUnaligned(as: UInt64.self)) }
        var prefix: UInt64 = 0
        let count = bytes.count
        for index in 0..<count { prefix |= UInt64(bytes[index]) << (56 - 8 * index) }
        return prefix
    }

    @inline(__always)
    private mutating func skipWhitespace() {
        while position < bytes.count {
            switch bytes[position] {
            case 0x20, 0x0A, 0x0D, 0x09: position += 1
            default: return
            }
        }
    }

    private func describe(_ byte: UInt8) -> String {
        if byte >= 0x21 && byte < 0x7F { return "`\(Character(Unicode.Scalar(byte)))`" }
        return "byte 0x\(hex(UInt32(byte), width: 2))"
    }

    private func describeRaw(_ byte: UInt8) -> String {
        byte >= 0x21 && byte < 0x7F ? String(Character(Unicode.Scalar(byte))) : "(0x\(hex(UInt32(byte), width: 2)))"
    }

    private func hex(_ value: UInt32, width: Int = 4) -> String {
        let digits = String(value, radix: 16, uppercase: true)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }
}

/// The high bit of each of eight bytes (little-endian order) that may be `"`, `\`, a control character or
/// non-ASCII: zero exactly when none is, and the lowest set bit always marks the first such byte.
@inline(__always)
func attentionMask(_ word: UInt64) -> UInt64 {
    let ones: UInt64 = 0x0101_0101_0101_0101
    let highs: UInt64 = 0x8080_8080_8080_8080
    let quote = word ^ (ones &* 0x22)
    let backslash = word ^ (ones &* 0x5C)
    let hasQuote = (quote &- ones) & ~quote
    let hasBackslash = (backslash &- ones) & ~backslash
    let hasControl = (word &- ones &* 0x20) & ~word
    return (hasQuote | hasBackslash | hasControl | word) & highs
}

/// Exactly representable powers of ten used by the number fast path.
private let powersOfTen: [Double] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
]
