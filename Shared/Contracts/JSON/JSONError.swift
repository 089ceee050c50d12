/// Why a byte sequence is not the JSON text the parser accepts (strict RFC 8259).
public struct JSONError: Error, Sendable, Hashable, CustomStringConvertible {
    /// A stable reason code.
    public enum Reason: String, Sendable, Hashable {
        /// The input ended inside a value.
        case unexpectedEnd = "unexpected_end"
        /// A byte that cannot start or continue a value here.
        case unexpectedByte = "unexpected_byte"
        /// A number that does not follow the JSON grammar (leading zeros, `1.`, `.5`, `+1`, …).
        case invalidNumber = "invalid_number"
        /// A number too large for a `Double`.
        case numberOutOfRange = "number_out_of_range"
        /// An unknown escape, a bad `\u` sequence or an unpaired surrogate.
        case invalidEscape = "invalid_escape"
        /// An unescaped control character (U+0000–U+001F) inside a string.
        case controlCharacter = "control_character"
        /// A string that is not valid UTF-8.
        case invalidUTF8 = "invalid_utf8"
        /// An object with the same key twice.
        case duplicateKey = "duplicate_key"
        /// Arrays and objects nested deeper than the limit.
        case depthLimitExceeded = "depth_limit_exceeded"
        /// Something other than whitespace after the value.
        case trailingData = "trailing_data"
    }

    /// The stable reason code.
    public var reason: Reason
    /// The byte offset in the input where the problem was found.
    public var offset: Int
    /// A human explanation.
    public var message: String

    public init(_ reason: Reason, at offset: Int, _ message: String) {
        self.reason = reason
        self.offset = offset
        self.message = message
    }

    /// Bad input stays bad: retrying cannot help.
    public var isRetryable: Bool { false }

    public var description: String { "invalid JSON at byte \(offset): \(message) (\(reason.rawValue))" }
}
