import Foundation
import Yams

// MARK: - Loading

extension LoopConfig {
    /// Reads and validates `loop.yaml` at `path`; see ``parse(yaml:file:)`` for the rules and defaults.
    public static func load(path: String) throws(ConfigError) -> LoopConfig {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigError(file: path, problems: [
                ConfigError.Problem(kind: .unreadable, path: "", line: nil, column: nil, message: "cannot read the file: \(error.localizedDescription)")
            ])
        }
        return try parse(yaml: text, file: path)
    }

    /// Parses and validates a `loop.yaml` document; `file` names it in error messages.
    ///
    /// Every problem is collected (unknown keys with a "did you mean", wrong types, out-of-range
    /// values, references to undeclared fields or features, a review band that does not contain the
    /// threshold, …) and thrown together as one ``ConfigError``.
    ///
    /// Required: `name`, `fields` (at least one), `label.field`, `label.positive`. Defaults for the rest:
    /// - `topics`: prefix `loop`, 4 partitions, replication factor 1, retention `7d`.
    /// - `events`: missingTime `reject`, unknownFields `reject`, maxPayloadBytes 65536, dedupeHorizon `7d`.
    /// - `fields.*`: required `false`, pii `none`.
    /// - `features`: allowedLateness `1h`, historyRetention `7d`, eventTypes
    ///   `[loop.observation.v1, loop.score_request.v1]`, no definitions; a definition's `eventTypes`
    ///   default to `features.eventTypes`.
    /// - `model`: features = every defined feature, no context fields.
    /// - `decision`: threshold 0.5, no review band, baselineScore 0.5, maxFeatureAge `1h`, maxZScore 6,
    ///   fallback `review`, explainTopK 3.
    /// - `costs`: truePositive 0, falsePositive 1, falseNegative 1, trueNegative 0.
    /// - `feedback`: joinDeadline `1h`, no defaultLabel, windowCount 2000, windowTime `7d`, snapshotInterval `10s`.
    /// - `drift`: psi 0.25, ks 0.2, chiSquaredPValue 0.001, scorePSI 0.25, performanceDrop 0.05, labelStarvation `1d`.
    /// - `retraining`: everyLabels/everyEventTime/everyWallClock off, onDriftAlert true, no training-set
    ///   limits, holdoutShare 0.2, l2 1.0, classWeight `none`, canaryShare 0; gate: metric `auc`,
    ///   minHoldout 200, minImprovement 0, maxCalibrationError 0.15.
    public static func parse(yaml: String, file: String) throws(ConfigError) -> LoopConfig {
        let reader = ConfigReader(file: file)
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch let error as YamlError {
            throw ConfigError(file: file, problems: [syntaxProblem(error)])
        } catch {
            throw ConfigError(file: file, problems: [
                ConfigError.Problem(kind: .syntax, path: "", line: nil, column: nil, message: "\(error)")
            ])
        }
        guard let root else {
            throw ConfigError(file: file, problems: [
                ConfigError.Problem(kind: .syntax, path: "", line: nil, column: nil, message: "the file is empty")
            ])
        }
        let config = ConfigDecoding(reader: reader).decode(root)
        if let config, reader.problems.isEmpty { return config }
        let ordered = reader.problems.enumerated().sorted { ($0.element.line ?? .max, $0.offset) < ($1.element.line ?? .max, $1.offset) }
        throw ConfigError(file: file, problems: ordered.map(\.element))
    }

    /// The topic names of this deployment.
    public var topicNames: Topics { topics.names }

    private static func syntaxProblem(_ error: YamlError) -> ConfigError.Problem {
        switch error {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
             .composer(let context, let problem, let mark, _):
            let message = [context?.text, problem].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: " ")
            return ConfigError.Problem(kind: .syntax, path: "", line: mark.line, column: mark.column, message: "invalid YAML: \(message)")
        case .duplicatedKeysInMapping(let duplicates, let context):
            return ConfigError.Problem(
                kind: .duplicate, path: "", line: context.mark.line, column: context.mark.column,
                message: "duplicate keys \(duplicates.joined(separator: ", ")) \(context.text)")
        default:
            return ConfigError.Problem(kind: .syntax, path: "", line: nil, column: nil, message: "invalid YAML: \(error)")
        }
    }
}

// MARK: - Decoding

/// The schema of `loop.yaml`, section by section.
private struct ConfigDecoding {
    let reader: ConfigReader

