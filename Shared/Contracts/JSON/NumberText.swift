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
        exactDecimal(bytes) ?? parsedByC(bytes)
    }

    /// Reads the JSON number that starts at `start` in `bytes` in one pass: where it ends and its
    /// value (the double ``double(_:)`` gives for the same text), or `nil` when the bytes there do
    /// not follow JSON's number grammar.
    @inlinable
    public static func read(_ bytes: UnsafeRawBufferPointer, at start: Int) -> (end: Int, value: Double)? {
        guard let digits = DecimalDigits(bytes, at: start) else { return nil }
        let value = digits.exactValue ?? parsedByC(UnsafeRawBufferPointer(rebasing: bytes[start..<digits.end]))
        return (digits.end, value)
    }

    /// The value of a JSON number whose digits, read as an integer, are at most 2^53 and whose
    /// decimal exponent is within ±22, or `nil` for any other. Both the integer and the power of
    /// ten are then exact doubles, so one multiplication or division rounds correctly: the same
    /// double as strtod (Clinger's fast path).
    @inlinable
    public static func exactDecimal(_ bytes: UnsafeRawBufferPointer) -> Double? {
        guard let digits = DecimalDigits(bytes, at: 0), digits.end == bytes.count else { return nil }
        return digits.exactValue
    }

    /// strtod's double for `bytes`, read from a NUL-terminated copy on the stack.
    @inlinable
    static func parsedByC(_ bytes: UnsafeRawBufferPointer) -> Double {
        withUnsafeTemporaryAllocation(of: CChar.self, capacity: bytes.count + 1) { text in
            UnsafeMutableRawBufferPointer(text).copyMemory(from: bytes)
            text[bytes.count] = 0
            return strtod(text.baseAddress!, nil)
        }
    }

    /// Powers of ten a `Double` holds exactly.
    @usableFromInline
    static let exactPowersOfTen: [Double] = (0...22).map { power in (0..<power).reduce(1.0) { value, _ in value * 10 } }

    /// A JSON number's end and decimal digits, gathered while its grammar is checked.
    @usableFromInline
    struct DecimalDigits {
        /// Where the number's text ends.
        @usableFromInline var end: Int
        @usableFromInline var negative = false
        /// The significant digits as an integer, while there are at most 16 of them.
        @usableFromInline var mantissa: UInt64 = 0
        @usableFromInline var significant = 0
        /// The power of ten that scales `mantissa` (fraction digits and the exponent).
        @usableFromInline var exponent = 0
        /// Whether the exponent was written with more than three digits' worth (beyond ±400).
        @usableFromInline var hugeExponent = false

        /// The digits of the number at `start`, or `nil` if the bytes there are not a JSON number
        /// (`-`, then `0` or a digit run not starting with `0`, an optional fraction and exponent).
        @inlinable
        init?(_ bytes: UnsafeRawBufferPointer, at start: Int) {
            @inline(__always) func digit(_ position: Int) -> UInt8? {
                guard position < bytes.count else { return nil }
                let value = bytes[position] &- UInt8(ascii: "0")
                return value < 10 ? value : nil
            }
            end = start
            if end < bytes.count, bytes[end] == UInt8(ascii: "-") {
                negative = true
                end += 1
            }
            let integer = end
            while let value = digit(end) {
                gather(value, fraction: false)
                end += 1
            }
            guard end > integer, bytes[integer] != UInt8(ascii: "0") || end - integer == 1 else { return nil }
            if end < bytes.count, bytes[end] == UInt8(ascii: ".") {
                end += 1
                let fraction = end
                while let value = digit(end) {
                    gather(value, fraction: true)
                    end += 1
                }
                guard end > fraction else { return nil }
            }
            if end < bytes.count, bytes[end] == UInt8(ascii: "e") || bytes[end] == UInt8(ascii: "E") {
                end += 1
                var sign = 1
                if end < bytes.count, bytes[end] == UInt8(ascii: "-") || bytes[end] == UInt8(ascii: "+") {
                    if bytes[end] == UInt8(ascii: "-") { sign = -1 }
                    end += 1
                }
                let digits = end
                var value = 0
                while let next = digit(end) {
                    if value <= 400 { value = value * 10 + Int(next) } else { hugeExponent = true }
                    end += 1
                }
                guard end > digits else { return nil }
                if value > 400 { hugeExponent = true }
                exponent += sign * value
            }
        }

        @inlinable
        mutating func gather(_ value: UInt8, fraction: Bool) {
            if mantissa > 0 || value != 0 { significant += 1 }
            guard significant <= 16 else { return }
            mantissa = mantissa * 10 + UInt64(value)
            if fraction { exponent -= 1 }
        }

        /// The correctly rounded value when exact decimal arithmetic gives it, else `nil`.
        @inlinable
        var exactValue: Double? {
            guard significant <= 16, !hugeExponent, mantissa <= 1 << 53, (-22...22).contains(exponent) else { return nil }
            let magnitude = exponent < 0
                ? Double(mantissa) / exactPowersOfTen[-exponent] : Double(mantissa) * exactPowersOfTen[exponent]
            return negative ? -magnitude : magnitude
        }
    }
}
