import Contracts
import Kafka

/// The headers the feature-store adds to its `loop.features` records, so an instance that takes
/// over a partition can tell how far the published states go.
///
/// Each batch of one input partition is published as `count` records: the state of an entity right
/// after each score request applied to it (tagged `fs_request_offset: <offset>`), then the latest
/// state of every entity it changed (left out where it equals that entity's last tagged record, so
/// the last record of each key is always its latest state); every record carries `fs_batch: <id>/<index>/<count>` and
/// `fs_input_next: <offset>`, the input offset after the batch. A batch whose records are not all
/// in the log (the writer died while publishing) is ignored when it is the last one: its events
/// are applied again from the previous complete batch's offset. Readers that only want the
/// latest state per entity ignore the headers.
enum ChangelogHeaders {
    static let batch = FeatureChangelogHeader.batch
    static let inputNext = FeatureChangelogHeader.inputNext

    static func make(batch: UInt64, index: Int, count: Int, inputNext: Int64) -> [KafkaHeader] {
        Maker(batch: batch, count: count, inputNext: inputNext).headers(index: index)
    }

    /// The headers of one batch's records, with the parts every record shares formatted once.
    struct Maker {
        private let prefix: [UInt8]
        private let suffix: [UInt8]
        private let next: KafkaHeader

        init(batch: UInt64, count: Int, inputNext: Int64) {
            prefix = Array("\(String(batch, radix: 16))/".utf8)
            suffix = Array("/\(count)".utf8)
            next = KafkaHeader(key: ChangelogHeaders.inputNext, string: String(inputNext))
        }

        /// The headers of record `index`; `requestOffset` tags a state published for a score request.
        func headers(index: Int, requestOffset: Int64? = nil) -> [KafkaHeader] {
            var value = prefix
            value.reserveCapacity(prefix.count + 8 + suffix.count)
            appendDecimal(index, to: &value)
            value += suffix
            var headers = [KafkaHeader(key: ChangelogHeaders.batch, value: value), next]
            if let requestOffset {
                headers.append(KafkaHeader(key: FeatureChangelogHeader.requestOffset, string: String(requestOffset)))
            }
            return headers
        }

        private func appendDecimal(_ number: Int, to bytes: inout [UInt8]) {
            guard number >= 10 else {
                bytes.append(UInt8(ascii: "0") + UInt8(number))
                return
            }
            appendDecimal(number / 10, to: &bytes)
            bytes.append(UInt8(ascii: "0") + UInt8(number % 10))
        }
    }
}

/// Replays one changelog partition: the latest record per entity among complete batches and
/// the input offset after the last complete batch.
struct ChangelogReplay {
    /// Latest record per entity.
    private(set) var latest: [String: [UInt8]] = [:]
    /// The input offset after the last complete batch read, if any.
    private(set) var inputNext: Int64?
    /// The changelog offset after the last record read.
    private(set) var changelogNext: Int64
    /// Records that could not be used (no key or value).
    private(set) var skipped = 0

    private var pending: (batch: UInt64, count: Int, inputNext: Int64, seen: Set<Int>, records: [(String, [UInt8])])?

    init(startingAt offset: Int64) { changelogNext = offset }

    mutating func add(_ record: ConsumedRecord) {
        changelogNext = max(changelogNext, record.offset + 1)
        guard let key = record.key, let value = record.value else {
            skipped += 1
            return
        }
        let entity = String(decoding: key, as: UTF8.self)
        guard let position = FeatureChangelogHeader.position(
            batch: record.header(ChangelogHeaders.batch)?.value, inputNext: record.header(ChangelogHeaders.inputNext)?.value)
        else {
            flushPending()
            latest[entity] = value
            return
        }
        if let current = pending, current.batch != position.batch { flushPending() }
        if pending == nil {
            pending = (position.batch, position.count, position.inputNext, [], [])
        }
        pending!.seen.insert(position.index)
        pending!.records.append((entity, value))
        if pending!.seen.count == pending!.count {
            for (entity, value) in pending!.records { latest[entity] = value }
            inputNext = max(inputNext ?? .min, pending!.inputNext)
            pending = nil
        }
    }

    /// An incomplete batch followed by other records was superseded by them (a later writer
    /// applied its events again), so its records are kept, without its offset.
    private mutating func flushPending() {
        guard let current = pending else { return }
        for (entity, value) in current.records { latest[entity] = value }
        pending = nil
    }

    /// Ends the replay: a trailing incomplete batch is dropped.
    mutating func finish() { pending = nil }
}
