import Contracts
import Foundation
import Kafka

/// A dead letter with where it sits in `loop.events.dlq`.
public struct DeadLetterEntry: Sendable, Hashable {
    public var partition: Int32
    public var offset: Int64
    /// The DLQ record's key (ingest keys it by entity when it knows one).
    public var key: [UInt8]?
    public var letter: DeadLetter

    public init(partition: Int32, offset: Int64, key: [UInt8]?, letter: DeadLetter) {
        self.partition = partition
        self.offset = offset
        self.key = key
        self.letter = letter
    }

    /// `partition:offset`, how `dlq show` and `dlq replay --at` name an entry.
    public var position: String { "\(partition):\(offset)" }
}

/// Dead letters of one reason.
public struct DeadLetterGroup: Sendable {
    public var reason: String
    public var count: Int
    /// How often each field was blamed, most blamed first.
    public var fields: [(field: String, count: Int)]
    public var firstRejectedMs: Int64
    public var lastRejectedMs: Int64
    /// The message of the newest letter.
    public var example: String
}

/// Reading, grouping and replaying dead letters.
public enum DeadLetters {
    /// The dead letters among `records`, and how many records did not decode as one.
    public static func entries(_ records: [ConsumedRecord]) -> (entries: [DeadLetterEntry], undecodable: Int) {
        var entries: [DeadLetterEntry] = []
        var undecodable = 0
        for record in records {
            guard let value = record.value, let letter = try? DeadLetter(bytes: value) else {
                undecodable += 1
                continue
            }
            entries.append(DeadLetterEntry(partition: record.partition, offset: record.offset, key: record.key, letter: letter))
        }
        return (entries, undecodable)
    }

    /// Groups by reason, largest group first (ties by reason).
    public static func groups(_ entries: [DeadLetterEntry]) -> [DeadLetterGroup] {
        var byReason: [String: [DeadLetterEntry]] = [:]
        for entry in entries { byReason[entry.letter.reason, default: []].append(entry) }
        return byReason.map { reason, entries in
            var fields: [String: Int] = [:]
            for entry in entries { if let field = entry.letter.field { fields[field, default: 0] += 1 } }
            let newest = entries.max { $0.letter.rejectedAtMs < $1.letter.rejectedAtMs }!
            return DeadLetterGroup(
                reason: reason, count: entries.count,
                fields: fields.sorted { ($0.value, $1.key) > ($1.value, $0.key) }.map { ($0.key, $0.value) },
                firstRejectedMs: entries.map(\.letter.rejectedAtMs).min()!, lastRejectedMs: newest.letter.rejectedAtMs,
                example: newest.letter.message)
        }.sorted { ($0.count, $1.reason) > ($1.count, $0.reason) }
    }

    /// The `dlq list` table.
    public static func listText(_ groups: [DeadLetterGroup], undecodable: Int) -> String {
        let total = groups.reduce(0) { $0 + $1.count }
        guard total > 0 else { return "no dead letters" + (undecodable > 0 ? " (\(undecodable) undecodable records)" : "") }
        var rows = [["REASON", "COUNT", "SHARE", "FIELDS", "LAST REJECTED", "EXAMPLE"]]
        for group in groups {
            let fields = group.fields.prefix(3).map { "\($0.field)×\($0.count)" }.joined(separator: " ")
            rows.append([
                group.reason, Format.count(group.count), Format.percent(Double(group.count) / Double(total), 1),
                fields.isEmpty ? "-" : fields, Format.time(ms: group.lastRejectedMs), String(group.example.prefix(80)),
            ])
        }
        var text = Format.table(rows) + "\n\(Format.count(total)) dead letters in \(groups.count) reasons"
        if undecodable > 0 { text += "; \(undecodable) records did not decode as dead letters" }
        return text
    }

    /// The original bytes of a letter.
    public static func originalBody(_ letter: DeadLetter) throws(LoopctlError) -> [UInt8] {
        switch letter.bodyEncoding {
        case "utf8": return Array(letter.body.utf8)
        case "base64":
            guard let data = Data(base64Encoded: letter.body) else {
                throw LoopctlError(.badRecord, "the dead letter's body is not valid base64")
            }
            return Array(data)
        default:
            throw LoopctlError(.badRecord, "unknown bodyEncoding `\(letter.bodyEncoding)` (expected utf8 or base64)")
        }
    }

    /// The record that puts a letter back on `topic` (normally `loop.events.raw`): the original
    /// bytes and headers (sorted by name); the key of the DLQ record, else the `ce_subject` header.
    /// Letters that came in over HTTP get their `ce-` headers renamed to Kafka's `ce_`.
    public static func replayRecord(_ entry: DeadLetterEntry, topic: String) throws(LoopctlError) -> OutgoingRecord {
        let letter = entry.letter
        var headers: [KafkaHeader] = []
        for (name, value) in letter.headers.sorted(by: { $0.key < $1.key }) {
            var headerName = name
            if letter.origin != "kafka" {
                let lowered = name.lowercased()
                if lowered.hasPrefix("ce-") {
                    headerName = "ce_" + lowered.dropFirst(3)
                } else if lowered == "content-type" {
                    headerName = "content-type"
                } else {
                    continue
                }
            }
            headers.append(KafkaHeader(key: headerName, string: value))
        }
        let key = entry.key ?? headers.first { $0.key == "ce_subject" }?.value
        return OutgoingRecord(topic: topic, key: key, value: try originalBody(letter), headers: headers)
    }
}
