import Foundation

/// Why a string is not an RFC 3339 timestamp.
public struct TimestampError: Error, Sendable, Hashable {
    /// What is wrong, e.g. `month 13 is out of range`.
    public var message: String
}

/// An instant written as an RFC 3339 `date-time` (`2018-04-05T17:31:00Z`, `…T19:31:00.123+02:00`).
///
/// Parsing is strict (full date, time, seconds and offset; real calendar days; no spaces) and keeps
/// both the text as written and the instant. Equality, hashing and ordering use the instant only.
public struct Timestamp: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The RFC 3339 text, as received or as formatted.
    public let text: String
    /// Whole seconds since 1970-01-01T00:00:00Z.
    public let seconds: Int64
    /// Nanoseconds past ``seconds`` (0…999 999 999; finer fractions are truncated).
    public let nanoseconds: Int32

    /// Parses an RFC 3339 `date-time`.
    public init(rfc3339 text: String) throws(TimestampError) {
        (seconds, nanoseconds) = try Timestamp.parse(Array(text.utf8))
        self.text = text
    }

    /// The instant of the RFC 3339 text in `bytes`, in milliseconds since the epoch (rounded down),
    /// parsed as strictly as ``init(rfc3339:)`` but without keeping the text: for hot paths that
    /// need only the instant.
    public static func epochMilliseconds(rfc3339 bytes: [UInt8]) throws(TimestampError) -> Int64 {
        let (seconds, nanoseconds) = try parse(bytes)
        return seconds * 1000 + Int64(nanoseconds / 1_000_000)
    }

    /// The instant of the RFC 3339 text in `bytes`, in seconds since the epoch with its fraction,
    /// parsed as strictly as ``init(rfc3339:)`` but without keeping the text.
    public static func epochSeconds(rfc3339 bytes: [UInt8]) throws(TimestampError) -> Double {
        let (seconds, nanoseconds) = try parse(bytes)
        return Double(seconds) + Double(nanoseconds) / 1e9
    }

    /// The instant `seconds` + `nanoseconds` after the epoch, written in UTC with `Z`.
    public init(seconds: Int64, nanoseconds: Int32 = 0) {
        let carry = Int64(nanoseconds) / 1_000_000_000
        var nanos = Int64(nanoseconds) % 1_000_000_000
        var whole = seconds + carry
        if nanos < 0 {
            nanos += 1_000_000_000
            whole -= 1
        }
        self.seconds = whole
        self.nanoseconds = Int32(nanos)
        self.text = Timestamp.format(seconds: whole, nanoseconds: Int32(nanos))
    }

    /// The instant of `date`, to the microsecond, written in UTC.
    public init(date: Date) {
        let micros = (date.timeIntervalSince1970 * 1_000_000).rounded()
        let whole = (micros / 1_000_000).rounded(.down)
        self.init(seconds: Int64(whole), nanoseconds: Int32((micros - whole * 1_000_000) * 1000))
    }

    /// The instant as a `Date` (sub-microsecond precision may be lost).
    public var date: Date { Date(timeIntervalSince1970: Double(seconds) + Double(nanoseconds) / 1e9) }

    /// Milliseconds since the epoch, rounded down.
    public var epochMilliseconds: Int64 { seconds * 1000 + Int64(nanoseconds / 1_000_000) }

    public var description: String { text }

    public static func == (lhs: Timestamp, rhs: Timestamp) -> Bool {
        lhs.seconds == rhs.seconds && lhs.nanoseconds == rhs.nanoseconds
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(seconds)
        hasher.combine(nanoseconds)
    }

    public static func < (lhs: Timestamp, rhs: Timestamp) -> Bool {
        (lhs.seconds, lhs.nanoseconds) < (rhs.seconds, rhs.nanoseconds)
    }

    // MARK: Parsing

    /// `full-date "T" partial-time time-offset`, RFC 3339 §5.6 (`T` and `Z` in either case).
    private static func parse(_ bytes: [UInt8]) throws(TimestampError) -> (Int64, Int32) {
        var index = 0
        // Hot paths read a time per event: the helpers only read bytes; error text is made on a throw.
        func digits(_ count: Int, _ what: StaticString) throws(TimestampError) -> Int {
            guard let value = Self.digits(bytes, at: index, count: count) else {
                var bad = index
                while bad < bytes.count, bytes[bad] &- 0x30 < 10 { bad += 1 }
                throw TimestampError(message: "expected \(count) digits for the \(what) at character \(bad + 1)")
            }
            index += count
            return value
        }
        func expect(_ character: UInt8, or other: UInt8? = nil, _ what: StaticString) throws(TimestampError) {
            guard index < bytes.count, bytes[index] == character || bytes[index] == other else {
                throw TimestampError(message: "expected \(what) at character \(index + 1)")
            }
            index += 1
        }

        let year = try digits(4, "year")
        try expect(UInt8(ascii: "-"), "`-` after the year")
        let month = try digits(2, "month")
        try expect(UInt8(ascii: "-"), "`-` after the month")
        let day = try digits(2, "day")
        try expect(UInt8(ascii: "T"), or: UInt8(ascii: "t"), "`T` between date and time")
        let hour = try digits(2, "hour")
        try expect(UInt8(ascii: ":"), "`:` after the hour")
        let minute = try digits(2, "minute")
        try expect(UInt8(ascii: ":"), "`:` after the minute")
        let second = try digits(2, "second")
        var nanos = 0
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            var count = 0
            while index < bytes.count, bytes[index] >= 0x30, bytes[index] <= 0x39 {
                if count < 9 { nanos = nanos * 10 + Int(bytes[index] - 0x30) }
                count += 1
                index += 1
            }
            guard count > 0 else { throw TimestampError(message: "expected digits after the decimal point") }
            for _ in min(count, 9)..<9 { nanos *= 10 }
        }
        var offset = 0
        guard index < bytes.count else { throw TimestampError(message: "missing time offset (`Z` or `±hh:mm`)") }
        switch bytes[index] {
        case UInt8(ascii: "Z"), UInt8(ascii: "z"):
            index += 1
        case UInt8(ascii: "+"), UInt8(ascii: "-"):
            let sign = bytes[index] == UInt8(ascii: "-") ? -1 : 1
            index += 1
            let offsetHour = try digits(2, "offset hour")
            try expect(UInt8(ascii: ":"), "`:` in the offset")
            let offsetMinute = try digits(2, "offset minute")
            guard offsetHour <= 23, offsetMinute <= 59 else { throw TimestampError(message: "offset \(offsetHour):\(offsetMinute) is out of range") }
            offset = sign * (offsetHour * 3600 + offsetMinute * 60)
        default:
            throw TimestampError(message: "expected a time offset (`Z` or `±hh:mm`) at character \(index + 1)")
        }
        guard index == bytes.count else { throw TimestampError(message: "unexpected text after the time offset") }
        guard (1...12).contains(month) else { throw TimestampError(message: "month \(month) is out of range") }
        guard day >= 1, day <= daysIn(month: month, year: year) else {
            throw TimestampError(message: "day \(day) does not exist in \(year)-\(month < 10 ? "0" : "")\(month)")
        }
        guard hour <= 23 else { throw TimestampError(message: "hour \(hour) is out of range") }
        guard minute <= 59 else { throw TimestampError(message: "minute \(minute) is out of range") }
        guard second <= 60 else { throw TimestampError(message: "second \(second) is out of range") }
        let days = daysFromCivil(year: year, month: month, day: day)
        // A leap second (:60) is the instant after :59.
        let total = Int64(days) * 86_400 + Int64(hour * 3600 + minute * 60 + second) - Int64(offset)
        return (total, Int32(nanos))
    }

    /// The decimal number in `count` digits at `index`, or `nil` if a byte there is not a digit.
    private static func digits(_ bytes: [UInt8], at index: Int, count: Int) -> Int? {
        guard index + count <= bytes.count else { return nil }
        var value = 0
        for position in index..<(index + count) {
            let digit = bytes[position] &- 0x30
            guard digit < 10 else { return nil }
            value = value * 10 + Int(digit)
        }
        return value
    }

    private static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
    private static func daysFromCivil(year: Int, month: Int, day: Int) -> Int {
        let shiftedYear = month <= 2 ? year - 1 : year
        let era = (shiftedYear >= 0 ? shiftedYear : shiftedYear - 399) / 400
        let yearOfEra = shiftedYear - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    // MARK: Formatting

    /// `YYYY-MM-DDTHH:MM:SS[.fraction]Z` with the fraction's trailing zeros dropped.
    static func format(seconds: Int64, nanoseconds: Int32) -> String {
        let days = Int(seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400)
        let secondOfDay = Int(seconds - Int64(days) * 86_400)
        let (year, month, day) = civilFromDays(days)
        func pad(_ value: Int, _ width: Int) -> String {
            let digits = String(value)
            return String(repeating: "0", count: max(0, width - digits.count)) + digits
        }
        var text = "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2))T\(pad(secondOfDay / 3600, 2)):\(pad(secondOfDay / 60 % 60, 2)):\(pad(secondOfDay % 60, 2))"
        if nanoseconds > 0 {
            var fraction = pad(Int(nanoseconds), 9)
            while fraction.hasSuffix("0") { fraction.removeLast() }
            text += "." + fraction
        }
        return text + "Z"
    }

    private static func civilFromDays(_ days: Int) -> (Int, Int, Int) {
        let shifted = days + 719_468
        let era = (shifted >= 0 ? shifted : shifted - 146_096) / 146_097
        let dayOfEra = shifted - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthIndex + 2) / 5 + 1
        let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }
}
