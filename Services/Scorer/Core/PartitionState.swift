import Features
import Synchronization

/// The latest feature state of every entity of the assigned partitions, as read from
/// `loop.features` (latest record per key; a tombstone removes the entity).
///
/// Also keeps, per partition, how far the feature-store's published states go in `loop.events`
/// (the `fs_input_next` header of the last record of each complete changelog batch).
public final class FeatureTable: Sendable {
    private let partitions = Mutex<[Int32: [String: EntityFeatureState]]>([:])
    private let coveredInput = Mutex<[Int32: Int64]>([:])
    /// Per partition, the states the feature-store published as of score requests not yet scored,
    /// by the request's `loop.events` offset (the `fs_request_offset` changelog header).
    private let requestStates = Mutex<[Int32: [Int64: EntityFeatureState]]>([:])

    /// Most request states held per partition; beyond it the oldest are forgotten (their requests
    /// then use the entity's latest state).
    static let requestStateCapacity = 200_000

    /// An empty table.
    public init() {}

    /// Starts (or restarts) holding `partition`, empty.
    func open(_ partition: Int32) {
        partitions.withLock { $0[partition] = [:] }
        _ = coveredInput.withLock { $0.removeValue(forKey: partition) }
        _ = requestStates.withLock { $0.removeValue(forKey: partition) }
    }

    /// Stops holding `partition` and forgets its entities.
    func drop(_ partition: Int32) {
        _ = partitions.withLock { $0.removeValue(forKey: partition) }
        _ = coveredInput.withLock { $0.removeValue(forKey: partition) }
        _ = requestStates.withLock { $0.removeValue(forKey: partition) }
    }

    /// Stores (or, with `nil`, removes) the state of `entity` in `partition`; `inputNext` is the
    /// `loop.events` offset the feature-store's published states of `partition` now cover (if known).
    /// `requests` are states as of score requests, by the request's offset.
    func store(
        _ states: [(entity: String, state: EntityFeatureState?)], partition: Int32, inputNext next: Int64? = nil,
        requests: [(offset: Int64, state: EntityFeatureState)] = []
    ) {
        partitions.withLock { partitions in
            guard partitions[partition] != nil else { return }
            for (entity, state) in states { partitions[partition]![entity] = state }
            if let next {
                coveredInput.withLock { $0[partition] = max($0[partition] ?? next, next) }
            }
            guard !requests.isEmpty else { return }
            requestStates.withLock { held in
                var states = held[partition] ?? [:]
                for (offset, state) in requests { states[offset] = state }
                if states.count > Self.requestStateCapacity {
                    for offset in states.keys.sorted().prefix(states.count - Self.requestStateCapacity) {
                        states.removeValue(forKey: offset)
                    }
                }
                held[partition] = states
            }
        }
    }

    /// Takes the state the feature-store published as of the score request at `offset`, if any.
    func takeRequestState(partition: Int32, offset: Int64) -> EntityFeatureState? {
        requestStates.withLock { $0[partition]?.removeValue(forKey: offset) }
    }

    /// Whether the state as of the score request at `offset` has arrived.
    func hasRequestState(partition: Int32, offset: Int64) -> Bool {
        requestStates.withLock { $0[partition]?[offset] != nil }
    }

    /// Forgets the request states of offsets up to `offset`: their requests have been read.
    func forgetRequestStates(partition: Int32, through offset: Int64) {
        requestStates.withLock { held in
            guard let states = held[partition], states.keys.contains(where: { $0 <= offset }) else { return }
            held[partition] = states.filter { $0.key > offset }
        }
    }

    /// The `loop.events` offset up to which the feature-store has published the states of
    /// `partition` (exclusive), if its changelog headers said so.
    public func inputNext(of partition: Int32) -> Int64? {
        coveredInput.withLock { $0[partition] }
    }

    /// The state of `entity` in `partition`.
    public func state(of entity: String, partition: Int32) -> EntityFeatureState? {
        partitions.withLock { $0[partition]?[entity] }
    }

    /// The state of `entity` in whichever held partition has it.
    public func state(of entity: String) -> EntityFeatureState? {
        partitions.withLock { partitions in
            for (_, entities) in partitions { if let state = entities[entity] { return state } }
            return nil
        }
    }

    /// Looks up many entities under one lock: `body` gets a lookup function.
    func withLookup<T>(_ body: ((String, Int32) -> EntityFeatureState?) -> T) -> T {
        partitions.withLock { partitions in body { entity, partition in partitions[partition]?[entity] } }
    }

    /// Looks up many entities and partitions' ``inputNext(of:)`` under one lock.
    func withLookup<T>(_ body: ((String, Int32) -> EntityFeatureState?, (Int32) -> Int64?) -> T) -> T {
        partitions.withLock { partitions in
            coveredInput.withLock { next in
                body({ entity, partition in partitions[partition]?[entity] }, { next[$0] })
            }
        }
    }

    /// The number of entities held.
    public var entityCount: Int { partitions.withLock { $0.values.reduce(0) { $0 + $1.count } } }
}

/// The requestIds already answered per partition, bounded: the oldest are forgotten first once a
/// partition holds ``capacity`` of them.
public final class RequestDeduplicator: Sendable {
    private struct Window {
        var seen: Set<String> = []
        var order: [String] = []
        var next = 0

        mutating func insert(_ id: String, capacity: Int) -> Bool {
            guard seen.insert(id).inserted else { return false }
            if order.count < capacity {
                order.append(id)
            } else {
                seen.remove(order[next])
                order[next] = id
                next = (next + 1) % capacity
            }
            return true
        }
    }

    /// How many requestIds a partition remembers.
    public let capacity: Int
    private let partitions = Mutex<[Int32: Window]>([:])

    /// A deduplicator remembering `capacity` ids per partition.
    public init(capacity: Int) { self.capacity = max(1, capacity) }

    /// Starts holding `partition` with the ids already answered in it (oldest first).
    func open(_ partition: Int32, answered: [String]) {
        var window = Window()
        for id in answered { _ = window.insert(id, capacity: capacity) }
        partitions.withLock { $0[partition] = window }
    }

    /// Forgets `partition`.
    func drop(_ partition: Int32) {
        _ = partitions.withLock { $0.removeValue(forKey: partition) }
    }

    /// Records `requestId` as answered in `partition`; `false` if it already was.
    public func insert(_ requestId: String, partition: Int32) -> Bool {
        let capacity = capacity
        return partitions.withLock { $0[partition, default: Window()].insert(requestId, capacity: capacity) }
    }

    /// Forgets `requestIds` in `partition` (their predictions were never acknowledged).
    func remove(_ requestIds: [String], partition: Int32) {
        partitions.withLock { partitions in
            for id in requestIds { partitions[partition]?.seen.remove(id) }
        }
    }

    /// Whether `requestId` was answered in any held partition.
    public func contains(_ requestId: String) -> Bool {
        partitions.withLock { $0.values.contains { $0.seen.contains(requestId) } }
    }
}