    func decode(_ root: Node) -> LoopConfig? {
        let top = reader.section(root, path: "", keys: [
            "name", "topics", "events", "fields", "label", "features", "model", "decision", "costs",
            "feedback", "drift", "retraining",
        ])
        guard let top else { return nil }
        reader.requireKey(top, "name", "a short name for the deployment")
        reader.requireKey(top, "fields", "the fields events may carry")
        reader.requireKey(top, "label", "the outcome field that holds ground truth")

        let name = reader.string(top, "name") ?? ""
        let topics = decodeTopics(top)
        let events = decodeEvents(top)
        let fields = decodeFields(top)
        let label = decodeLabel(top, fields: fields)
        let features = decodeFeatures(top, fields: fields)
        let model = decodeModel(top, features: features, fields: fields)
        let decision = decodeDecision(top)
        let costs = decodeCosts(top)
        let feedback = decodeFeedback(top, label: label, fields: fields)
        let drift = decodeDrift(top)
        let retraining = decodeRetraining(top)
        return LoopConfig(
            name: name, topics: topics, events: events, fields: fields, label: label, features: features, model: model,
            decision: decision, costs: costs, feedback: feedback, drift: drift, retraining: retraining)
    }

    // MARK: Topics and events

    private func decodeTopics(_ top: ConfigReader.Section) -> TopicSettings {
        let section = reader.section(top, "topics", keys: ["prefix", "partitions", "replicationFactor", "retention"])
        var prefix = "loop"
        if let text = reader.string(section, "prefix") {
            let legal = !text.isEmpty && text.count <= 200
                && text.unicodeScalars.allSatisfy { $0.isASCII && (CharacterSet.alphanumerics.contains($0) || "._-".unicodeScalars.contains($0)) }
            if legal {
                prefix = text
            } else {
                reader.report(.invalidValue, "topics.prefix", at: section?.value("prefix"),
                              "\"\(text)\" is not a legal Kafka topic prefix (letters, digits, `.`, `_`, `-`; at most 200 characters)")
            }
        }
        return TopicSettings(
            prefix: prefix,
            partitions: reader.int(section, "partitions", in: 1...10_000, "1…10000") ?? 4,
            replicationFactor: reader.int(section, "replicationFactor", in: 1...32, "1…32") ?? 1,
            retention: reader.span(section, "retention") ?? .days(7))
    }

    private func decodeEvents(_ top: ConfigReader.Section) -> EventPolicy {
        let section = reader.section(top, "events", keys: ["missingTime", "unknownFields", "maxPayloadBytes", "dedupeHorizon"])
        return EventPolicy(
            missingTime: reader.choice(section, "missingTime", EventPolicy.MissingTime.self) ?? .reject,
            unknownFields: reader.choice(section, "unknownFields", EventPolicy.UnknownFields.self) ?? .reject,
            maxPayloadBytes: reader.int(section, "maxPayloadBytes", in: 256...(16 << 20), "256…16777216 bytes") ?? 65_536,
            dedupeHorizon: reader.span(section, "dedupeHorizon") ?? .days(7))
    }

    // MARK: Fields and label

    private func decodeFields(_ top: ConfigReader.Section) -> [String: FieldSpec] {
        var fields: [String: FieldSpec] = [:]
        let entries = reader.namedEntries(top, "fields")
        if entries.isEmpty, let node = top.value("fields"), !reader.isNull(node), case .mapping = node {
            reader.report(.invalidValue, "fields", at: node, "declare at least one field")
        }
        for entry in entries {
            guard isIdentifier(entry.name) else {
                reader.report(.invalidValue, entry.path, at: entry.key, "field names are letters, digits and `_`, starting with a letter or `_`")
                continue
            }
            guard let section = reader.section(entry.value, path: entry.path, keys: ["type", "required", "min", "max", "values", "pii"]) else {
                continue
            }
            reader.requireKey(section, "type", "double, int, bool, string or category")
            guard let kind = reader.choice(section, "type", FieldSpec.Kind.self) else { continue }
            let min = reader.double(section, "min")
            let max = reader.double(section, "max")
            let values = reader.strings(section, "values")
            let numeric = kind == .double || kind == .int
            if !numeric {
                for key in ["min", "max"] where section.value(key) != nil {
                    reader.report(.invalidValue, section.child(key), at: section.value(key), "bounds apply only to double and int fields, not \(kind.rawValue)")
                }
            }
            if let min, let max, min > max {
                reader.report(.outOfRange, section.child("min"), at: section.value("min"), "min \(min) is greater than max \(max)")
            }
            if kind == .int {
                for (key, bound) in [("min", min), ("max", max)] {
                    if let bound, bound != bound.rounded() {
                        reader.report(.invalidValue, section.child(key), at: section.value(key), "an int field's bound must be a whole number")
                    }
                }
            }
            if let values {
                if kind != .category && kind != .string {
                    reader.report(.invalidValue, section.child("values"), at: section.value("values"), "allowed values apply only to category and string fields")
                } else if values.isEmpty {
                    reader.report(.invalidValue, section.child("values"), at: section.value("values"), "list at least one value")
                } else if let repeated = firstDuplicate(values) {
                    reader.report(.duplicate, section.child("values"), at: section.value("values"), "\"\(repeated)\" is listed twice")
                }
            } else if kind == .category {
                reader.report(.missingKey, section.child("values"), at: section.node, "a category field must list its values")
            }
            fields[entry.name] = FieldSpec(
                kind: kind, required: reader.bool(section, "required") ?? false, min: min, max: max, values: values,
                pii: reader.choice(section, "pii", FieldSpec.PII.self) ?? FieldSpec.PII.none)
        }
        return fields
    }

