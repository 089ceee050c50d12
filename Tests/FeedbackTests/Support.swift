import Contracts
import Feedback
import Foundation
import Kafka
import Logging

let testLogger: Logger = {
    var logger = Logger(label: "feedback-tests")
    logger.logLevel = .warning
    return logger
}()

let hour: Int64 = 3_600_000

/// A prediction of `requestId` for `entity` at `eventTimeMs`.
func prediction(
    _ requestId: String, entity: String = "nsw", at eventTimeMs: Int64, score: Double = 0.7, route: Route = .auto,
    version: Int64? = 1, challengers: [ChallengerScore] = [], features: [FeatureValue] = [FeatureValue(name: "x", value: 0.5)]
) -> Prediction {
    Prediction(
        requestId: requestId, entity: entity, eventTimeMs: eventTimeMs, modelVersion: version, role: .champion,
        score: score, decision: score >= 0.5, route: route, features: features, challengers: challengers)
}

/// Feeds inputs to a join store one record at a time, as the consumer would, with increasing offsets.
struct JoinDriver {
    let store: JoinStore
    let path: String
    var offsets: [String: Int64] = [:]
    /// The prediction records fed so far, as `loop.predictions` holds them.
    var predictionRecords: [ConsumedRecord] = []

    static let predictions = "test.predictions"
    static let events = "test.events"

    init(path: String = ":memory:", deadlineMs: Int64 = 2 * hour, defaultLabel: Bool? = nil, retentionMs: Int64 = 24 * hour) throws {
        self.path = path
        store = try JoinStore(path: path, policy: JoinPolicy(
            deadlineMs: deadlineMs, defaultLabel: defaultLabel, retentionMs: retentionMs, positiveLabel: "1"))
    }

    mutating func record(_ input: JoinInput, partition: Int32 = 0) -> InputRecord {
        let topic: String = if case .prediction = input { Self.predictions } else { Self.events }
        let offset = offsets[topic, default: 0]
        offsets[topic] = offset + 1
        if case .prediction(let served) = input {
            predictionRecords.append(ConsumedRecord(topic: topic, partition: partition, offset: offset, key: nil, value: served.bytes))
        }
        return InputRecord(topic: topic, partition: partition, offset: offset, input: input)
    }

    /// The store opened again from its file, as after a restart, with the served records it asks
    /// for read back from ``predictionRecords`` (as the service reads them from `loop.predictions`).
    func reopen() throws -> JoinStore {
        let reopened = try JoinStore(path: path, policy: store.policy)
        let wanted = reopened.predictionsToRestore()
        reopened.restoreServed(from: predictionRecords.filter { wanted[$0.partition]?.contains($0.offset) == true })
        return reopened
    }

    @discardableResult
    mutating func apply(_ inputs: [JoinInput], partition: Int32 = 0) throws -> JoinBatchResult {
        let records = inputs.map { record($0, partition: partition) }
        return try store.apply(records)
    }
}

func outcome(_ requestId: String, _ label: Bool, at eventTimeMs: Int64, source: LabelSource = .outcome) -> JoinInput {
    .outcome(Outcome(requestId: requestId, label: label, eventTimeMs: eventTimeMs, source: source))
}

/// Waits until `condition` holds, checking every 20 ms, for at most `timeout`.
func waitUntil(timeout: Duration = .seconds(10), _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return try await condition()
}

/// A temporary directory for one test.
func temporaryDirectory(_ name: String) throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("feedback-\(name)-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// Every record of `topic` (all partitions) up to its current end.
func readAll(_ topic: String, partitions: Int32, brokers: String) async throws -> [ConsumedRecord] {
    let reader = try PartitionReader(
        config: KafkaConfig(brokers: brokers), partitions: (0..<partitions).map { TopicPartition(topic: topic, partition: $0) },
        logger: testLogger)
    var records: [ConsumedRecord] = []
    reading: for try await event in reader.events() {
        switch event {
        case .records(let batch): records += batch
        case .caughtUp: break reading
        }
    }
    await reader.close()
    return records
}
