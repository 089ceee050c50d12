import Yams

/// Walks a composed YAML tree, reading typed values with defaults and recording every problem
/// with its key path and line. Used once per load; not shared across tasks.
final class ConfigReader {
    let file: String
    private(set) var problems: [ConfigError.Problem] = []

    init(file: String) { self.file = file }

    /// A mapping node with its key path, its keys checked against the schema.
    struct Section {
        let path: String
        let node: Node
        let entries: [String: (key: Node, value: Node)]

        func child(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }
        func value(_ key: String) -> Node? { entries[key]?.value }
    }

    // MARK: Problems

    func report(_ kind: ConfigError.Problem.Kind, _ path: String, at node: Node?, _ message: String) {
        problems.append(ConfigError.Problem(kind: kind, path: path, line: node?.mark?.line, column: node?.mark?.column, message: message))
    }

    // MARK: Structure

    /// Reads `node` as a mapping whose keys must be among `keys`; `nil` (after a report) otherwise.
    func section(_ node: Node?, path: String, keys: [String]) -> Section? {
        guard let node else { return nil }
        guard case .mapping(let mapping) = node else {
            report(.wrongType, path, at: node, "expected a mapping of \(keys.prefix(4).joined(separator: ", "))…, found \(describe(node))")
            return nil
        }
        var entries: [String: (key: Node, value: Node)] = [:]
        for (key, value) in mapping {
            guard case .scalar(let scalar) = key else {
                report(.wrongType, path, at: key, "keys must be plain names")
                continue
            }
            let name = scalar.string
            let keyPath = path.isEmpty ? name : "\(path).\(name)"
            guard keys.contains(name) else {
                report(.unknownKey, keyPath, at: key, "unknown key\(suggestion(for: name, among: keys))")
                continue
            }
            entries[name] = (key, value)
        }
        return Section(path: path, node: node, entries: entries)
    }

    /// A sub-section; `nil` when the key is absent (the caller applies defaults).
    func section(_ parent: Section?, _ key: String, keys: [String]) -> Section? {
        guard let parent, let node = parent.value(key), !isNull(node) else { return nil }
        return section(node, path: parent.child(key), keys: keys)
    }

    /// The mapping's entries in file order, for mappings keyed by user-chosen names (`fields`).
    func namedEntries(_ parent: Section?, _ key: String) -> [(name: String, key: Node, value: Node, path: String)] {
        guard let parent, let node = parent.value(key), !isNull(node) else { return [] }
        let path = parent.child(key)
        guard case .mapping(let mapping) = node else {
            report(.wrongType, path, at: node, "expected a mapping of names, found \(describe(node))")
            return []
        }
        return mapping.compactMap { key, value in
            guard case .scalar(let scalar) = key else {
                report(.wrongType, path, at: key, "keys must be plain names")
                return nil
            }
            return (scalar.string, key, value, "\(path).\(scalar.string)")
        }
    }

    /// The elements of a sequence with their paths (`path[0]`, …).
    func elements(_ parent: Section?, _ key: String) -> [(node: Node, path: String)]? {
        guard let parent, let node = parent.value(key), !isNull(node) else { return nil }
        let path = parent.child(key)
        guard case .sequence(let sequence) = node else {
            report(.wrongType, path, at: node, "expected a list, found \(describe(node))")
            return nil
        }
        return sequence.enumerated().map { ($1, "\(path)[\($0)]") }
    }

    /// Reports a missing required key.
    func requireKey(_ parent: Section?, _ key: String, _ what: String) {
        guard let parent else { return }
        if parent.value(key) == nil || parent.value(key).map(isNull) == true {
            report(.missingKey, parent.child(key), at: parent.node, "missing required key (\(what))")
        }
    }

    // MARK: Scalars

    /// A string (any non-null scalar's text).
    func string(_ parent: Section?, _ key: String) -> String? {
        guard let parent, let node = parent.value(key), !isNull(node) else { return nil }
        return stringValue(node, path: parent.child(key))
    }

    func stringValue(_ node: Node, path: String) -> String? {
        guard case .scalar(let scalar) = node, !isNull(node) else {
            report(.wrongType, path, at: node, "expected a string, found \(describe(node))")
            return nil
        }
        return scalar.string
    }

    /// A list of strings (`nil` when the key is absent).
    func strings(_ parent: Section?, _ key: String) -> [String]? {
        guard let items = elements(parent, key) else { return nil }
        return items.compactMap { stringValue($0.node, path: $0.path) }
    }

