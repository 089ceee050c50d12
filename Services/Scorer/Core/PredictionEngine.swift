import Contracts
import Features
import Kafka
import Learning

// MARK: - Requests

/// One score request: a `loop.score_request.v1` event's requestId, entity, event time and context.
public struct ScoreRequest: Sendable {
    public var requestId: String
    /// The entity (the event's `subject`, the Kafka key).
    public var entity: String
    /// The request's event time, milliseconds since the epoch.
    public var eventTimeMs: Int64
    /// The event's data: `requestId` and the context fields.
    public var context: JSONObject
    /// W3C trace context carried by the event.
    public var traceparent: String?

    /// A request from its parts.
    public init(requestId: String, entity: String, eventTimeMs: Int64, context: JSONObject, traceparent: String? = nil) {
        self.requestId = requestId
        self.entity = entity
        self.eventTimeMs = eventTimeMs
        self.context = context
        self.traceparent = traceparent
    }

    /// The `ce_type` header value of current score requests.
    static let scoreRequestType = Array(EventType.scoreRequest.description.utf8)

    /// Whether a `loop.events` record is a score request, by its `ce_type` header alone.
    public static func isScoreRequest(_ record: ConsumedRecord) -> Bool {
        for header in record.headers where header.key == "ce_type" {
            guard let value = header.value else { return false }
            if value == scoreRequestType { return true }
            guard let type = EventType(String(decoding: value, as: UTF8.self)) else { return false }
            return type.kind == .scoreRequest && type.isAccepted
        }
        return false
    }

    /// The request of a `loop.events` record. Binary mode (what ingest writes) is read straight from
    /// the `ce_subject`, `ce_time`, `ce_traceparent` headers and the JSON value, without building a
    /// `CloudEvent`; structured mode goes through ``KafkaBinding``. `parser` is reused across the
    /// records of a batch.
    public init(record: ConsumedRecord, parser: inout JSONParser) throws(ScorerError) {
        var subject: [UInt8]?
        var time: [UInt8]?
        var traceparent: [UInt8]?
        var id: [UInt8]?
        for header in record.headers {
            switch header.key {
            case "ce_subject": subject = header.value
            case "ce_time": time = header.value
            case "ce_traceparent": traceparent = header.value
            case "ce_id": id = header.value
            case "content-type":
                if let value = header.value, value.starts(with: Self.structuredPrefix) {
                    try self.init(structured: record)
                    return
                }
            default: continue
            }
        }
        // The event's id for error messages, made only when one is thrown.
        var eventID: String { id.map { String(decoding: $0, as: UTF8.self) } ?? "\(record.topic)[\(record.partition)]@\(record.offset)" }
        guard let entityBytes = subject ?? record.key, !entityBytes.isEmpty else {
            throw ScorerError(.invalidRequest, "score request \(eventID) has no subject (entity)")
        }
        guard let time else { throw ScorerError(.invalidRequest, "score request \(eventID) has no time") }
        let eventTimeMs: Int64
        do { eventTimeMs = try Timestamp.epochMilliseconds(rfc3339: time) } catch {
            throw ScorerError(.invalidRequest, "score request \(eventID) has an invalid time: \(error.message)")
        }
        let parsed = record.value.flatMap { value in value.withUnsafeBytes { try? parser.parse($0) } }
        guard case .object(let data)? = parsed else {
            throw ScorerError(.invalidRequest, "score request \(eventID) has no JSON object data")
        }
        guard let requestId = data[PayloadField.requestId]?.stringValue, !requestId.isEmpty else {
            throw ScorerError(.invalidRequest, "score request \(eventID) has no requestId")
        }
        self.init(
            requestId: requestId, entity: String(decoding: entityBytes, as: UTF8.self),
            eventTimeMs: eventTimeMs, context: data,
            traceparent: traceparent.map { String(decoding: $0, as: UTF8.self) })
    }

    static let structuredPrefix = Array("application/cloudevents".utf8)

