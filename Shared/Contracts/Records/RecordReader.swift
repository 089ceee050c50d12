/// Why a record read from a topic is not what its contract says.
public struct RecordError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The record kind, e.g. `prediction`.
    public var record: String
    /// The offending field path, e.g. `features[2].value`.
    public var path: String
    public var message: String

    public init(record: String, path: String, message: String) {
        self.record = record
        self.path = path
        self.message = message
    }

    /// Records are data: a bad one never becomes good by retrying.
    public var isRetryable: Bool { false }
    public var description: String { "\(record) record: \(path): \(message)" }
}

/// A record every service writes to a topic: JSON with a `schemaVersion`, readable by the current
/// and the next version of its readers.
public protocol TopicRecord: Sendable {
    /// The record kind, used in errors.
    static var recordName: String { get }
    /// The version this build writes; readers accept it and the one before.
    static var schemaVersion: SchemaVersion { get }
    /// The record as JSON (including `schemaVersion`).
    var json: JSONValue { get }
    /// Reads a record, checking its `schemaVersion` and every field.
    init(reading reader: RecordReader) throws(RecordError)
}

extension TopicRecord {
    /// Parses a record from the canonical JSON bytes of a Kafka value.
    public init(bytes: [UInt8]) throws(RecordError) {
        let value: JSONValue
        do { value = try JSONValue.parse(bytes) } catch {
            throw RecordError(record: Self.recordName, path: "$", message: error.description)
        }
        try self.init(json: value)
    }

    /// Reads a record from JSON, checking its `schemaVersion` first.
    public init(json: JSONValue) throws(RecordError) {
        guard case .object(let object) = json else {
            throw RecordError(record: Self.recordName, path: "$", message: "expected an object, found \(json.typeName)")
        }
        if case .failure(let problem) = SchemaVersion.check(json, current: Self.schemaVersion) {
            throw RecordError(record: Self.recordName, path: SchemaVersion.fieldName, message: problem.description)
        }
        try self.init(reading: RecordReader(record: Self.recordName, object: object, path: ""))
    }

    /// The canonical JSON bytes written as a Kafka value.
    public var bytes: [UInt8] { json.canonicalBytes() }
}

/// Reads typed fields of one JSON object, with errors naming the field path.
public struct RecordReader: Sendable {
    let record: String
    let object: JSONObject
    let path: String

    public init(record: String, object: JSONObject, path: String) {
        self.record = record
        self.object = object
        self.path = path
    }

    func fieldPath(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    func fail(_ key: String, _ message: String) -> RecordError {
        RecordError(record: record, path: fieldPath(key), message: message)
    }

    /// The value of `key`, `nil` when absent or JSON `null`.
    public func optional(_ key: String) -> JSONValue? {
        guard let value = object[key], !value.isNull else { return nil }
        return value
    }

    public func value(_ key: String) throws(RecordError) -> JSONValue {
        guard let value = optional(key) else { throw fail(key, "is required") }
        return value
    }

    public func string(_ key: String) throws(RecordError) -> String {
        let value = try value(key)
        guard let string = value.stringValue else { throw fail(key, "expected a string, found \(value.typeName)") }
        return string
    }

    public func optionalString(_ key: String) throws(RecordError) -> String? {
        guard optional(key) != nil else { return nil }
        return try string(key)
    }

    public func double(_ key: String) throws(RecordError) -> Double {
        let value = try value(key)
        guard let number = value.doubleValue else { throw fail(key, "expected a number, found \(value.typeName)") }
        return number
    }

    public func optionalDouble(_ key: String) throws(RecordError) -> Double? {
        guard optional(key) != nil else { return nil }
        return try double(key)
    }

    public func int(_ key: String) throws(RecordError) -> Int64 {
        let value = try value(key)
        guard let number = value.int64Value else { throw fail(key, "expected an integer, found \(value.typeName)") }
        return number
    }

    public func optionalInt(_ key: String) throws(RecordError) -> Int64? {
        guard optional(key) != nil else { return nil }
        return try int(key)
    }

    public func bool(_ key: String) throws(RecordError) -> Bool {
        let value = try value(key)
        guard let flag = value.boolValue else { throw fail(key, "expected a boolean, found \(value.typeName)") }
        return flag
    }

    /// A string field holding one of an enum's raw values.
    public func choice<E: RawRepresentable & CaseIterable>(_ key: String, _: E.Type) throws(RecordError) -> E
    where E.RawValue == String {
        let raw = try string(key)
        guard let choice = E(rawValue: raw) else {
            throw fail(key, "'\(raw)' is not one of \(E.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return choice
    }

    /// A nested object.
    public func object(_ key: String) throws(RecordError) -> RecordReader {
        let value = try value(key)
        guard let object = value.objectValue else { throw fail(key, "expected an object, found \(value.typeName)") }
        return RecordReader(record: record, object: object, path: fieldPath(key))
    }

    /// An array of objects, each read by `read` (empty when absent).
    public func objects<T>(_ key: String, _ read: (RecordReader) throws(RecordError) -> T) throws(RecordError) -> [T] {
        guard let value = optional(key) else { return [] }
        guard let array = value.arrayValue else { throw fail(key, "expected an array, found \(value.typeName)") }
        var result: [T] = []
        result.reserveCapacity(array.count)
        for (index, element) in array.enumerated() {
            guard let object = element.objectValue else {
                throw fail("\(key)[\(index)]", "expected an object, found \(element.typeName)")
            }
            result.append(try read(RecordReader(record: record, object: object, path: fieldPath("\(key)[\(index)]"))))
        }
        return result
    }

    /// An array of strings (empty when absent).
    public func strings(_ key: String) throws(RecordError) -> [String] {
        guard let value = optional(key) else { return [] }
        guard let array = value.arrayValue else { throw fail(key, "expected an array, found \(value.typeName)") }
        var result: [String] = []
        for (index, element) in array.enumerated() {
            guard let string = element.stringValue else {
                throw fail("\(key)[\(index)]", "expected a string, found \(element.typeName)")
            }
            result.append(string)
        }
        return result
    }
}

extension JSONValue {
    /// A number, or `null` for `nil` and non-finite values.
    public init(_ number: Double?) {
        if let number, number.isFinite { self = .double(number) } else { self = .null }
    }

    /// A string, or `null` for `nil`.
    public init(_ string: String?) {
        if let string { self = .string(string) } else { self = .null }
    }

    /// An integer, or `null` for `nil`.
    public init(_ integer: Int64?) {
        if let integer { self = .int(integer) } else { self = .null }
    }
}
