/// The headers the feature-store puts on its `loop.features` records (the value is the entity's
/// encoded feature state, the key its entity). Readers that only want the latest state per entity
/// ignore them; the feature-store reads them back when it takes over a partition, and the scorer
/// uses them to score each request with the state as of that request.
public enum FeatureChangelogHeader {
    /// `<batch id>/<count - 1>/<count>`, on the last record of one published batch of one
    /// partition only: the records before it (up to the previous batch end) belong to the batch.
    /// The producer keeps a partition's records in order, so once this record is in the log the
    /// whole batch is. (Earlier feature-store versions put `<batch id>/<index>/<count>` on every
    /// record; there too only `index == count - 1` ends a batch.)
    public static let batch = "fs_batch"
    /// The `loop.events` offset after the batch, on the batch's last record next to `fs_batch`:
    /// every state derived from earlier offsets of the same partition is in the log once that
    /// record is.
    public static let inputNext = "fs_input_next"
    /// On a state published right after applying a score request: that request's `loop.events`
    /// offset. The state is exactly what the entity's features were when the request arrived, no
    /// later event included.
    public static let requestOffset = "fs_request_offset"

    /// A record's place in its published batch, read from its `fs_batch` and `fs_input_next` values.
    public struct Position: Sendable, Equatable {
        /// The batch id.
        public var batch: UInt64
        /// The record's index in the batch, `0..<count`.
        public var index: Int
        /// How many records the batch has.
        public var count: Int
        /// The `loop.events` offset after the batch.
        public var inputNext: Int64

        /// Whether this is the batch's last record (once it is in the log, the whole batch is).
        public var isLast: Bool { index == count - 1 }
    }

    /// The position given by the values of the `fs_batch` and `fs_input_next` headers, or `nil`
    /// when either is missing or malformed.
    public static func position(batch: [UInt8]?, inputNext: [UInt8]?) -> Position? {
        guard let batch, let inputNext, let next = Int64(String(decoding: inputNext, as: UTF8.self)) else { return nil }
        let parts = String(decoding: batch, as: UTF8.self).split(separator: "/")
        guard parts.count == 3, let id = UInt64(parts[0], radix: 16), let index = Int(parts[1]), let count = Int(parts[2]),
              count > 0, (0..<count).contains(index) else { return nil }
        return Position(batch: id, index: index, count: count, inputNext: next)
    }

    /// The offset in the value of an `fs_request_offset` header, or `nil` when missing or malformed.
    public static func requestOffset(_ value: [UInt8]?) -> Int64? {
        value.flatMap { Int64(String(decoding: $0, as: UTF8.self)) }
    }
}
