/// The `loop.yaml` spelling of time spans: a whole number and a unit, `s`, `m`, `h`, `d` or `w`.
enum TimeSpanFormat {
    /// Units from largest to smallest, with their length in seconds.
    static let units: [(suffix: Character, seconds: Double)] = [
        ("w", 604_800), ("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1),
    ]

    /// Parses `30s`, `30m`, `1h`, `24h`, `7d`, `2w` (a non-negative whole number, then the unit).
    static func parse(_ text: String) -> TimeSpan? {
        guard let suffix = text.last, let unit = units.first(where: { $0.suffix == suffix }) else { return nil }
        let digits = text.dropLast()
        guard !digits.isEmpty, digits.count <= 12, digits.allSatisfy({ $0.isASCII && $0.isNumber }), let count = Double(digits) else {
            return nil
        }
        return TimeSpan(seconds: count * unit.seconds)
    }

    /// The shortest exact spelling: the largest unit that divides the span (`86400s` → `1d`,
    /// `7d` → `1w`, `90m` → `90m`). Spans with a fraction of a second are written in seconds.
    static func format(_ span: TimeSpan) -> String {
        let seconds = span.seconds
        guard seconds.isFinite, seconds >= 0, seconds == seconds.rounded(), seconds < 1e15 else { return "\(seconds)s" }
        if seconds == 0 { return "0s" }
        for unit in units where seconds.truncatingRemainder(dividingBy: unit.seconds) == 0 {
            return "\(Int64(seconds / unit.seconds))\(unit.suffix)"
        }
        return "\(Int64(seconds))s"
    }
}

extension TimeSpan: LosslessStringConvertible {
    /// Parses the `loop.yaml` spelling: a whole number and `s`, `m`, `h`, `d` or `w` (`30s`, `24h`, `2w`).
    public init?(_ description: String) {
        guard let span = TimeSpanFormat.parse(description) else { return nil }
        self = span
    }

    /// A span of `count` hours, days, … for code that builds configs.
    public static func minutes(_ count: Double) -> TimeSpan { TimeSpan(seconds: count * 60) }
    public static func hours(_ count: Double) -> TimeSpan { TimeSpan(seconds: count * 3_600) }
    public static func days(_ count: Double) -> TimeSpan { TimeSpan(seconds: count * 86_400) }
}