    private init(structured record: ConsumedRecord) throws(ScorerError) {
        let message = KafkaBinding.Message(
            key: record.key, value: record.value,
            headers: record.headers.map { KafkaBinding.Header(name: $0.key, value: $0.value) })
        let event: CloudEvent
        do { event = try KafkaBinding.decode(message) } catch {
            throw ScorerError(.invalidRequest, "\(record.topic)[\(record.partition)]@\(record.offset): \(error)")
        }
        try self.init(event: event)
    }

    /// The request of a decoded score-request event.
    public init(event: CloudEvent) throws(ScorerError) {
        guard let subject = event.subject, !subject.isEmpty else {
            throw ScorerError(.invalidRequest, "score request \(event.id) has no subject (entity)")
        }
        guard let time = event.time else {
            throw ScorerError(.invalidRequest, "score request \(event.id) has no time")
        }
        guard case .json(.object(let data)) = event.data else {
            throw ScorerError(.invalidRequest, "score request \(event.id) has no JSON object data")
        }
        guard let requestId = data[PayloadField.requestId]?.stringValue, !requestId.isEmpty else {
            throw ScorerError(.invalidRequest, "score request \(event.id) has no requestId")
        }
        var traceparent: String?
        if case .string(let value)? = event.extensions["traceparent"] { traceparent = value }
        self.init(requestId: requestId, entity: subject, eventTimeMs: time.epochMilliseconds, context: data, traceparent: traceparent)
    }
}

/// The reason codes a prediction carries when it was routed or decided by fallback.
public enum PredictionReason {
    /// A model input had no value (no feature state, an undefined feature, a missing context field).
    public static let missingFeatures = "missing_features"
    /// The entity's features were older than `decision.maxFeatureAge` at request time.
    public static let staleFeatures = "stale_features"
    /// An input lay outside what the deciding model was trained on.
    public static let outOfRange = "out_of_range"
    /// The score fell inside the review band.
    public static let reviewBand = "review_band"
}

// MARK: - Engine

/// Scores requests: evaluates features as of the request time, joins the context fields, picks the
/// deciding model (canary by a stable hash of requestId, else champion, else the baseline),
/// shadow-scores the challengers, applies output control and the decision policy, and explains.
///
/// Holds reusable buffers, so one engine belongs to one task; scoring allocates only the
/// prediction's own arrays.
public final class PredictionEngine {
    public let layout: RequestVectorLayout
    public let policy: DecisionPolicy
    /// Taken out of the engine for the length of one ``predict(_:state:models:)`` and put back, so
    /// the inner loops work on local arrays (no exclusivity check per element of a class property).
    private var reusable: Buffers

    /// The per-request working arrays.
    private struct Buffers {
        /// The request vector: features, then context fields (``RequestVectorLayout``).
        var values: [Double] = []
        var present: [Bool] = []
        /// The raw values of the context fields some serving model takes as categorical.
        var categories: [String?] = []
        /// One model's inputs and their contributions.
        var inputs: [Double] = []
        var contributions: [Double] = []
        /// Positions of the largest contributions.
        var top: [Int] = []
    }

    /// An engine for `layout` deciding by `policy`.
    public init(layout: RequestVectorLayout, policy: DecisionPolicy) {
        self.layout = layout
        self.policy = policy
        reusable = Buffers(
            values: [Double](repeating: 0, count: layout.count),
            present: [Bool](repeating: false, count: layout.count),
            categories: [String?](repeating: nil, count: layout.contextFields.count),
            top: [Int](repeating: 0, count: max(0, policy.explainTopK)))
    }

