import Contracts
import Foundation
import Yams

/// How replay turns CSV rows into events: which columns hold the id, entity, event time, fields and
/// label; which rows become score requests and observations; and how long after a row (in event
/// time) its outcome arrives.
///
/// Written as YAML or JSON (see `examples/elec2/replay.yaml`); every key can be overridden by a
/// `loopctl replay` flag.
public struct ReplayMapping: Sendable, Hashable {
    /// How the time column is written.
    public enum TimeFormat: String, Sendable, Hashable, CaseIterable {
        /// RFC 3339; a value without an offset is read in ``ReplayMapping/timeZone``.
        case rfc3339
        /// Seconds since the epoch (fractions allowed).
        case epochSeconds = "epoch_seconds"
        /// Milliseconds since the epoch.
        case epochMilliseconds = "epoch_milliseconds"
    }

    /// The JSON type a column's cells are sent as.
    public enum FieldType: String, Sendable, Hashable, CaseIterable {
        case double, int, bool, string
        /// An integer literal as `int`, another number as `double`, `true`/`false` as `bool`, else a string.
        case infer
    }

    /// When an outcome follows its score request, in event time.
    public enum LabelDelay: Sendable, Hashable, CustomStringConvertible {
        /// A fixed span after the row's time.
        case eventTime(TimeSpan)
        /// At the time of the same entity's N-th next row (the last rows: N times their last gap later).
        case periods(Int)

        /// Parses `30m`, `2h`, `0s` (a ``TimeSpan``) or `1 period`, `3 periods`, `3p`.
        public init?(_ text: String) {
            let trimmed = text.trimmingCharacters(in: .whitespaces).lowercased()
            if let span = TimeSpan(trimmed) {
                self = .eventTime(span)
                return
            }
            var digits = Substring(trimmed)
            for suffix in ["periods", "period", "p"] where digits.hasSuffix(suffix) {
                digits = digits.dropLast(suffix.count)
                break
            }
            guard digits.count < trimmed.count,
                  let count = Int(digits.trimmingCharacters(in: .whitespaces)), count >= 0 else { return nil }
            self = .periods(count)
        }

        public var description: String {
            switch self {
            case .eventTime(let span): span.description
            case .periods(let count): count == 1 ? "1 period" : "\(count) periods"
            }
        }
    }

    /// Which rows become events of one kind, and which columns they carry.
    public struct Selection: Sendable, Hashable {
        /// Whether this kind is produced at all.
        public var enabled: Bool
        /// The columns sent as data fields (`nil`: the mapping's ``ReplayMapping/fields``).
        public var fields: [String]?
        /// Only rows whose `whereColumn` cell is one of `whereValues` (no filter when `nil`).
        public var whereColumn: String?
        public var whereValues: [String]

        public init(enabled: Bool, fields: [String]? = nil, whereColumn: String? = nil, whereValues: [String] = []) {
            self.enabled = enabled
            self.fields = fields
            self.whereColumn = whereColumn
            self.whereValues = whereValues
        }

        /// Every row, with the mapping's fields.
        public static let all = Selection(enabled: true)
        /// No rows.
        public static let none = Selection(enabled: false)
    }

    /// The dataset's name: the default CloudEvents source is `/replay/<name>`, the default
    /// requestId prefix `<name>-`.
    public var name: String
    /// The CloudEvents `source` of every event (with the id, the dedupe key at ingest).
    public var source: String?
    /// The column with a unique row id (`nil`: the row's number, counting data rows from 1).
    public var idColumn: String?
    /// The column with the entity (`subject`, the Kafka key); `nil` uses ``entity``.
    public var entityColumn: String?
    /// The entity of every row when there is no entity column.
    public var entity: String?
    /// The column with the event time.
    public var timeColumn: String
    public var timeFormat: TimeFormat
    /// The offset of times written without one: `UTC`, `Z` or `±hh:mm`.
    public var timeZone: String
    /// The columns sent as fields by default.
    public var fields: [String]
    /// Per-column JSON types (absent: from loop.yaml when given, else inferred).
    public var types: [String: FieldType]
    /// The column with the label; no outcomes without it.
    public var labelColumn: String?
    public var scoreRequests: Selection
    public var observations: Selection
    public var labelDelay: LabelDelay
    /// The requestId of a row is this prefix followed by the row id (`nil`: `<name>-`).
    public var requestIdPrefix: String?

    public init(
        name: String, source: String? = nil, idColumn: String? = nil, entityColumn: String? = nil, entity: String? = nil,
        timeColumn: String, timeFormat: TimeFormat = .rfc3339, timeZone: String = "UTC", fields: [String],
        types: [String: FieldType] = [:], labelColumn: String? = nil, scoreRequests: Selection = .all,
        observations: Selection = .none, labelDelay: LabelDelay = .eventTime(TimeSpan(seconds: 0)),
        requestIdPrefix: String? = nil
    ) {
        self.name = name
        self.source = source
        self.idColumn = idColumn
        self.entityColumn = entityColumn
        self.entity = entity
        self.timeColumn = timeColumn
        self.timeFormat = timeFormat
        self.timeZone = timeZone
        self.fields = fields
        self.types = types
        self.labelColumn = labelColumn
        self.scoreRequests = scoreRequests
        self.observations = observations
        self.labelDelay = labelDelay
        self.requestIdPrefix = requestIdPrefix
    }

