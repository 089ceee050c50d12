import Contracts
import Kafka

/// The headers the feature-store adds to its `loop.features` records, so an instance that takes
/// over a partition can tell how far the published states go.
///
/// Each batch of one input partition is published as `count` records: the state of an entity right
/// after each score request applied to it (tagged `fs_request_offset: <offset>`), then the latest
/// state of every entity it changed (left out where it equals that entity's last tagged record, so
/// the last record of each key is always its latest state). Only the batch's last record carries
/// `fs_batch: <id>/<count - 1>/<count>` and `fs_input_next: <offset>`, the input offset after the
/// batch: the idempotent producer keeps one partition's records in order and sends one batch at a
/// time, so once that record is in the log every earlier record of the batch is too. Records after
/// the last batch end in the log (the writer died while publishing) are ignored: their events are
/// applied again from that batch end's offset. Readers that only want the latest state per entity
/// ignore the headers.
enum ChangelogHeaders {
    static let batch = FeatureChangelogHeader.batch
    static let inputNext = FeatureChangelogHeader.inputNext

    static func make(batch: UInt64, index: Int, count: Int, inputNext: Int64) -> [KafkaHeader] {
        Maker(batch: batch, count: count, inputNext: inputNext).headers(index: index)
    }

    /// The headers of one batch's records, with the batch end's formatted once.
    struct Maker {
        private let lastIndex: Int
        private let end: [KafkaHeader]

        init(batch: UInt64, count: Int, inputNext: Int64) {
            lastIndex = count - 1
            end = [
                KafkaHeader(key: ChangelogHeaders.batch, string: "\(String(batch, radix: 16))/\(count - 1)/\(count)"),
                KafkaHeader(key: ChangelogHeaders.inputNext, string: String(inputNext)),
            ]
        }

        /// The headers of record `index` (none but a request's tag before the last record);
        /// `requestOffset` tags a state published for a score request.
        func headers(index: Int, requestOffset: Int64? = nil) -> [KafkaHeader] {
            var headers = index == lastIndex ? end : []
            if let requestOffset {
                headers.append(KafkaHeader(key: FeatureChangelogHeader.requestOffset, string: String(requestOffset)))
            }
            return headers
        }
    }
}

/// Replays one changelog partition: the latest record per entity up to the last batch end and the
/// input offset after it.
struct ChangelogReplay {
    /// Latest record per entity.
    private(set) var latest: [String: [UInt8]] = [:]
    /// The input offset after the last complete batch read, if any.
    private(set) var inputNext: Int64?
    /// The changelog offset after the last record read.
    private(set) var changelogNext: Int64
    /// Records that could not be used (no key or value).
    private(set) var skipped = 0

    /// The records read since the last batch end: they count once a batch end follows them. Records
    /// of a batch left incomplete by a writer that died are followed by a later writer's batch,
    /// which supersedes them (it applied their events again), so they are kept with it.
    private var pending: [(entity: String, value: [UInt8])] = []

    init(startingAt offset: Int64) { changelogNext = offset }

    mutating func add(_ record: ConsumedRecord) {
        changelogNext = max(changelogNext, record.offset + 1)
        if let key = record.key, let value = record.value {
            pending.append((String(decoding: key, as: UTF8.self), value))
        } else {
            skipped += 1
        }
        // Logs written before batch ends alone were marked carry the headers on every record; only
        // the last record of a batch ends it there too.
        guard let position = FeatureChangelogHeader.position(
            batch: record.header(ChangelogHeaders.batch)?.value, inputNext: record.header(ChangelogHeaders.inputNext)?.value),
            position.isLast
        else { return }
        for (entity, value) in pending { latest[entity] = value }
        pending.removeAll(keepingCapacity: true)
        inputNext = max(inputNext ?? .min, position.inputNext)
    }

    /// Ends the replay: records after the last batch end are dropped.
    mutating func finish() { pending = [] }
}