    private func decodeLabel(_ top: ConfigReader.Section, fields: [String: FieldSpec]) -> LabelSpec {
        let section = reader.section(top, "label", keys: ["field", "positive", "valueField"])
        reader.requireKey(section, "field", "the outcome field holding the label")
        reader.requireKey(section, "positive", "the label value of the positive class")
        let field = reader.string(section, "field") ?? ""
        let positive = reader.string(section, "positive") ?? ""
        let valueField = reader.string(section, "valueField")
        if let section, !field.isEmpty {
            if let spec = fields[field] {
                if let values = spec.values, !positive.isEmpty, !values.contains(positive) {
                    reader.report(.invalidValue, "label.positive", at: section.value("positive"),
                                  "\"\(positive)\" is not one of the values of field `\(field)` (\(values.joined(separator: ", ")))")
                }
            } else if !fields.isEmpty {
                reportUnknownField(field, path: "label.field", at: section.value("field"), fields: fields)
            }
        }
        if let section, let valueField {
            if let spec = fields[valueField] {
                if spec.kind != .double && spec.kind != .int {
                    reader.report(.invalidValue, "label.valueField", at: section.value("valueField"), "field `\(valueField)` must be numeric (double or int)")
                }
            } else if !fields.isEmpty {
                reportUnknownField(valueField, path: "label.valueField", at: section.value("valueField"), fields: fields)
            }
        }
        return LabelSpec(field: field, positive: positive, valueField: valueField)
    }

    // MARK: Features and model

    private func decodeFeatures(_ top: ConfigReader.Section, fields: [String: FieldSpec]) -> FeatureSettings {
        let section = reader.section(top, "features", keys: ["allowedLateness", "historyRetention", "eventTypes", "definitions"])
        let defaultTypes = [EventType.observation.description, EventType.scoreRequest.description]
        let eventTypes = checkEventTypes(reader.strings(section, "eventTypes"), path: "features.eventTypes", section: section, key: "eventTypes") ?? defaultTypes
        var definitions: [FeatureDefinition] = []
        var seen: Set<String> = []
        for (node, path) in reader.elements(section, "definitions") ?? [] {
            let keys = ["name", "field", "aggregation", "window", "halfLife", "eventTypes"]
            guard let definition = reader.section(node, path: path, keys: keys) else { continue }
            reader.requireKey(definition, "name", "the feature's name")
            reader.requireKey(definition, "aggregation", FeatureDefinition.Aggregation.allCases.map(\.rawValue).joined(separator: ", "))
            let name = reader.string(definition, "name")
            if let name {
                if !isIdentifier(name) {
                    reader.report(.invalidValue, definition.child("name"), at: definition.value("name"),
                                  "feature names are letters, digits and `_`, starting with a letter or `_`")
                } else if !seen.insert(name).inserted {
                    reader.report(.duplicate, definition.child("name"), at: definition.value("name"), "feature \"\(name)\" is defined twice")
                }
            }
            guard let aggregation = reader.choice(definition, "aggregation", FeatureDefinition.Aggregation.self) else { continue }
            let field = reader.string(definition, "field")
            let window = reader.span(definition, "window")
            let halfLife = reader.span(definition, "halfLife")
            checkShape(definition, aggregation: aggregation, field: field, fields: fields)
            let types = checkEventTypes(reader.strings(definition, "eventTypes"), path: definition.child("eventTypes"), section: definition, key: "eventTypes")
            definitions.append(FeatureDefinition(
                name: name ?? "", field: field, aggregation: aggregation, window: window, halfLife: halfLife,
                eventTypes: types ?? eventTypes))
        }
        return FeatureSettings(
            allowedLateness: reader.span(section, "allowedLateness", allowZero: true) ?? .hours(1),
            historyRetention: reader.span(section, "historyRetention") ?? .days(7),
            eventTypes: eventTypes, definitions: definitions)
    }