    /// The CloudEvents source in effect.
    public var effectiveSource: String { source ?? "/replay/\(name)" }
    /// The requestId prefix in effect.
    public var effectiveRequestIdPrefix: String { requestIdPrefix ?? "\(name)-" }

    /// The offset of ``timeZone`` in seconds east of UTC.
    public func timeZoneOffset() throws(LoopctlError) -> Int64 {
        let zone = timeZone.trimmingCharacters(in: .whitespaces)
        if zone.uppercased() == "UTC" || zone.uppercased() == "Z" || zone.uppercased() == "GMT" { return 0 }
        let parts = zone.dropFirst().split(separator: ":")
        guard let sign = zone.first, sign == "+" || sign == "-", parts.count == 2,
              let hours = Int64(parts[0]), let minutes = Int64(parts[1]), hours <= 23, minutes <= 59 else {
            throw LoopctlError(.badMapping, "time.zone `\(timeZone)` is not UTC or an offset like +02:00")
        }
        return (sign == "-" ? -1 : 1) * (hours * 3600 + minutes * 60)
    }

    // MARK: - Checking against a CSV

    /// Checks every column the mapping names against the CSV's header; the error names the mapping
    /// key, the missing column and the columns the file has.
    public func validate(header: [String], file: String) throws(LoopctlError) {
        var named: [(key: String, column: String)] = []
        if let idColumn { named.append(("columns.id", idColumn)) }
        if let entityColumn { named.append(("columns.entity", entityColumn)) }
        named.append(("columns.time", timeColumn))
        if let labelColumn { named.append(("columns.label", labelColumn)) }
        for field in fields { named.append(("fields", field)) }
        for (key, selection) in [("scoreRequests", scoreRequests), ("observations", observations)] {
            for field in selection.fields ?? [] { named.append(("\(key).fields", field)) }
            if let column = selection.whereColumn { named.append(("\(key).where.column", column)) }
        }
        for column in types.keys.sorted() { named.append(("types", column)) }
        let columns = Set(header)
        for (key, column) in named where !columns.contains(column) {
            throw LoopctlError(
                .badMapping,
                "\(key) names column `\(column)`, which \(file) does not have (columns: \(header.joined(separator: ", ")))")
        }
        guard entityColumn != nil || entity != nil else {
            throw LoopctlError(.badMapping, "no entity: set columns.entity to a column or entity to a fixed value")
        }
        guard scoreRequests.enabled || observations.enabled else {
            throw LoopctlError(.badMapping, "scoreRequests and observations are both off: nothing to replay")
        }
        _ = try timeZoneOffset()
    }
}

// MARK: - Loading