    /// A number within `range`; `nil` if absent, null, or wrong (after a report).
    func double(_ parent: Section?, _ key: String, in range: ClosedRange<Double> = -.greatestFiniteMagnitude ... .greatestFiniteMagnitude,
                _ rangeText: String? = nil) -> Double? {
        guard let parent, let node = parent.value(key), !isNull(node) else { return nil }
        let path = parent.child(key)
        guard isPlain(node), node.tag.rawValue == Tag.Name.int.rawValue || node.tag.rawValue == Tag.Name.float.rawValue, let value = node.float, value.isFinite else {
            report(.wrongType, path, at: node, "expected a number, found \(describe(node))")
            return nil
        }
        guard range.contains(value) else {
            report(.outOfRange, path, at: node, "\(format(value)) is out of range (\(rangeText ?? "\(format(range.lowerBound))…\(format(range.upperBound))"))")
            return nil
        }
        return value
    }

    /// A whole number within `range`.
    func int(_ parent: Section?, _ key: String, in range: ClosedRange<Int>, _ rangeText: String) -> Int? {
        guard let parent, let node = parent.value(key), !isNull(node) else { return nil }
        let path = parent.child(key)
        guard isPlain(node), node.tag.rawValue == Tag.Name.int.rawValue, let value = node.int else {
            report(.wrongType, path, at: node, "expected a whole number, found \(describe(node))")
            return nil
        }
        guard range.contains(value) else {
            report(.outOfRange, path, at: node, "\(value) is out of range (\(rangeText))")
            return nil
        }
        return value
    }

    func bool(_ parent: Section?, _ key: String) -> Bool? {
        guard let parent, let node = parent.value(key), !isNull(node) else { return nil }
        guard isPlain(node), node.tag.rawValue == Tag.Name.bool.rawValue, let value = node.bool else {
            report(.wrongType, parent.child(key), at: node, "expected true or false, found \(describe(node))")
            return nil
        }
        return value
    }

    /// A time span (`30s`, `1h`, `7d`, `2w`) that must be positive.
    func span(_ parent: Section?, _ key: String, allowZero: Bool = false) -> TimeSpan? {
        guard let parent, let node = parent.value(key), !isNull(node) else { return nil }
        let path = parent.child(key)
        guard case .scalar(let scalar) = node, let span = TimeSpan(scalar.string) else {
            report(.wrongType, path, at: node, "expected a time span such as 30s, 15m, 2h, 7d or 2w, found \(describe(node))")
            return nil
        }
        if span.seconds <= 0 && !allowZero {
            report(.outOfRange, path, at: node, "must be longer than 0s")
            return nil
        }
        return span
    }

    /// One of an enumeration's raw values.
    func choice<Choice: RawRepresentable & CaseIterable>(_ parent: Section?, _ key: String, _: Choice.Type) -> Choice?
    where Choice.RawValue == String {
        guard let parent, let node = parent.value(key), !isNull(node) else { return nil }
        return choiceValue(node, path: parent.child(key), Choice.self)
    }

    func choiceValue<Choice: RawRepresentable & CaseIterable>(_ node: Node, path: String, _: Choice.Type) -> Choice?
    where Choice.RawValue == String {
        let options = Choice.allCases.map(\.rawValue)
        guard case .scalar(let scalar) = node, !isNull(node) else {
            report(.wrongType, path, at: node, "expected one of \(options.joined(separator: ", ")), found \(describe(node))")
            return nil
        }
        guard let value = Choice(rawValue: scalar.string) else {
            report(.invalidValue, path, at: node,
                   "\"\(scalar.string)\" is not one of \(options.joined(separator: ", "))\(suggestion(for: scalar.string, among: options))")
            return nil
        }
        return value
    }

    // MARK: Helpers

    func isNull(_ node: Node) -> Bool {
        if case .scalar = node, isPlain(node), node.tag.rawValue == Tag.Name.null.rawValue { return true }
        return false
    }

    /// Unquoted scalars are typed by their text; quoted ones are strings.
    private func isPlain(_ node: Node) -> Bool {
        guard case .scalar(let scalar) = node else { return false }
        return scalar.style == .plain || scalar.style == .any
    }

    func describe(_ node: Node) -> String {
        switch node {
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        case .scalar(let scalar):
            if isNull(node) { return "null" }
            return "\"\(scalar.string)\""
        }
    }

    private func format(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
    }

    /// ` (did you mean "x"?)` when a known name is close to `name`.
    func suggestion(for name: String, among candidates: [String]) -> String {
        let lowered = name.lowercased()
        let scored = candidates.map { ($0, editDistance(lowered, $0.lowercased())) }
        guard let best = scored.min(by: { $0.1 < $1.1 }), best.1 <= max(2, name.count / 3) else { return "" }
        return "; did you mean \"\(best.0)\"?"
    }

    private func editDistance(_ lhs: String, _ rhs: String) -> Int {
        let a = Array(lhs.unicodeScalars)
        let b = Array(rhs.unicodeScalars)
        if a.isEmpty { return b.count }
        var previous = Array(0...b.count)
        for i in 1...a.count {
            var current = [i] + Array(repeating: 0, count: b.count)
            for j in 1...max(b.count, 1) where j <= b.count {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            previous = current
        }
        return previous[b.count]
    }
}
