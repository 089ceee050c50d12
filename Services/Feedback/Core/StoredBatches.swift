import Contracts

/// The stored form of one batch's outbox entries: one SQLite row per applied batch holds them all,
/// so storing and confirming an example costs a few bytes in a blob rather than a row of its own.
///
/// Per entry, little-endian: sequence (Int64), partition (Int32), label source, request id and
/// entity (each a UInt32 length and UTF-8), then a flag byte: 1 for a ``PredictionReference``
/// (partition Int32, offset Int64, label UInt8, delay Float64 bits, value flag UInt8 and Float64
/// bits), 2 for a ``StoredPredictionReference`` (row Int64, position Int32, then as for 1), 0 for
/// the example's own bytes (UInt32 length and bytes).
enum OutboxCodec {
    /// Appends `entries` to `output`.
    static func encode(_ entries: some Collection<OutboxEntry>, into output: inout [UInt8]) {
        for entry in entries {
            appendInteger(entry.sequence, to: &output)
            appendInteger(entry.partition, to: &output)
            appendText(entry.labelSource.rawValue, to: &output)
            appendText(entry.requestId, to: &output)
            appendText(entry.entity, to: &output)
            if let reference = entry.reference {
                output.append(1)
                appendInteger(reference.partition, to: &output)
                appendInteger(reference.offset, to: &output)
                output.append(reference.label ? 1 : 0)
                appendInteger(reference.delaySeconds.bitPattern, to: &output)
                output.append(reference.value == nil ? 0 : 1)
                appendInteger((reference.value ?? 0).bitPattern, to: &output)
            } else if let stored = entry.storedPrediction {
                output.append(2)
                appendInteger(stored.row, to: &output)
                appendInteger(stored.position, to: &output)
                output.append(stored.label ? 1 : 0)
                appendInteger(stored.delaySeconds.bitPattern, to: &output)
                output.append(stored.value == nil ? 0 : 1)
                appendInteger((stored.value ?? 0).bitPattern, to: &output)
            } else {
                output.append(0)
                appendInteger(UInt32(entry.bytes.count), to: &output)
                output.append(contentsOf: entry.bytes)
            }
        }
    }

    /// The entries `bytes` holds; entries stored as a reference of either kind come back with empty bytes.
    static func decode(_ bytes: UnsafeRawBufferPointer) throws(FeedbackError) -> [OutboxEntry] {
        var reader = Reader(bytes: bytes)
        var entries: [OutboxEntry] = []
        while !reader.isAtEnd {
            let sequence: Int64 = try reader.integer()
            let partition: Int32 = try reader.integer()
            let sourceText = try reader.text()
            guard let source = LabelSource(rawValue: sourceText) else {
                throw FeedbackError(.storage, "outbox entry \(sequence) has an unknown label source \"\(sourceText)\"")
            }
            let requestId = try reader.text()
            let entity = try reader.text()
            var entry = OutboxEntry(
                sequence: sequence, partition: partition, requestId: requestId, labelSource: source, entity: entity, bytes: [])
            let kind = try reader.byte()
            if kind == 2 {
                let row: Int64 = try reader.integer()
                let position: Int32 = try reader.integer()
                let label = try reader.byte() != 0
                let delay = Double(bitPattern: try reader.integer())
                let hasValue = try reader.byte() != 0
                let value = Double(bitPattern: try reader.integer())
                entry.storedPrediction = StoredPredictionReference(
                    row: row, position: position, label: label, delaySeconds: delay, value: hasValue ? value : nil)
            } else if kind == 1 {
                let referencePartition: Int32 = try reader.integer()
                let offset: Int64 = try reader.integer()
                let label = try reader.byte() != 0
                let delay = Double(bitPattern: try reader.integer())
                let hasValue = try reader.byte() != 0
                let value = Double(bitPattern: try reader.integer())
                entry.reference = PredictionReference(
                    partition: referencePartition, offset: offset, label: label, delaySeconds: delay, value: hasValue ? value : nil)
            } else if kind == 0 {
                let count: UInt32 = try reader.integer()
                entry.bytes = Array(try reader.bytes(Int(count)))
            } else {
                throw FeedbackError(.storage, "outbox entry \(sequence) has an unknown kind \(kind)")
            }
            entries.append(entry)
        }
        return entries
    }

}

