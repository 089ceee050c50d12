import Contracts
import Foundation

/// Number and time formatting for human output.
public enum Format {
    /// `135936` → `135,936`.
    public static func count(_ value: Int) -> String {
        let digits = String(value.magnitude)
        var result = ""
        for (index, character) in digits.enumerated() {
            if index > 0, (digits.count - index) % 3 == 0 { result.append(",") }
            result.append(character)
        }
        return value < 0 ? "-" + result : result
    }

    /// Seconds as `850ms`, `12.3s`, `4m05s`, `2h03m`.
    public static func duration(_ seconds: Double) -> String {
        guard seconds.isFinite else { return "-" }
        if seconds < 1 { return "\(Int((seconds * 1000).rounded()))ms" }
        if seconds < 60 { return String(format: "%.1fs", seconds) }
        let whole = Int(seconds.rounded())
        if whole < 3600 { return String(format: "%dm%02ds", whole / 60, whole % 60) }
        return String(format: "%dh%02dm", whole / 3600, whole / 60 % 60)
    }

    /// A number with `digits` decimals, or `-` for `nil` / non-finite values.
    public static func number(_ value: Double?, _ digits: Int = 3) -> String {
        guard let value, value.isFinite else { return "-" }
        return String(format: "%.\(digits)f", value)
    }

    /// A share as a percentage: `0.0123` → `1.23%`.
    public static func percent(_ value: Double?, _ digits: Int = 2) -> String {
        guard let value, value.isFinite else { return "-" }
        return String(format: "%.\(digits)f%%", value * 100)
    }

    /// Milliseconds since the epoch as an RFC 3339 UTC time.
    public static func time(ms: Int64) -> String {
        let seconds = ms >= 0 ? ms / 1000 : (ms - 999) / 1000
        return Timestamp(seconds: seconds, nanoseconds: Int32((ms - seconds * 1000) * 1_000_000)).text
    }

    /// Pads rows of cells into aligned columns separated by two spaces.
    public static func table(_ rows: [[String]]) -> String {
        guard let width = rows.map(\.count).max() else { return "" }
        var widths = Array(repeating: 0, count: width)
        for row in rows { for (index, cell) in row.enumerated() { widths[index] = max(widths[index], cell.count) } }
        return rows.map { row in
            row.enumerated().map { index, cell in
                index == row.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }
}