extension ReplayMapping {
    /// Reads a mapping from a YAML or JSON file.
    public static func load(path: String) throws(LoopctlError) -> ReplayMapping {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw LoopctlError(.badMapping, "cannot read the mapping file \(path)")
        }
        let defaultName = URL(fileURLWithPath: path).deletingLastPathComponent().lastPathComponent
        return try parse(String(decoding: data, as: UTF8.self), file: path, defaultName: defaultName)
    }

    /// Parses a mapping from YAML or JSON text; `file` appears in errors.
    public static func parse(_ text: String, file: String, defaultName: String = "replay") throws(LoopctlError) -> ReplayMapping {
        let root: Any?
        do { root = try Yams.load(yaml: text) } catch {
            throw LoopctlError(.badMapping, "\(file) is not valid YAML or JSON: \(error)")
        }
        let reader = try MappingReader(root, path: "", file: file)
        try reader.allowOnly(["name", "source", "columns", "entity", "time", "fields", "types", "scoreRequests",
                              "observations", "labelDelay", "requestIdPrefix"])
        let columns = try reader.section("columns")
        try columns?.allowOnly(["id", "entity", "time", "label"])
        let time = try reader.section("time")
        try time?.allowOnly(["format", "zone"])
        guard let timeColumn = try columns?.string("time") else {
            throw LoopctlError(.badMapping, "\(file): columns.time is required (the column with the event time)")
        }
        var mapping = ReplayMapping(
            name: try reader.string("name") ?? defaultName, timeColumn: timeColumn,
            fields: try reader.strings("fields") ?? [])
        mapping.source = try reader.string("source")
        mapping.idColumn = try columns?.string("id")
        mapping.entityColumn = try columns?.string("entity")
        mapping.entity = try reader.string("entity")
        mapping.labelColumn = try columns?.string("label")
        if let format = try time?.string("format") {
            guard let parsed = TimeFormat(rawValue: format) else {
                throw LoopctlError(.badMapping, "\(file): time.format `\(format)` is not one of \(TimeFormat.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            mapping.timeFormat = parsed
        }
        mapping.timeZone = try time?.string("zone") ?? "UTC"
        if let types = try reader.section("types") {
            for key in types.keys {
                let raw = try types.string(key) ?? ""
                guard let type = FieldType(rawValue: raw) else {
                    throw LoopctlError(.badMapping, "\(file): types.\(key) `\(raw)` is not one of \(FieldType.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                mapping.types[key] = type
            }
        }
        mapping.scoreRequests = try reader.selection("scoreRequests") ?? .all
        mapping.observations = try reader.selection("observations") ?? .none
        if let delay = try reader.string("labelDelay") {
            guard let parsed = LabelDelay(delay) else {
                throw LoopctlError(.badMapping, "\(file): labelDelay `\(delay)` is neither a time span (30m, 2h) nor a count of periods (1 period)")
            }
            mapping.labelDelay = parsed
        }
        mapping.requestIdPrefix = try reader.string("requestIdPrefix")
        return mapping
    }
}

/// Reads the untyped tree Yams returns, with errors naming the key path.
private struct MappingReader {
    typealias Selection = ReplayMapping.Selection

    let values: [String: Any]
    let path: String
    let file: String

    init(_ node: Any?, path: String, file: String) throws(LoopctlError) {
        guard let values = node as? [String: Any] else {
            throw LoopctlError(.badMapping, "\(file): \(path.isEmpty ? "the document" : path) must be a mapping of keys")
        }
        self.values = values
        self.path = path
        self.file = file
    }

    var keys: [String] { values.keys.sorted() }

    func child(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    func allowOnly(_ allowed: [String]) throws(LoopctlError) {
        for key in keys where !allowed.contains(key) {
            throw LoopctlError(.badMapping, "\(file): unknown key \(child(key)) (allowed: \(allowed.joined(separator: ", ")))")
        }
    }

    func section(_ key: String) throws(LoopctlError) -> MappingReader? {
        guard let value = values[key], !(value is NSNull) else { return nil }
        return try MappingReader(value, path: child(key), file: file)
    }

    /// A scalar as text (YAML reads `1` as a number; a mapping wants the text).
    func string(_ key: String) throws(LoopctlError) -> String? {
        guard let value = values[key], !(value is NSNull) else { return nil }
        guard let text = Self.scalarText(value) else {
            throw LoopctlError(.badMapping, "\(file): \(child(key)) must be a single value")
        }
        return text
    }

    func strings(_ key: String) throws(LoopctlError) -> [String]? {
        guard let value = values[key], !(value is NSNull) else { return nil }
        guard let list = value as? [Any] else {
            throw LoopctlError(.badMapping, "\(file): \(child(key)) must be a list of column names")
        }
        var result: [String] = []
        for (index, element) in list.enumerated() {
            guard let text = Self.scalarText(element) else {
                throw LoopctlError(.badMapping, "\(file): \(child(key))[\(index)] must be a column name")
            }
            result.append(text)
        }
        return result
    }

    /// `true`/`false`/`all`/`none`, or `{fields: [...], where: {column: c, in: [v, ...]}}`.
    func selection(_ key: String) throws(LoopctlError) -> ReplayMapping.Selection? {
        guard let value = values[key], !(value is NSNull) else { return nil }
        if let flag = value as? Bool { return flag ? Selection.all : Selection.none }
        if let text = value as? String {
            switch text.lowercased() {
            case "all", "true", "yes": return Selection.all
            case "none", "false", "no": return Selection.none
            default: throw LoopctlError(.badMapping, "\(file): \(child(key)) `\(text)` is not all, none or a mapping")
            }
        }
        let section = try MappingReader(value, path: child(key), file: file)
        try section.allowOnly(["fields", "where", "enabled"])
        var selection = ReplayMapping.Selection(enabled: true, fields: try section.strings("fields"))
        if let enabled = section.values["enabled"] as? Bool { selection.enabled = enabled }
        if let filter = try section.section("where") {
            try filter.allowOnly(["column", "in", "equals"])
            guard let column = try filter.string("column") else {
                throw LoopctlError(.badMapping, "\(file): \(filter.path).column is required")
            }
            selection.whereColumn = column
            if let values = try filter.strings("in") {
                selection.whereValues = values
            } else if let value = try filter.string("equals") {
                selection.whereValues = [value]
            }
            guard !selection.whereValues.isEmpty else {
                throw LoopctlError(.badMapping, "\(file): \(filter.path) needs `in: [values]` or `equals: value`")
            }
        }
        return selection
    }

    static func scalarText(_ value: Any) -> String? {
        switch value {
        case let text as String: text
        case let number as Int: String(number)
        case let number as Double: String(number)
        case let flag as Bool: flag ? "true" : "false"
        default: nil
        }
    }
}