/// The stored form of predictions still waiting for a label when their batch was applied: one
/// `pending_batches` row per batch and input partition holds their served records, so a waiting
/// prediction costs a slice of one blob rather than a row (and a B-tree insert) of its own. A row
/// is deleted once none of its predictions still needs its served record (each is labeled or purged).
/// A row most of whose records are no longer needed is compacted (see ``PendingRow``): each record
/// dropped leaves an empty slot, so every position (held in memory and by outbox references) stays valid.
///
/// Per prediction, little-endian: deadline (Int64 ms), then the served record (UInt32 length and
/// bytes; length 0 for a slot compacted away).
enum PendingCodec {
    /// Appends a waiting prediction to `output`.
    static func encode(deadlineMs: Int64, served: [UInt8], into output: inout [UInt8]) {
        appendInteger(deadlineMs, to: &output)
        appendInteger(UInt32(served.count), to: &output)
        output.append(contentsOf: served)
    }

    /// The deadline and served record of each prediction `bytes` holds.
    static func decode(_ bytes: UnsafeRawBufferPointer) throws(FeedbackError) -> [(deadlineMs: Int64, served: [UInt8])] {
        var reader = Reader(bytes: bytes)
        var entries: [(deadlineMs: Int64, served: [UInt8])] = []
        while !reader.isAtEnd {
            let deadlineMs: Int64 = try reader.integer()
            let count: UInt32 = try reader.integer()
            entries.append((deadlineMs, Array(try reader.bytes(Int(count)))))
        }
        return entries
    }

    /// `bytes` with the served record of every position `isNeeded` rejects dropped (its slot left
    /// empty), and the number of records that remain.
    static func compact(_ bytes: UnsafeRawBufferPointer, keeping isNeeded: (Int32) -> Bool) throws(FeedbackError) -> (entries: [UInt8], records: Int) {
        var output: [UInt8] = []
        var records = 0
        for (position, entry) in try decode(bytes).enumerated() {
            let kept = !entry.served.isEmpty && isNeeded(Int32(position))
            encode(deadlineMs: entry.deadlineMs, served: kept ? entry.served : [], into: &output)
            if kept { records += 1 }
        }
        return (output, records)
    }
}

/// Who still needs the served records of one `pending_batches` row: the retained predictions they
/// belong to, until labeled or purged, and the unconfirmed outbox entries referring to them.
///
/// Compaction rule: once the row's holders are at most a quarter of the records it stores, the
/// records nobody holds are dropped (in the transaction that released the holders). The stored row
/// thus never keeps more than four times the records still needed (plus 12 bytes per empty slot),
/// and each compaction at least quarters a row, so rewriting costs at most a third of its first write.
struct PendingRow: Sendable {
    /// The holders of each position.
    private(set) var holdersAt: [Int32] = []
    /// The holders of all positions; ``JoinStore/confirmDelivered(_:reports:)`` counts it down
    /// before its transaction and the positions (``forget(_:)``) only once it committed.
    var holders = 0
    /// Holders let go by confirmations whose transaction has not committed yet: while any is in
    /// flight a batch never deletes the row (a crash would leave their outbox entries without it).
    var releasing = 0
    /// The served records the stored row still holds.
    var records = 0

    /// Notes one more holder of `position`.
    mutating func hold(_ position: Int32) {
        let index = Int(position)
        if index >= holdersAt.count { holdersAt.append(contentsOf: repeatElement(0, count: index + 1 - holdersAt.count)) }
        holdersAt[index] += 1
        holders += 1
    }

    /// Notes that one holder of `position` let go.
    mutating func release(_ position: Int32) {
        holders -= 1
        forget(position)
    }

    /// Notes that one holder of `position`, already subtracted from ``holders``, let go.
    mutating func forget(_ position: Int32) {
        let index = Int(position)
        if holdersAt.indices.contains(index), holdersAt[index] > 0 { holdersAt[index] -= 1 }
    }

    /// Whether the row is due for compaction: held, but by at most a quarter of its records.
    var isWorthCompacting: Bool { holders > 0 && holders * 4 <= records }

    /// Whether some holder still needs the record at `position`.
    func isHeld(_ position: Int32) -> Bool {
        holdersAt.indices.contains(Int(position)) && holdersAt[Int(position)] > 0
    }
}