    /// The prediction for `request` given the entity's feature state (`nil`: none) and the models
    /// serving now. `latencyMs` is left for the caller to stamp.
    public func predict(_ request: ScoreRequest, state: EntityFeatureState?, models: ServingModels) -> Prediction {
        var buffers = reusable
        reusable = Buffers()
        defer { reusable = buffers }
        let requestTime = Double(request.eventTimeMs) / 1000
        var reasons: [String] = []
        var asOfMs: Int64?
        var ageSeconds: Double?
        var missing = false

        // Features, as of the request time (or the record's latest event when the request is older).
        var evaluated: [Double?] = []
        if let state, let latest = state.latestEventTime {
            let asOf = max(requestTime, latest)
            if let result = try? state.evaluate(asOf: asOf) {
                evaluated = result
                asOfMs = Int64((asOf * 1000).rounded())
                ageSeconds = requestTime - latest
            }
        }
        for i in 0..<layout.featureCount {
            let index = layout.evaluationIndices[i]
            if index < evaluated.count, let value = evaluated[index], value.isFinite {
                buffers.values[i] = value
                buffers.present[i] = true
            } else {
                buffers.present[i] = false
                missing = true
            }
        }
        // Context fields, from the request's data.
        let hasCategorical = !models.categoricalPositions.isEmpty
        for (offset, field) in layout.contextFields.enumerated() {
            let i = layout.featureCount + offset
            if hasCategorical, models.categoricalPositions.contains(i) {
                let category = Self.category(request.context[field])
                buffers.categories[offset] = category
                buffers.present[i] = category != nil
                buffers.values[i] = category.flatMap { Double($0) } ?? .nan
                if category == nil { missing = true }
            } else if let number = Self.number(request.context[field]) {
                buffers.values[i] = number
                buffers.present[i] = true
            } else {
                buffers.present[i] = false
                missing = true
            }
        }
        if missing { reasons.append(PredictionReason.missingFeatures) }
        if let ageSeconds, ageSeconds > policy.maxFeatureAge.seconds { reasons.append(PredictionReason.staleFeatures) }

        // The deciding model.
        var decider = models.champion
        var role = ModelRole.champion
        if let canary = models.canary, Self.canaryBucket(request.requestId) < models.canaryShare {
            decider = canary
            role = .canary
        }
        var score = policy.baselineScore
        var explanation: [Contribution] = []
        if let decider {
            fillInputs(for: decider, &buffers)
            if decider.scorer.firstOutOfRange(buffers.inputs, maxZScore: policy.maxZScore) != nil {
                reasons.append(PredictionReason.outOfRange)
            }
            score = scoreInputs(decider, &buffers, explain: true, into: &explanation)
        } else {
            role = .baseline
        }

        // Challengers: whichever of champion and canary did not decide, then the shadows.
        var challengers: [ChallengerScore] = []
        if role == .canary, let champion = models.champion {
            challengers.append(ChallengerScore(modelVersion: champion.version, role: .champion, score: challengerScore(champion, &buffers)))
        } else if let canary = models.canary {
            challengers.append(ChallengerScore(modelVersion: canary.version, role: .canary, score: challengerScore(canary, &buffers)))
        }
        for shadow in models.shadows {
            challengers.append(ChallengerScore(modelVersion: shadow.version, role: .shadow, score: challengerScore(shadow, &buffers)))
        }

        // Output control, then the decision policy.
        var decision = score >= policy.threshold
        var route = Route.auto
        if !reasons.isEmpty {
            switch policy.fallback {
            case .review: route = .review
            case .positive: decision = true
            case .negative: decision = false
            }
        } else if let band = policy.reviewBand, band.contains(score) {
            reasons.append(PredictionReason.reviewBand)
            route = .review
        }

        var features: [FeatureValue] = []
        features.reserveCapacity(layout.count)
        if hasCategorical { recordCategoryCodes(of: decider, models: models, &buffers) }
        for i in 0..<layout.count {
            features.append(FeatureValue(name: layout.names[i], value: buffers.present[i] ? buffers.values[i] : nil))
        }
        return Prediction(
            requestId: request.requestId, entity: request.entity, eventTimeMs: request.eventTimeMs,
            modelVersion: decider?.version, role: role, score: score, decision: decision, route: route,
            reasons: reasons, features: features, explanation: explanation, challengers: challengers,
            featuresAsOfMs: asOfMs, featureAgeSeconds: ageSeconds, traceparent: request.traceparent)
    }