    /// Which keys each aggregation needs and forbids, and that its field is declared and numeric.
    private func checkShape(_ definition: ConfigReader.Section, aggregation: FeatureDefinition.Aggregation, field: String?, fields: [String: FieldSpec]) {
        let usesField = aggregation != .count && aggregation != .timeSinceLast
        let usesWindow = [.count, .sum, .mean, .min, .max, .stddev].contains(aggregation)
        let usesHalfLife = aggregation == .decayedMean
        let name = aggregation.rawValue
        if usesField {
            reader.requireKey(definition, "field", "the event field \(name) aggregates")
        } else if definition.value("field") != nil {
            reader.report(.invalidValue, definition.child("field"), at: definition.value("field"), "\(name) does not aggregate a field; remove `field`")
        }
        if usesWindow {
            reader.requireKey(definition, "window", "the event-time window of \(name), e.g. 24h")
        } else if definition.value("window") != nil {
            let hint = usesHalfLife ? "; decayed_mean uses halfLife" : ""
            reader.report(.invalidValue, definition.child("window"), at: definition.value("window"), "\(name) takes no window\(hint)")
        }
        if usesHalfLife {
            reader.requireKey(definition, "halfLife", "the half-life of decayed_mean, e.g. 6h")
        } else if definition.value("halfLife") != nil {
            reader.report(.invalidValue, definition.child("halfLife"), at: definition.value("halfLife"), "only decayed_mean takes a halfLife")
        }
        guard usesField, let field, !fields.isEmpty else { return }
        guard let spec = fields[field] else {
            reportUnknownField(field, path: definition.child("field"), at: definition.value("field"), fields: fields)
            return
        }
        if spec.kind != .double && spec.kind != .int && !(aggregation == .last && spec.kind == .bool) {
            reader.report(.invalidValue, definition.child("field"), at: definition.value("field"),
                          "\(name) needs a numeric field, but `\(field)` is \(spec.kind.rawValue)")
        }
    }

    private func checkEventTypes(_ types: [String]?, path: String, section: ConfigReader.Section?, key: String) -> [String]? {
        guard let types else { return nil }
        let known = EventKind.allCases.map(\.currentType.description)
        for (index, type) in types.enumerated() where !known.contains(type) {
            let node = section?.value(key).flatMap { node -> Node? in
                if case .sequence(let sequence) = node, index < sequence.count { return sequence[index] }
                return node
            }
            reader.report(.invalidValue, "\(path)[\(index)]", at: node, "unknown event type \"\(type)\"\(reader.suggestion(for: type, among: known))")
        }
        if types.isEmpty { reader.report(.invalidValue, path, at: section?.value(key), "list at least one event type") }
        return types
    }

    private func decodeModel(_ top: ConfigReader.Section, features: FeatureSettings, fields: [String: FieldSpec]) -> ModelSettings {
        let section = reader.section(top, "model", keys: ["features", "contextFields"])
        let defined = features.definitions.map(\.name)
        let names = reader.strings(section, "features") ?? defined
        if let section, section.value("features") != nil {
            checkReferences(names, section: section, key: "features", what: "feature", known: defined) { _ in nil }
        }
        let contextFields = reader.strings(section, "contextFields") ?? []
        if let section, !fields.isEmpty {
            checkReferences(contextFields, section: section, key: "contextFields", what: "field", known: fields.keys.sorted()) { name in
                guard let kind = fields[name]?.kind, kind == .string || kind == .category else { return nil }
                return "the model uses numbers; `\(name)` is \(kind.rawValue)"
            }
        }
        if names.isEmpty && contextFields.isEmpty, let section {
            reader.report(.invalidValue, "model", at: section.node, "the model needs at least one feature or context field")
        }
        return ModelSettings(features: names, contextFields: contextFields)
    }

