/// The shortest text that reads back to the same `Double` (what `Double.description` gives: `1.0`,
/// `0.1`, `1e-07`, `1e+16`, `-0.0`), appended straight to a byte buffer without making a `String`
/// per number. Hot writers (canonical JSON, prediction records) format thousands of doubles per batch.
public enum DoubleText {
    /// Appends the text of `value` to `output`; NaN and infinities as `null` (JSON has no other form).
    @inlinable
    public static func appendJSON(_ value: Double, to output: inout [UInt8]) {
        guard value.isFinite else {
            output.append(contentsOf: [0x6E, 0x75, 0x6C, 0x6C])
            return
        }
        var sink = ByteSink(bytes: output)
        output = []
        value.write(to: &sink)
        output = sink.bytes
    }

    /// Receives the ASCII text a `Double` writes of itself; the standard library hands it over as
    /// bytes (`_writeASCII`), so no `String` is made.
    @usableFromInline
    struct ByteSink: TextOutputStream {
        @usableFromInline var bytes: [UInt8]

        @inlinable init(bytes: [UInt8]) { self.bytes = bytes }

        @inlinable mutating func write(_ string: String) { bytes.append(contentsOf: string.utf8) }

        @inlinable mutating func _writeASCII(_ buffer: UnsafeBufferPointer<UInt8>) { bytes.append(contentsOf: buffer) }
    }
}
