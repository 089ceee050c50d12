#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads the text of a JSON number as a correctly rounded `Double` straight from bytes, without
/// making a `String`: the reading counterpart of ``DoubleText`` for hot decoders (feature values,
/// scores) that read thousands of numbers per batch.
public enum NumberText {
    /// The value of `bytes`, which must follow JSON's number grammar (scanners check it as they
    /// find the number's end): exact decimal arithmetic when that is correctly rounded
    /// (``exactDecimal(_:)``), else strtod on a NUL-terminated copy on the stack. Out-of-range
    /// magnitudes read as infinities or zero, as with strtod.
    @inlinable
    public static func double(_ bytes: UnsafeRawBufferPointer) -> Double {
        if let exact = exactDecimal(bytes) { return exact }
        return withUnsafeTemporaryAllocation(of: CChar.self, capacity: bytes.count + 1) { text in
            UnsafeMutableRawBufferPointer(text).copyMemory(from: bytes)
            text[bytes.count] = 0
            return strtod(text.baseAddress!, nil)
        }
    }

    /// Powers of ten a `Double` holds exactly.
    @usableFromInline
    static let exactPowersOfTen: [Double] = (0...22).map { power in (0..<power).reduce(1.0) { value, _ in value * 10 } }

    /// The value of a JSON number whose digits, read as an integer, are at most 2^53 and whose
    /// decimal exponent is within ±22, or `nil` for any other. Both the integer and the power of
    /// ten are then exact doubles, so one multiplication or division rounds correctly: the same
    /// double as strtod (Clinger's fast path).
    @inlinable
    public static func exactDecimal(_ bytes: UnsafeRawBufferPointer) -> Double? {
        guard !bytes.isEmpty else { return nil }
        var position = 0
        let negative = bytes[0] == UInt8(ascii: "-")
        if negative { position = 1 }
        var mantissa: UInt64 = 0
        var digits = 0
        var exponent = 0
        var inFraction = false
        while position < bytes.count {
            let byte = bytes[position]
            if byte == UInt8(ascii: ".") {
                inFraction = true
            } else if byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") {
                if mantissa > 0 || byte != UInt8(ascii: "0") { digits += 1 }
                guard digits <= 16 else { return nil }
                mantissa = mantissa * 10 + UInt64(byte - UInt8(ascii: "0"))
                if inFraction { exponent -= 1 }
            } else {
                break
            }
            position += 1
        }
        if position < bytes.count {
            // An exponent: `e`, an optional sign and digits (the grammar was checked).
            position += 1
            var sign = 1
            if bytes[position] == UInt8(ascii: "-") || bytes[position] == UInt8(ascii: "+") {
                if bytes[position] == UInt8(ascii: "-") { sign = -1 }
                position += 1
            }
            var value = 0
            while position < bytes.count {
                value = value * 10 + Int(bytes[position] - UInt8(ascii: "0"))
                guard value <= 400 else { return nil }
                position += 1
            }
            exponent += sign * value
        }
        guard mantissa <= 1 << 53, (-22...22).contains(exponent) else { return nil }
        let magnitude = exponent < 0
            ? Double(mantissa) / exactPowersOfTen[-exponent] : Double(mantissa) * exactPowersOfTen[exponent]
        return negative ? -magnitude : magnitude
    }
}