    /// Reports list entries that are unknown, repeated, or (per `problem`) unusable.
    private func checkReferences(_ names: [String], section: ConfigReader.Section, key: String, what: String, known: [String],
                                 problem: (String) -> String?) {
        var seen: Set<String> = []
        for (index, name) in names.enumerated() {
            let node: Node? = {
                if case .sequence(let sequence)? = section.value(key), index < sequence.count { return sequence[index] }
                return section.value(key)
            }()
            let path = "\(section.child(key))[\(index)]"
            if !known.contains(name) {
                let declaredWhere = what == "feature" ? "features.definitions" : "fields"
                reader.report(.unknownReference, path, at: node,
                              "\(what) \"\(name)\" is not declared in \(declaredWhere)\(reader.suggestion(for: name, among: known))")
            } else if !seen.insert(name).inserted {
                reader.report(.duplicate, path, at: node, "\(what) \"\(name)\" is listed twice")
            } else if let message = problem(name) {
                reader.report(.invalidValue, path, at: node, message)
            }
        }
    }

    // MARK: Decision and costs

    private func decodeDecision(_ top: ConfigReader.Section) -> DecisionPolicy {
        let section = reader.section(top, "decision", keys: [
            "threshold", "reviewBand", "baselineScore", "maxFeatureAge", "maxZScore", "fallback", "explainTopK",
        ])
        let threshold = reader.double(section, "threshold", in: 0...1, "0…1") ?? 0.5
        var band: ClosedRange<Double>?
        if let items = reader.elements(section, "reviewBand") {
            let bounds = items.compactMap { item -> Double? in
                guard case .scalar = item.node, let value = item.node.float, item.node.tag.rawValue == Tag.Name.int.rawValue || item.node.tag.rawValue == Tag.Name.float.rawValue else {
                    reader.report(.wrongType, item.path, at: item.node, "expected a number, found \(reader.describe(item.node))")
                    return nil
                }
                return value
            }
            let node = section?.value("reviewBand")
            if items.count != 2 {
                reader.report(.invalidValue, "decision.reviewBand", at: node, "expected two scores [lower, upper], found \(items.count) values")
            } else if bounds.count == 2 {
                if !(0...1).contains(bounds[0]) || !(0...1).contains(bounds[1]) || bounds[0] > bounds[1] {
                    reader.report(.outOfRange, "decision.reviewBand", at: node, "expected 0 ≤ lower ≤ upper ≤ 1, found [\(bounds[0]), \(bounds[1])]")
                } else if !(bounds[0]...bounds[1]).contains(threshold) {
                    reader.report(.invalidValue, "decision.reviewBand", at: node,
                                  "the review band [\(bounds[0]), \(bounds[1])] must contain the threshold \(threshold)")
                } else {
                    band = bounds[0]...bounds[1]
                }
            }
        }
        return DecisionPolicy(
            threshold: threshold, reviewBand: band,
            baselineScore: reader.double(section, "baselineScore", in: 0...1, "0…1") ?? 0.5,
            maxFeatureAge: reader.span(section, "maxFeatureAge") ?? .hours(1),
            maxZScore: reader.double(section, "maxZScore", in: Double.leastNonzeroMagnitude...1e6, "greater than 0") ?? 6,
            fallback: reader.choice(section, "fallback", DecisionPolicy.Fallback.self) ?? .review,
            explainTopK: reader.int(section, "explainTopK", in: 0...1000, "0…1000") ?? 3)
    }

    private func decodeCosts(_ top: ConfigReader.Section) -> CostMatrix {
        let section = reader.section(top, "costs", keys: ["truePositive", "falsePositive", "falseNegative", "trueNegative"])
        return CostMatrix(
            truePositive: reader.double(section, "truePositive") ?? 0,
            falsePositive: reader.double(section, "falsePositive") ?? 1,
            falseNegative: reader.double(section, "falseNegative") ?? 1,
            trueNegative: reader.double(section, "trueNegative") ?? 0)
    }

    // MARK: Monitoring and retraining

    private func decodeFeedback(_ top: ConfigReader.Section, label: LabelSpec, fields: [String: FieldSpec]) -> FeedbackSettings {
        let section = reader.section(top, "feedback", keys: ["joinDeadline", "defaultLabel", "windowCount", "windowTime", "snapshotInterval"])
        let defaultLabel = reader.string(section, "defaultLabel")
        if let defaultLabel, let values = fields[label.field]?.values, !values.contains(defaultLabel) {
            reader.report(.invalidValue, "feedback.defaultLabel", at: section?.value("defaultLabel"),
                          "\"\(defaultLabel)\" is not one of the values of label field `\(label.field)` (\(values.joined(separator: ", ")))")
        }
        return FeedbackSettings(
            joinDeadline: reader.span(section, "joinDeadline") ?? .hours(1),
            defaultLabel: defaultLabel,
            windowCount: reader.int(section, "windowCount", in: 10...10_000_000, "10…10000000") ?? 2000,
            windowTime: reader.span(section, "windowTime") ?? .days(7),
            snapshotInterval: reader.span(section, "snapshotInterval") ?? TimeSpan(seconds: 10))
    }