/// The stored form of resolutions: a prediction labeled (by an outcome, a review or the default
/// label) or expired unlabeled. One `resolved_batches` row per batch and input partition holds the
/// batch's resolutions; a later resolution of the same request (a late outcome after the deadline)
/// supersedes an earlier one. A prediction whose served record is still needed (expired, waiting
/// for a late outcome) keeps it in its `pending_batches` row.
///
/// Per prediction, little-endian: request id and entity (each a UInt32 length and UTF-8), event
/// time and deadline (Int64 ms), route and label source (each a UInt32 length and UTF-8; the
/// source empty when unlabeled), score (Float64 bits), and one byte: the label in bit 0 and the
/// state above it (0 labeled, 1 expired unlabeled, 2 expired with the default label).
enum ResolvedCodec {
    /// Appends the resolution of prediction `id` to `output`.
    static func encode(id: String, _ entry: RetainedPrediction, into output: inout [UInt8]) {
        appendText(id, to: &output)
        appendText(entry.entity, to: &output)
        appendInteger(entry.eventTimeMs, to: &output)
        appendInteger(entry.deadlineMs, to: &output)
        appendText(entry.route.rawValue, to: &output)
        appendText(entry.labelSource?.rawValue ?? "", to: &output)
        appendInteger(entry.score.bitPattern, to: &output)
        let state: UInt8 = switch entry.state {
        case .pending, .labeled: 0
        case .expiredUnlabeled: 1
        case .expiredDefaulted: 2
        }
        output.append(state << 1 | (entry.label == true ? 1 : 0))
    }

    /// The resolutions `bytes` holds, of predictions retained in `partition`.
    static func decode(_ bytes: UnsafeRawBufferPointer, partition: Int32) throws(FeedbackError) -> [(id: String, entry: RetainedPrediction)] {
        var reader = Reader(bytes: bytes)
        var entries: [(id: String, entry: RetainedPrediction)] = []
        while !reader.isAtEnd {
            let id = try reader.text()
            let entity = try reader.text()
            let eventTimeMs: Int64 = try reader.integer()
            let deadlineMs: Int64 = try reader.integer()
            let routeText = try reader.text()
            let sourceText = try reader.text()
            let score = Double(bitPattern: try reader.integer())
            let flags = try reader.byte()
            let state: JoinStore.State? = switch flags >> 1 {
            case 0: .labeled
            case 1: .expiredUnlabeled
            case 2: .expiredDefaulted
            default: nil
            }
            let source = LabelSource(rawValue: sourceText)
            guard let route = Route(rawValue: routeText), let state, (source == nil) == (state == .expiredUnlabeled) else {
                throw FeedbackError(.storage, "stored prediction \(id) has an unknown route, state or label source")
            }
            let entry = RetainedPrediction(
                partition: partition, entity: entity, eventTimeMs: eventTimeMs, deadlineMs: deadlineMs, state: state,
                route: route, score: score, label: state == .expiredUnlabeled ? nil : flags & 1 != 0, labelSource: source,
                served: nil)
            entries.append((id, entry))
        }
        return entries
    }
}

// MARK: - Bytes

private func appendInteger<T: FixedWidthInteger>(_ value: T, to output: inout [UInt8]) {
    withUnsafeBytes(of: value.littleEndian) { output.append(contentsOf: $0) }
}

private func appendText(_ text: String, to output: inout [UInt8]) {
    var text = text
    text.withUTF8 { utf8 in
        appendInteger(UInt32(utf8.count), to: &output)
        output.append(contentsOf: utf8)
    }
}

/// Reads stored fields back, failing (never trapping) on a truncated blob.
private struct Reader {
    let bytes: UnsafeRawBufferPointer
    var index = 0

    var isAtEnd: Bool { index >= bytes.count }

    mutating func bytes(_ count: Int) throws(FeedbackError) -> UnsafeRawBufferPointer {
        guard count >= 0, bytes.count - index >= count else {
            throw FeedbackError(.storage, "a stored batch is truncated at byte \(index)")
        }
        defer { index += count }
        return UnsafeRawBufferPointer(rebasing: bytes[index..<index + count])
    }

    mutating func byte() throws(FeedbackError) -> UInt8 { try bytes(1)[0] }

    mutating func integer<T: FixedWidthInteger>() throws(FeedbackError) -> T {
        let raw = try bytes(MemoryLayout<T>.size)
        var value = T.zero
        withUnsafeMutableBytes(of: &value) { $0.copyMemory(from: raw) }
        return T(littleEndian: value)
    }

    mutating func text() throws(FeedbackError) -> String {
        let count: UInt32 = try integer()
        return String(decoding: try bytes(Int(count)), as: UTF8.self)
    }
}
