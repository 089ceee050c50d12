import Contracts
import Features
import Hummingbird
import NIOCore
import ServiceKit

/// The read side: current and point-in-time feature values of the entities this instance holds,
/// evaluated with the shared ``EntityFeatureState/evaluate(asOf:)`` so they match the scorer's.
public struct FeatureQueries: Sendable {
    let schema: FeatureSchema
    let settings: FeatureSettings
    let registry: StoreRegistry

    /// Feature values of one entity at one time.
    public struct Values: Sendable, Equatable {
        /// The entity.
        public var entity: String
        /// The time the values are evaluated at, in seconds since the epoch.
        public var asOf: Double
        /// The latest event time of the state they come from.
        public var latestEventTime: Double?
        /// Values in definition order (`nil` where undefined).
        public var values: [Double?]
    }

    /// The current values of `entity`, evaluated at its latest event time.
    /// - Throws: ``ServiceError`` 404 when no partition of this instance holds the entity.
    public func current(_ entity: String) throws -> Values {
        let state = try stored(entity) ?? { throw notFound(entity) }()
        let time = state.latestEventTime ?? 0
        return Values(entity: entity, asOf: time, latestEventTime: state.latestEventTime, values: try state.evaluate(asOf: time))
    }

    /// The values of `entity` as of `time`, evaluated at `time` with the shared evaluation.
    ///
    /// What they reflect, with `I` = ``FeatureStoreOptions/historyInterval`` and the history kept
    /// for `features.historyRetention` of event time:
    /// - `time` at or after the entity's latest event time: the current state, exactly.
    /// - Otherwise the newest snapshot whose latest event time is at or before `time`. A snapshot
    ///   is the state after the last event of one interval `[k·I, (k+1)·I)`, taken when a later
    ///   event moves the entity into a later interval. For input in event-time order this means:
    ///   every event before the start of `time`'s interval is reflected and no event after
    ///   `time`; the events of `time`'s own interval are reflected only when none of them is after
    ///   `time` (else the read falls back to the previous interval's snapshot). Events applied
    ///   late (inside the allowed lateness, after their interval's snapshot was taken) appear only
    ///   in later snapshots and the current state.
    /// - Throws: ``ServiceError`` 404 when the entity is unknown or has no state that old.
    public func values(of entity: String, asOf time: Timestamp) throws -> Values {
        let millis = time.epochMilliseconds
        let seconds = Double(time.seconds) + Double(time.nanoseconds) / 1e9
        guard let current = try stored(entity) else { throw notFound(entity) }
        let state: EntityFeatureState
        if let latest = current.latestEventTime, seconds >= latest {
            state = current
        } else if let bytes = try snapshot(entity, atOrBefore: millis) {
            state = try EntityFeatureState(decoding: bytes, schema: schema)
        } else {
            throw ServiceError.notFound(
                "entity '\(entity)' has no feature history at or before \(time) (history is kept for \(settings.historyRetention))")
        }
        let at = max(seconds, state.latestEventTime ?? seconds)
        return Values(entity: entity, asOf: at, latestEventTime: state.latestEventTime, values: try state.evaluate(asOf: at))
    }

    private func stored(_ entity: String) throws -> EntityFeatureState? {
        for store in registry.all {
            if let bytes = try store.current(entity) { return try EntityFeatureState(decoding: bytes, schema: schema) }
        }
        return nil
    }

    private func snapshot(_ entity: String, atOrBefore millis: Int64) throws -> [UInt8]? {
        for store in registry.all {
            if try store.current(entity) != nil { return try store.snapshot(entity, atOrBefore: millis) }
        }
        return nil
    }

    private func notFound(_ entity: String) -> ServiceError {
        let partitions = registry.all.map { String($0.partition) }.joined(separator: ",")
        return ServiceError.notFound(
            "entity '\(entity)' has no features in the partitions this instance holds [\(partitions)]")
    }

    // MARK: - JSON

    /// `{"entity", "asOf", "latestEventTime", "features": {name: value|null}}` as canonical JSON.
    func json(_ values: Values) -> [UInt8] {
        var features: [(String, JSONValue)] = []
        for (spec, value) in zip(schema.features, values.values) {
            features.append((spec.name, value.map(JSONValue.double) ?? .null))
        }
        let object: JSONValue = .object(JSONObject([
            ("entity", .string(values.entity)),
            ("asOf", .string(Self.timestamp(values.asOf))),
            ("latestEventTime", values.latestEventTime.map { .string(Self.timestamp($0)) } ?? .null),
            ("features", .object(JSONObject(features))),
        ]))
        return object.canonicalBytes()
    }

    /// The feature definitions in `loop.yaml` order.
    func definitionsJSON() -> [UInt8] {
        let definitions: [JSONValue] = settings.definitions.map { definition in
            var members: [(String, JSONValue)] = [
                ("name", .string(definition.name)),
                ("aggregation", .string(definition.aggregation.rawValue)),
                ("eventTypes", .array(definition.eventTypes.map(JSONValue.string))),
            ]
            if let field = definition.field { members.append(("field", .string(field))) }
            if let window = definition.window {
                members.append(("window", .string(window.description)))
                if let width = schema.bucketWidth(for: window) { members.append(("bucketSeconds", .double(width.seconds))) }
            }
            if let halfLife = definition.halfLife { members.append(("halfLife", .string(halfLife.description))) }
            return .object(JSONObject(members))
        }
        let object: JSONValue = .object(JSONObject([
            ("features", .array(definitions)),
            ("allowedLateness", .string(settings.allowedLateness.description)),
            ("historyRetention", .string(settings.historyRetention.description)),
            ("layoutFingerprint", .int(Int64(schema.fingerprint))),
        ]))
        return object.canonicalBytes()
    }

    static func timestamp(_ seconds: Double) -> String {
        let millis = Int64((seconds * 1000).rounded(.down))
        return Timestamp(seconds: floorDivide(millis, 1000), nanoseconds: Int32(millis - floorDivide(millis, 1000) * 1000) * 1_000_000).text
    }

    // MARK: - Routes

    /// Adds `GET /v1/features/{entity}` (with optional `?asOf=<RFC 3339>`) and
    /// `GET /v1/feature-definitions` to `router`.
    public func addRoutes(to router: Router<LoopRequestContext>) {
        router.get("v1/features/:entity") { request, context in
            let entity = try context.parameters.require("entity")
            let values: Values
            if let asOf = request.uri.queryParameters.get("asOf") {
                let time: Timestamp
                do {
                    time = try Timestamp(rfc3339: asOf)
                } catch {
                    throw ServiceError.badRequest("asOf '\(asOf)' is not an RFC 3339 time such as 2024-05-01T12:00:00Z")
                }
                values = try self.values(of: entity, asOf: time)
            } else {
                values = try self.current(entity)
            }
            return Self.response(self.json(values))
        }
        router.get("v1/feature-definitions") { _, _ in
            Self.response(self.definitionsJSON())
        }
    }

    private static func response(_ bytes: [UInt8]) -> Response {
        Response(
            status: .ok, headers: [.contentType: "application/json; charset=utf-8"],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes)))
    }
}