    private func decodeDrift(_ top: ConfigReader.Section) -> DriftThresholds {
        let section = reader.section(top, "drift", keys: ["psi", "ks", "chiSquaredPValue", "scorePSI", "performanceDrop", "labelStarvation"])
        let positive = Double.leastNonzeroMagnitude...1e6
        return DriftThresholds(
            psi: reader.double(section, "psi", in: positive, "greater than 0") ?? 0.25,
            ks: reader.double(section, "ks", in: Double.leastNonzeroMagnitude...1, "greater than 0, at most 1") ?? 0.2,
            chiSquaredPValue: reader.double(section, "chiSquaredPValue", in: Double.leastNonzeroMagnitude...(1 - Double.ulpOfOne), "between 0 and 1, exclusive") ?? 0.001,
            scorePSI: reader.double(section, "scorePSI", in: positive, "greater than 0") ?? 0.25,
            performanceDrop: reader.double(section, "performanceDrop", in: 0...1, "0…1") ?? 0.05,
            labelStarvation: reader.span(section, "labelStarvation") ?? .days(1))
    }

    private func decodeRetraining(_ top: ConfigReader.Section) -> RetrainingPolicy {
        let section = reader.section(top, "retraining", keys: [
            "everyLabels", "everyEventTime", "everyWallClock", "onDriftAlert", "trainingExamples", "trainingEventTime",
            "holdoutShare", "l2", "classWeight", "gate", "canaryShare",
        ])
        let gateSection = reader.section(section, "gate", keys: ["metric", "minHoldout", "minImprovement", "maxCalibrationError"])
        let gate = PromotionGate(
            metric: reader.choice(gateSection, "metric", RetrainingPolicy.Metric.self) ?? .auc,
            minHoldout: reader.int(gateSection, "minHoldout", in: 1...100_000_000, "at least 1") ?? 200,
            minImprovement: reader.double(gateSection, "minImprovement", in: -1...1, "-1…1") ?? 0,
            maxCalibrationError: reader.double(gateSection, "maxCalibrationError", in: Double.leastNonzeroMagnitude...1, "greater than 0, at most 1") ?? 0.15)
        return RetrainingPolicy(
            everyLabels: reader.int(section, "everyLabels", in: 1...100_000_000, "at least 1, or null for off"),
            everyEventTime: reader.span(section, "everyEventTime"),
            everyWallClock: reader.span(section, "everyWallClock"),
            onDriftAlert: reader.bool(section, "onDriftAlert") ?? true,
            trainingExamples: reader.int(section, "trainingExamples", in: 10...1_000_000_000, "at least 10, or null for all"),
            trainingEventTime: reader.span(section, "trainingEventTime"),
            holdoutShare: reader.double(section, "holdoutShare", in: 0.01...0.9, "0.01…0.9") ?? 0.2,
            l2: reader.double(section, "l2", in: 0...1e6, "at least 0") ?? 1.0,
            classWeight: reader.choice(section, "classWeight", RetrainingPolicy.ClassWeight.self) ?? RetrainingPolicy.ClassWeight.none,
            gate: gate,
            canaryShare: reader.double(section, "canaryShare", in: 0...(1 - Double.ulpOfOne), "0 (off) up to, but not including, 1") ?? 0)
    }

    // MARK: Helpers

    private func reportUnknownField(_ name: String, path: String, at node: Node?, fields: [String: FieldSpec]) {
        reader.report(.unknownReference, path, at: node,
                      "field \"\(name)\" is not declared in fields\(reader.suggestion(for: name, among: fields.keys.sorted()))")
    }

    private func isIdentifier(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, first == "_" || (first.isASCII && CharacterSet.letters.contains(first)) else { return false }
        return name.unicodeScalars.allSatisfy { $0 == "_" || ($0.isASCII && CharacterSet.alphanumerics.contains($0)) }
    }

    private func firstDuplicate(_ values: [String]) -> String? {
        var seen: Set<String> = []
        return values.first { !seen.insert($0).inserted }
    }
}
