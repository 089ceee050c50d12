import Contracts

/// The stored form of one batch's outbox entries: one SQLite row per applied batch holds them all,
/// so storing and confirming an example costs a few bytes in a blob rather than a row of its own.
///
/// Per entry, little-endian: sequence (Int64), partition (Int32), label source, request id and
/// entity (each a UInt32 length and UTF-8), then a flag byte: 1 for a ``PredictionReference``
/// (partition Int32, offset Int64, label UInt8, delay Float64 bits, value flag UInt8 and Float64
/// bits), 0 for the example's own bytes (UInt32 length and bytes). Stores of an earlier layout also
/// hold 2 for a ``StoredPredictionReference`` (row Int64, position Int32, then as for 1), which the
/// "waiting references" migration replaces by the example's bytes.
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
/// `waiting_batches` row per batch and input partition lists them, so a waiting prediction costs a
/// few dozen bytes of one blob rather than a row of its own. Its served record is not stored: it is
/// in `loop.predictions` at the stored offset, held in memory while the service runs and read
/// back from the topic after a restart (see ``JoinStore/predictionsToRestore()``). A row is deleted
/// once every prediction in it is past its purge time.
///
/// Per prediction, little-endian: deadline and offset in `loop.predictions` (Int64 each), request
/// id and entity (each a UInt32 length and UTF-8), event time (Int64 ms), route (UInt32 length and
/// UTF-8), score (Float64 bits), then the served record (UInt32 length and bytes): empty, except for
/// predictions moved over from stores that kept the records themselves (offset -1).
enum WaitingCodec {
    /// A waiting prediction as stored.
    struct Entry {
        var deadlineMs: Int64
        var offset: Int64
        var requestId: String
        var entity: String
        var eventTimeMs: Int64
        var route: Route
        var score: Double
        var served: [UInt8]
    }

    /// Appends a waiting prediction to `output`.
    static func encode(_ entry: Entry, into output: inout [UInt8]) {
        appendInteger(entry.deadlineMs, to: &output)
        appendInteger(entry.offset, to: &output)
        appendText(entry.requestId, to: &output)
        appendText(entry.entity, to: &output)
        appendInteger(entry.eventTimeMs, to: &output)
        appendText(entry.route.rawValue, to: &output)
        appendInteger(entry.score.bitPattern, to: &output)
        appendInteger(UInt32(entry.served.count), to: &output)
        output.append(contentsOf: entry.served)
    }

    /// The waiting predictions `bytes` holds.
    static func decode(_ bytes: UnsafeRawBufferPointer) throws(FeedbackError) -> [Entry] {
        var reader = Reader(bytes: bytes)
        var entries: [Entry] = []
        while !reader.isAtEnd {
            let deadlineMs: Int64 = try reader.integer()
            let offset: Int64 = try reader.integer()
            let requestId = try reader.text()
            let entity = try reader.text()
            let eventTimeMs: Int64 = try reader.integer()
            let routeText = try reader.text()
            guard let route = Route(rawValue: routeText) else {
                throw FeedbackError(.storage, "waiting prediction \(requestId) has an unknown route \"\(routeText)\"")
            }
            let score = Double(bitPattern: try reader.integer())
            let count: UInt32 = try reader.integer()
            entries.append(Entry(
                deadlineMs: deadlineMs, offset: offset, requestId: requestId, entity: entity, eventTimeMs: eventTimeMs,
                route: route, score: score, served: Array(try reader.bytes(Int(count)))))
        }
        return entries
    }

    /// Appends a prediction in the previous layout (see ``decodeRecords(_:)``), for the migrations.
    static func encodeRecord(deadlineMs: Int64, served: [UInt8], into output: inout [UInt8]) {
        appendInteger(deadlineMs, to: &output)
        appendInteger(UInt32(served.count), to: &output)
        output.append(contentsOf: served)
    }

    /// The rows of the previous layout (`pending_batches`: per prediction its deadline, then its
    /// served record as a UInt32 length and bytes, length 0 for a slot compacted away), for the migration.
    static func decodeRecords(_ bytes: UnsafeRawBufferPointer) throws(FeedbackError) -> [(deadlineMs: Int64, served: [UInt8])] {
        var reader = Reader(bytes: bytes)
        var entries: [(deadlineMs: Int64, served: [UInt8])] = []
        while !reader.isAtEnd {
            let deadlineMs: Int64 = try reader.integer()
            let count: UInt32 = try reader.integer()
            entries.append((deadlineMs, Array(try reader.bytes(Int(count)))))
        }
        return entries
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