    /// A number from a JSON value: numbers, booleans as 0/1, numeric strings.
    static func number(_ value: JSONValue?) -> Double? {
        guard let value else { return nil }
        if let number = value.doubleValue { return number.isFinite ? number : nil }
        if let flag = value.boolValue { return flag ? 1 : 0 }
        if let text = value.stringValue, let number = Double(text), number.isFinite { return number }
        return nil
    }

    /// The category of a categorical context value: a string as is, a number or boolean as its text.
    static func category(_ value: JSONValue?) -> String? {
        guard let value else { return nil }
        if let text = value.stringValue { return text }
        if let flag = value.boolValue { return flag ? "true" : "false" }
        if let number = value.doubleValue, number.isFinite {
            return number == number.rounded() && abs(number) < 1e15 ? String(Int64(number)) : String(number)
        }
        return nil
    }

    /// Puts, for each categorical context field, the deciding model's category code into the
    /// recorded vector (the convention feedback's drift monitor reads back): the level's index, or
    /// ``Learning/FeatureSchema/otherCode``. A field the decider takes as numeric keeps its number.
    private func recordCategoryCodes(of decider: ServingModel?, models: ServingModels, _ buffers: inout Buffers) {
        for position in models.categoricalPositions {
            let offset = position - layout.featureCount
            guard let category = buffers.categories[offset] else { continue }
            if let decider, let j = decider.inputs.firstIndex(of: position), let codes = decider.categoryCodes[j] {
                buffers.values[position] = codes[category] ?? Learning.FeatureSchema.otherCode
            } else if !buffers.values[position].isFinite {
                buffers.present[position] = false
            }
        }
    }

    private func fillInputs(for model: ServingModel, _ buffers: inout Buffers) {
        let count = model.inputs.count
        if buffers.inputs.count != count {
            buffers.inputs = [Double](repeating: 0, count: count)
            buffers.contributions = [Double](repeating: 0, count: count)
        }
        for j in 0..<count {
            let position = model.inputs[j]
            if let codes = model.categoryCodes[j] {
                let category = buffers.categories[position - layout.featureCount]
                buffers.inputs[j] = category.flatMap { codes[$0] } ?? Learning.FeatureSchema.otherCode
            } else {
                let value = buffers.values[position]
                buffers.inputs[j] = buffers.present[position] && value.isFinite ? value : model.imputed[j]
            }
        }
    }

    private func scoreInputs(
        _ model: ServingModel, _ buffers: inout Buffers, explain: Bool, into explanation: inout [Contribution]
    ) -> Double {
        let baseline = policy.baselineScore
        let score = buffers.inputs.withUnsafeBufferPointer { input in
            buffers.contributions.withUnsafeMutableBufferPointer { output in
                (try? model.scorer.score(input, contributions: output))?.probability ?? baseline
            }
        }
        guard explain, !buffers.top.isEmpty else { return score }
        let k = policy.explainTopK
        let written = buffers.contributions.withUnsafeBufferPointer { values in
            buffers.top.withUnsafeMutableBufferPointer { LinearScorer.topContributions(values, k: k, into: $0) }
        }
        explanation.reserveCapacity(written)
        let names = model.scorer.schema.features
        for position in 0..<written {
            let j = buffers.top[position]
            explanation.append(Contribution(feature: names[j].name, contribution: buffers.contributions[j]))
        }
        return score
    }

    private func challengerScore(_ model: ServingModel, _ buffers: inout Buffers) -> Double {
        fillInputs(for: model, &buffers)
        var unused: [Contribution] = []
        return scoreInputs(model, &buffers, explain: false, into: &unused)
    }

    /// A stable number in `[0, 1)` for `requestId` (FNV-1a, then a SplitMix64 finalizer): a canary
    /// with share `s` decides exactly the requests whose bucket is below `s`, in every instance and
    /// on every replay.
    public static func canaryBucket(_ requestId: String) -> Double {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in requestId.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        hash = (hash ^ (hash >> 30)) &* 0xbf58_476d_1ce4_e5b9
        hash = (hash ^ (hash >> 27)) &* 0x94d0_49bb_1331_11eb
        hash ^= hash >> 31
        return Double(hash >> 11) * 0x1p-53
    }
}
