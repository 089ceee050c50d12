/// Minimal JSON text writing for log lines and error bodies: fast, allocation-light and with a
/// stable key order, which `JSONEncoder` does not give.
enum JSONText {
    /// `text` as a quoted JSON string.
    static func quote(_ text: String) -> String {
        var output = "\""
        append(text, to: &output)
        output += "\""
        return output
    }

    /// Appends `text` escaped for the inside of a JSON string.
    static func append(_ text: String, to output: inout String) {
        var needsEscaping = false
        for byte in text.utf8 where byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") {
            needsEscaping = true
            break
        }
        guard needsEscaping else {
            output += text
            return
        }
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": output += "\\\""
            case "\\": output += "\\\\"
            case "\n": output += "\\n"
            case "\r": output += "\\r"
            case "\t": output += "\\t"
            case let control where control.value < 0x20:
                let hex = String(control.value, radix: 16)
                output += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: output.unicodeScalars.append(scalar)
            }
        }
    }
}
