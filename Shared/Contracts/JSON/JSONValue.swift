// MARK: - JSONValue

/// A JSON value (RFC 8259) as the services pass it around: small, `Sendable` and fast to parse and write.
///
/// Numbers keep integers and fractions apart: a literal without fraction or exponent that fits in
/// `Int64` is ``int(_:)`` and round-trips exactly; every other number is ``double(_:)``. Objects keep
/// their members sorted by key (UTF-8 byte order) with unique keys, which is the order
/// ``canonicalBytes()`` writes.
public enum JSONValue: Sendable, Hashable {
    case null
    case bool(Bool)
    /// An integer literal that fits in `Int64` (`-0` reads as `0`).
    case int(Int64)
    /// Any other number. Non-finite values cannot come from parsing; the writer writes them as `null`.
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)
}

extension JSONValue {
    /// The string, if this is a string.
    public var stringValue: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    /// The number as a `Double`, if this is a number.
    public var doubleValue: Double? {
        switch self {
        case .int(let value): Double(value)
        case .double(let value): value
        default: nil
        }
    }

    /// The number as an `Int64`, if this is an integer (or a double with an exact integer value).
    public var int64Value: Int64? {
        switch self {
        case .int(let value): return value
        case .double(let value):
            guard value.rounded(.towardZero) == value, let exact = Int64(exactly: value) else { return nil }
            return exact
        default: return nil
        }
    }

    /// The boolean, if this is a boolean.
    public var boolValue: Bool? {
        if case .bool(let value) = self { return value }
        return nil
    }

    /// The object, if this is an object.
    public var objectValue: JSONObject? {
        if case .object(let value) = self { return value }
        return nil
    }

    /// The elements, if this is an array.
    public var arrayValue: [JSONValue]? {
        if case .array(let value) = self { return value }
        return nil
    }

    /// Whether this is `null`.
    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }

    /// The member `key` of an object; `nil` for a missing key or a non-object.
    public subscript(key: String) -> JSONValue? {
        objectValue?[key]
    }

    /// The JSON type's name as error messages say it (`string`, `number`, `object`, …).
    public var typeName: String {
        switch self {
        case .null: "null"
        case .bool: "boolean"
        case .int, .double: "number"
        case .string: "string"
        case .array: "array"
        case .object: "object"
        }
    }
}

extension JSONValue: ExpressibleByBooleanLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByFloatLiteral, ExpressibleByStringLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral
{
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(integerLiteral value: Int64) { self = .int(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(stringLiteral value: String) { self = .string(value) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JSONValue)...) { self = .object(JSONObject(elements)) }
}

// MARK: - JSONObject

/// A JSON object: members with unique keys, kept sorted by the UTF-8 bytes of their keys.
///
/// Sorted storage makes lookups a binary search and canonical writing a plain walk; two objects
/// with the same members are equal whatever order they were written in.
public struct JSONObject: Sendable, Hashable, RandomAccessCollection {
    /// One `key: value` member.
    public struct Member: Sendable, Hashable {
        public var key: String
        public var value: JSONValue
        public init(key: String, value: JSONValue) {
            self.key = key
            self.value = value
        }
    }

    /// The members, sorted by key (UTF-8 byte order), keys unique.
    public private(set) var members: [Member]

    /// An empty object.
    public init() { members = [] }

    /// An object from key/value pairs in any order; for a repeated key the last value wins.
    public init(_ pairs: some Sequence<(String, JSONValue)>) {
        var members: [Member] = pairs.map { Member(key: $0.0, value: $0.1) }
        members = JSONObject.sortedUnique(members)
        self.members = members
    }

    /// Members already sorted with unique keys (the parser checks both).
    init(sortedUniqueMembers: [Member]) { members = sortedUniqueMembers }

    public var startIndex: Int { members.startIndex }
    public var endIndex: Int { members.endIndex }
    public subscript(position: Int) -> Member { members[position] }

    /// The keys in sorted order.
    public var keys: [String] { members.map(\.key) }

    /// The value of `key`, or `nil`; setting `nil` removes the member.
    public subscript(key: String) -> JSONValue? {
        get {
            let (index, found) = search(key)
            return found ? members[index].value : nil
        }
        set {
            let (index, found) = search(key)
            switch (found, newValue) {
            case (true, let value?): members[index].value = value
            case (true, nil): members.remove(at: index)
            case (false, let value?): members.insert(Member(key: key, value: value), at: index)
            case (false, nil): break
            }
        }
    }

    /// Removes `key` and returns its value, if it was present.
    @discardableResult
    public mutating func removeValue(forKey key: String) -> JSONValue? {
        let (index, found) = search(key)
        guard found else { return nil }
        return members.remove(at: index).value
    }

    /// Binary search: the index of `key`, or where it would be inserted.
    private func search(_ key: String) -> (Int, Bool) {
        var low = 0
        var high = members.count
        while low < high {
            let mid = (low + high) / 2
            switch compareKeys(members[mid].key, key) {
            case .orderedSame: return (mid, true)
            case .orderedAscending: low = mid + 1
            case .orderedDescending: high = mid
            }
        }
        return (low, false)
    }

    /// Stable-sorts by key and keeps the last member of each run of equal keys.
    static func sortedUnique(_ members: [Member]) -> [Member] {
        let indexed = members.enumerated().sorted {
            let order = compareKeys($0.element.key, $1.element.key)
            return order == .orderedSame ? $0.offset < $1.offset : order == .orderedAscending
        }
        var result: [Member] = []
        result.reserveCapacity(indexed.count)
        for (_, member) in indexed {
            if let last = result.last, last.key == member.key {
                result[result.count - 1] = member
            } else {
                result.append(member)
            }
        }
        return result
    }
}

extension JSONObject: ExpressibleByDictionaryLiteral {
    public init(dictionaryLiteral elements: (String, JSONValue)...) { self.init(elements) }
}

/// The order of keys in canonical JSON: by the UTF-8 bytes (that is, by Unicode code point).
enum KeyOrder {
    case orderedAscending, orderedSame, orderedDescending
}

/// Compares two keys by their UTF-8 bytes.
@inline(__always)
func compareKeys(_ lhs: String, _ rhs: String) -> KeyOrder {
    var lhsIterator = lhs.utf8.makeIterator()
    var rhsIterator = rhs.utf8.makeIterator()
    while true {
        switch (lhsIterator.next(), rhsIterator.next()) {
        case (nil, nil): return .orderedSame
        case (nil, _): return .orderedAscending
        case (_, nil): return .orderedDescending
        case (let left?, let right?):
            if left != right { return left < right ? .orderedAscending : .orderedDescending }
        }
    }
}
