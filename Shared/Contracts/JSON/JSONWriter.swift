// MARK: - Canonical writing

extension JSONValue {
    /// The canonical JSON text of this value: object keys sorted by UTF-8 bytes, no whitespace,
    /// integers as digits, doubles in the shortest form that reads back to the same `Double`,
    /// strings with only `"`, `\` and control characters escaped. Equal values give equal bytes.
    public func canonicalBytes() -> [UInt8] {
        var writer = CanonicalWriter()
        defer { writer.release() }
        writer.write(self)
        return writer.bytes()
    }

    /// The canonical JSON text as a `String`; see ``canonicalBytes()``.
    public var canonicalString: String {
        String(decoding: canonicalBytes(), as: UTF8.self)
    }

    /// Appends the canonical JSON text of this value to `output`.
    public func writeCanonical(into output: inout [UInt8]) {
        var writer = CanonicalWriter()
        defer { writer.release() }
        writer.write(self)
        writer.append(to: &output)
    }
}

/// Writes canonical JSON into a growable raw buffer: one allocation per document, no per-value
/// uniqueness checks. Owns its memory; the caller calls ``release()``.
struct CanonicalWriter {
    private var base: UnsafeMutableRawPointer
    private var capacity: Int
    private var count = 0

    init(capacity: Int = 512) {
        self.capacity = capacity
        base = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 8)
    }

    func release() { base.deallocate() }

    func bytes() -> [UInt8] { Array(UnsafeRawBufferPointer(start: base, count: count)) }

    func append(to output: inout [UInt8]) { output.append(contentsOf: UnsafeRawBufferPointer(start: base, count: count)) }

    @inline(__always)
    private mutating func reserve(_ extra: Int) {
        guard count + extra > capacity else { return }
        let newCapacity = max(capacity * 2, count + extra)
        let grown = UnsafeMutableRawPointer.allocate(byteCount: newCapacity, alignment: 8)
        grown.copyMemory(from: base, byteCount: count)
        base.deallocate()
        base = grown
        capacity = newCapacity
    }

    @inline(__always)
    private mutating func byte(_ value: UInt8) {
        reserve(1)
        base.storeBytes(of: value, toByteOffset: count, as: UInt8.self)
        count += 1
    }

    @inline(__always)
    private mutating func raw(_ bytes: UnsafeRawBufferPointer) {
        guard let source = bytes.baseAddress, bytes.count > 0 else { return }
        reserve(bytes.count)
        (base + count).copyMemory(from: source, byteCount: bytes.count)
        count += bytes.count
    }

    mutating func write(_ value: JSONValue) {
        switch value {
        case .null: literal("null")
        case .bool(let flag): flag ? literal("true") : literal("false")
        case .int(let number): integer(number)
        case .double(let number): double(number)
        case .string(let text): string(text)
        case .array(let elements):
            byte(UInt8(ascii: "["))
            var first = true
            for element in elements {
                if !first { byte(UInt8(ascii: ",")) }
                first = false
                write(element)
            }
            byte(UInt8(ascii: "]"))
        case .object(let object):
            byte(UInt8(ascii: "{"))
            var first = true
            for member in object.members {
                if !first { byte(UInt8(ascii: ",")) }
                first = false
                string(member.key)
                byte(UInt8(ascii: ":"))
                write(member.value)
            }
            byte(UInt8(ascii: "}"))
        }
    }

    private mutating func literal(_ text: StaticString) {
        raw(UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    /// The decimal digits of `value`.
    private mutating func integer(_ value: Int64) {
        reserve(20)
        var magnitude = value.magnitude
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)
        let length = withUnsafeMutableBytes(of: &digits) { scratch -> Int in
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
            (base + count).copyMemory(from: scratch.baseAddress! + index, byteCount: scratch.count - index)
            return scratch.count - index
        }
        count += length
    }

    /// The shortest text that reads back to `value` (`null` for NaN and infinities); see ``DoubleText``.
    private mutating func double(_ value: Double) {
        guard value.isFinite else { return literal("null") }
        var sink = Sink(writer: self)
        value.write(to: &sink)
        self = sink.writer
    }

    /// Takes the ASCII text a `Double` writes of itself as bytes (no `String` is made).
    private struct Sink: TextOutputStream {
        var writer: CanonicalWriter
        mutating func write(_ string: String) { for unit in string.utf8 { writer.byte(unit) } }
        mutating func _writeASCII(_ buffer: UnsafeBufferPointer<UInt8>) { writer.raw(UnsafeRawBufferPointer(buffer)) }
    }

    /// `value` as a JSON string.
    private mutating func string(_ value: String) {
        if let done: Void = value.utf8.withContiguousStorageIfAvailable({ escaped(UnsafeRawBufferPointer($0)) }) { return done }
        var copy = value
        copy.withUTF8 { escaped(UnsafeRawBufferPointer($0)) }
    }

    private mutating func escaped(_ utf8: UnsafeRawBufferPointer) {
        byte(UInt8(ascii: "\""))
        var runStart = 0
        var index = 0
        while index < utf8.count {
            if index + 8 <= utf8.count {
                let mask = escapeMask(UInt64(littleEndian: utf8.loadUnaligned(fromByteOffset: index, as: UInt64.self)))
                if mask == 0 {
                    index += 8
                    continue
                }
                index += mask.trailingZeroBitCount >> 3
            }
            let unit = utf8[index]
            index += 1
            guard unit < 0x20 || unit == UInt8(ascii: "\"") || unit == UInt8(ascii: "\\") else { continue }
            raw(UnsafeRawBufferPointer(rebasing: utf8[runStart..<index - 1]))
            runStart = index
            byte(UInt8(ascii: "\\"))
            switch unit {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"): byte(unit)
            case 0x08: byte(UInt8(ascii: "b"))
            case 0x09: byte(UInt8(ascii: "t"))
            case 0x0A: byte(UInt8(ascii: "n"))
            case 0x0C: byte(UInt8(ascii: "f"))
            case 0x0D: byte(UInt8(ascii: "r"))
            default:
                literal("u00")
                byte(hexDigit(unit >> 4))
                byte(hexDigit(unit & 0xF))
            }
        }
        raw(UnsafeRawBufferPointer(rebasing: utf8[runStart...]))
        byte(UInt8(ascii: "\""))
    }

    private func hexDigit(_ nibble: UInt8) -> UInt8 {
        nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "a") + nibble - 10
    }
}

/// The high bit of each of eight bytes (little-endian order) that may be `"`, `\` or a control
/// character: zero exactly when none is, and the lowest set bit always marks the first such byte.
@inline(__always)
private func escapeMask(_ word: UInt64) -> UInt64 {
    let ones: UInt64 = 0x0101_0101_0101_0101
    let quote = word ^ (ones &* 0x22)
    let backslash = word ^ (ones &* 0x5C)
    let hasQuote = (quote &- ones) & ~quote
    let hasBackslash = (backslash &- ones) & ~backslash
    let hasControl = (word &- ones &* 0x20) & ~word
    return (hasQuote | hasBackslash | hasControl) & 0x8080_8080_8080_8080
}
