/// The versions of the encoded feature-state record. Writers write ``current``; readers accept
/// the current and the previous version, so a rolling upgrade can keep old writers (or have new
/// writers write ``v1``) until every reader is upgraded.
public enum FeatureRecordVersion: Int, Sendable, CaseIterable, Comparable {
    /// Every non-empty bucket statistic stored in full: count, sum, m2, min, max.
    case v1 = 1
    /// Buckets holding one value store just the value; two values store min and max; the rest
    /// in full as in v1. Sparse entities cost about what their raw values cost.
    case v2 = 2

    /// The version writers write.
    public static let current = FeatureRecordVersion.v2

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
}

// MARK: - Encoding

/// The record (little-endian; varints are unsigned LEB128, zig-zag for signed):
///
/// ```
/// "FS"                      magic
/// varint                    schema version (1 or 2)
/// u32                       layout fingerprint of the FeatureSchema
/// varint + UTF-8            entity id
/// u8                        flags: bit 0 = has events
/// zigzag varint             latest event time, ms since the epoch (only with events)
/// per point slot            varint age+1 of its time (0 = none), then f64 value for `last` slots
/// per decay slot            varint age+1 of its reference time (0 = none), then f64 sum, f64 weight
/// per window                varint bucket count, then per bucket, oldest first:
///                           varint (newest bucket index − index), then per slot varint count
///                           and, for field slots with count > 0, the statistics
///                           (v1: f64 sum, m2, min, max; v2: count 1 → f64 value,
///                           count 2 → f64 min, max, count ≥ 3 → as v1)
/// ```
/// Ages are relative to the latest event time, bucket offsets to the newest bucket, so they stay
/// one or two bytes whatever the epoch.
extension EntityFeatureState {
    static let magic: (UInt8, UInt8) = (0x46, 0x53)

    /// The encoded record, in the current version unless `version` says otherwise.
    public func encoded(version: FeatureRecordVersion = .current) -> [UInt8] {
        var scratch: [UInt8] = []
        return encoded(version: version, scratch: &scratch)
    }

    /// The encoded record, written through `scratch` first: reuse one scratch buffer across calls
    /// and it grows (zero-filled) only to the largest record's size bound, so an encoding costs
    /// one allocation of the record's exact size.
    public func encoded(version: FeatureRecordVersion = .current, scratch: inout [UInt8]) -> [UInt8] {
        let bound = maximumEncodedSize
        if scratch.count < bound { scratch = Array(repeating: 0, count: bound) }
        return scratch.withUnsafeMutableBytes { buffer in
            var writer = ByteWriter(base: buffer.baseAddress!)
            write(to: &writer, version: version)
            return Array(UnsafeRawBufferPointer(rebasing: buffer[..<writer.count]))
        }
    }

    private func write(to writer: inout ByteWriter, version: FeatureRecordVersion) {
        writer.byte(Self.magic.0)
        writer.byte(Self.magic.1)
        writer.varint(UInt64(version.rawValue))
        writer.uint32(schema.fingerprint)
        writer.varint(UInt64(entityID.utf8.count))
        writer.append(entityID.utf8)
        guard latest != Self.noTime else {
            writer.byte(0)
            for _ in 0..<(points.count + decays.count + windows.count) { writer.byte(0) }
            return
        }
        writer.byte(1)
        writer.varint(zigzag(latest))
        for (point, value) in zip(schema.points, points) {
            guard value.time != Self.noTime else {
                writer.byte(0)
                continue
            }
            writer.varint(UInt64(latest - value.time) + 1)
            if point.field != nil { writer.double(value.value) }
        }
        for decay in decays {
            guard decay.reference != Self.noTime else {
                writer.byte(0)
                continue
            }
            writer.varint(UInt64(latest - decay.reference) + 1)
            writer.double(decay.weightedSum)
            writer.double(decay.weight)
        }
        for (layout, buckets) in zip(schema.windows, windows) {
            writer.varint(UInt64(buckets.indices.count))
            let newest = ceilDiv(latest, layout.bucketMillis)
            let slots = layout.slots
            buckets.moments.withUnsafeBufferPointer { moments in
                var next = 0
                for index in buckets.indices {
                    writer.varint(UInt64(newest - index))
                    for slot in slots {
                        let moments = moments[next]
                        next += 1
                        writer.varint(UInt64(moments.count))
                        guard slot.field != nil, moments.count > 0 else { continue }
                        switch (version, moments.count) {
                        case (.v2, 1):
                            writer.double(moments.min)
                        case (.v2, 2):
                            writer.double(moments.min)
                            writer.double(moments.max)
                        default:
                            writer.double(moments.sum)
                            writer.double(moments.m2)
                            writer.double(moments.min)
                            writer.double(moments.max)
                        }
                    }
                }
            }
        }
    }

    /// An upper bound of the encoded size: every varint at its 10-byte maximum.
    private var maximumEncodedSize: Int {
        var size = 2 + 10 + 4 + 10 + entityID.utf8.count + 1 + 10 + points.count * 18 + decays.count * 26
        for (layout, buckets) in zip(schema.windows, windows) {
            size += 10 + buckets.indices.count * (10 + layout.slots.count * 42)
        }
        return size
    }

    // MARK: - Decoding

    /// Decodes a record written by ``encode(into:version:)`` under the same layout.
    /// - Throws: ``FeatureError`` with code `truncated`, `badMagic`, `unsupportedSchemaVersion`,
    ///   `layoutMismatch` (the definitions changed since it was written: rebuild the state) or
    ///   `corrupt`.
    public init(decoding bytes: [UInt8], schema: FeatureSchema) throws(FeatureError) {
        let result = bytes.withUnsafeBytes { buffer in
            Result { () throws(FeatureError) in try EntityFeatureState(decoding: buffer, schema: schema) }
        }
        self = try result.get()
    }

    /// Decodes a record from raw bytes (no copy is made of them).
    public init(decoding bytes: UnsafeRawBufferPointer, schema: FeatureSchema) throws(FeatureError) {
        var reader = ByteReader(bytes: bytes)
        guard try reader.byte() == Self.magic.0, try reader.byte() == Self.magic.1 else {
            throw FeatureError(.badMagic, "not a feature-state record")
        }
        let rawVersion = try reader.varint()
        guard let version = FeatureRecordVersion(rawValue: Int(clamping: rawVersion)) else {
            throw FeatureError(
                .unsupportedSchemaVersion,
                "feature-state schema version \(rawVersion); this build reads \(FeatureRecordVersion.allCases.map(\.rawValue))")
        }
        let fingerprint = try reader.uint32()
        guard fingerprint == schema.fingerprint else {
            throw FeatureError(
                .layoutMismatch,
                "record layout \(fingerprint) differs from the configured features' layout \(schema.fingerprint)")
        }
        let entityID = try reader.string(maxLength: 1 << 16)
        self.init(entityID: entityID, schema: schema)
        let flags = try reader.byte()
        guard flags <= 1 else { throw FeatureError(.corrupt, "unknown flags \(flags)") }
        guard flags == 1 else {
            for _ in 0..<(points.count + decays.count + windows.count) {
                guard try reader.byte() == 0 else { throw FeatureError(.corrupt, "an empty state holds data") }
            }
            try reader.expectEnd()
            return
        }
        latest = unzigzag(try reader.varint())
        guard abs(latest) < Self.maxMillis else { throw FeatureError(.corrupt, "latest event time out of range") }

        for (offset, point) in schema.points.enumerated() {
            guard let time = try reader.time(before: latest) else { continue }
            let value = point.field != nil ? try reader.finiteDouble() : 0
            points[offset] = PointValue(time: time, value: value)
        }
        for offset in decays.indices {
            guard let reference = try reader.time(before: latest) else { continue }
            let weightedSum = try reader.finiteDouble()
            let weight = try reader.finiteDouble()
            guard weight > 0 else { throw FeatureError(.corrupt, "a decayed mean has no weight") }
            decays[offset] = DecayValue(reference: reference, weightedSum: weightedSum, weight: weight)
        }
        for (window, layout) in schema.windows.enumerated() {
            windows[window] = try reader.buckets(layout: layout, latest: latest, version: version)
        }
        try reader.expectEnd()
    }

    /// Times are kept well inside Int64 milliseconds (±1e13 s).
    static let maxMillis: Int64 = 10_000_000_000_000_000
}

// MARK: - Bytes

private func zigzag(_ value: Int64) -> UInt64 { UInt64(bitPattern: (value << 1) ^ (value >> 63)) }
private func unzigzag(_ value: UInt64) -> Int64 { Int64(bitPattern: value >> 1) ^ -Int64(bitPattern: value & 1) }

/// Writes into memory the caller sized with ``EntityFeatureState/maximumEncodedSize``.
private struct ByteWriter {
    let base: UnsafeMutableRawPointer
    var count = 0

    init(base: UnsafeMutableRawPointer) { self.base = base }

    @inline(__always)
    mutating func byte(_ value: UInt8) {
        base.storeBytes(of: value, toByteOffset: count, as: UInt8.self)
        count += 1
    }

    mutating func append(_ utf8: String.UTF8View) {
        for byte in utf8 { self.byte(byte) }
    }

    @inline(__always)
    mutating func varint(_ value: UInt64) {
        var value = value
        while value >= 0x80 {
            byte(UInt8(truncatingIfNeeded: value) | 0x80)
            value >>= 7
        }
        byte(UInt8(value))
    }

    mutating func uint32(_ value: UInt32) {
        base.storeBytes(of: value.littleEndian, toByteOffset: count, as: UInt32.self)
        count += 4
    }

    @inline(__always)
    mutating func double(_ value: Double) {
        base.storeBytes(of: value.bitPattern.littleEndian, toByteOffset: count, as: UInt64.self)
        count += 8
    }
}

private struct ByteReader {
    let bytes: UnsafeRawBufferPointer
    var position = 0

    init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    @inline(__always)
    private func need(_ count: Int) throws(FeatureError) {
        guard bytes.count - position >= count else {
            throw FeatureError(.truncated, "record ends at byte \(bytes.count), needs \(position + count)")
        }
    }

    @inline(__always)
    mutating func byte() throws(FeatureError) -> UInt8 {
        try need(1)
        defer { position += 1 }
        return bytes[position]
    }

    @inline(__always)
    mutating func varint() throws(FeatureError) -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let byte = try byte()
            guard shift < 63 || (shift == 63 && byte <= 1) else { throw FeatureError(.corrupt, "varint overflows 64 bits") }
            result |= UInt64(byte & 0x7F) << shift
            if byte < 0x80 { return result }
            shift += 7
        }
    }

    mutating func uint32() throws(FeatureError) -> UInt32 {
        try need(4)
        defer { position += 4 }
        return UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: position, as: UInt32.self))
    }

    mutating func finiteDouble() throws(FeatureError) -> Double {
        try need(8)
        let value = Double(bitPattern: UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: position, as: UInt64.self)))
        position += 8
        guard value.isFinite else { throw FeatureError(.corrupt, "a stored number is \(value)") }
        return value
    }

    mutating func string(maxLength: Int) throws(FeatureError) -> String {
        let length = try varint()
        guard length <= UInt64(maxLength) else { throw FeatureError(.corrupt, "entity id of \(length) bytes") }
        try need(Int(length))
        let slice = UnsafeRawBufferPointer(rebasing: bytes[position..<(position + Int(length))])
        position += Int(length)
        guard let string = String(validating: slice.bindMemory(to: UInt8.self), as: UTF8.self) else {
            throw FeatureError(.corrupt, "entity id is not UTF-8")
        }
        return string
    }

    /// A time stored as `age + 1` before `latest` (0 = none).
    mutating func time(before latest: Int64) throws(FeatureError) -> Int64? {
        let stored = try varint()
        guard stored > 0 else { return nil }
        guard stored - 1 < UInt64(EntityFeatureState.maxMillis) else { throw FeatureError(.corrupt, "a time is out of range") }
        return latest - Int64(stored - 1)
    }

    mutating func buckets(layout: WindowLayout, latest: Int64, version: FeatureRecordVersion) throws(FeatureError) -> WindowBuckets {
        let count = try varint()
        guard count <= UInt64(layout.span + 1) else {
            throw FeatureError(.corrupt, "\(count) buckets in a window of \(layout.span)")
        }
        let newest = ceilDiv(latest, layout.bucketMillis)
        let oldest = floorDiv(latest, layout.bucketMillis) - layout.span
        let slotCount = layout.slots.count
        let hasValues = layout.slotHasValues
        var buckets = WindowBuckets()
        var failure: FeatureError?
        var reader = self
        defer { self = reader }
        buckets.indices = Array(unsafeUninitializedCapacity: Int(count)) { indices, initialized in
            buckets.moments = Array(unsafeUninitializedCapacity: Int(count) * slotCount) { moments, filled in
                do throws(FeatureError) {
                    var previous = oldest
                    for _ in 0..<Int(count) {
                        let offset = try reader.varint()
                        guard offset <= UInt64(layout.span + 1) else {
                            throw FeatureError(.corrupt, "bucket offset \(offset) out of range")
                        }
                        let index = newest - Int64(offset)
                        guard index > previous else {
                            throw FeatureError(.corrupt, "bucket \(index) out of order or outside the window")
                        }
                        previous = index
                        indices.initializeElement(at: initialized, to: index)
                        initialized += 1
                        var empty = true
                        for slot in 0..<slotCount {
                            let stats = try reader.moments(hasValues: hasValues[slot], version: version)
                            if stats.count > 0 { empty = false }
                            moments.initializeElement(at: filled, to: stats)
                            filled += 1
                        }
                        guard !empty else { throw FeatureError(.corrupt, "an empty bucket") }
                    }
                } catch {
                    failure = error
                }
            }
        }
        if let failure { throw failure }
        return buckets
    }

    @inline(__always)
    private mutating func moments(hasValues: Bool, version: FeatureRecordVersion) throws(FeatureError) -> Moments {
        let count = try varint()
        guard count <= 1 << 53 else { throw FeatureError(.corrupt, "a bucket count of \(count)") }
        guard count > 0 else { return .empty }
        guard hasValues else { return Moments(count: Double(count)) }
        let stored = version == .v2 && count <= 2 ? Int(count) : 4
        try need(8 * stored)
        let base = position
        position += 8 * stored
        let moments: Moments
        switch stored {
        case 1:
            moments = .single(double(at: base))
        case 2:
            moments = .pair(low: double(at: base), high: double(at: base + 8))
        default:
            moments = Moments(
                count: Double(count), sum: double(at: base), m2: double(at: base + 8), min: double(at: base + 16),
                max: double(at: base + 24))
        }
        guard moments.sum.isFinite, moments.m2.isFinite, moments.min <= moments.max, moments.m2 >= 0,
              moments.min.isFinite, moments.max.isFinite else {
            throw FeatureError(.corrupt, "a bucket's statistics are inconsistent")
        }
        return moments
    }

    @inline(__always)
    private func double(at offset: Int) -> Double {
        Double(bitPattern: UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self)))
    }

    func expectEnd() throws(FeatureError) {
        guard position == bytes.count else {
            throw FeatureError(.corrupt, "\(bytes.count - position) bytes after the end of the record")
        }
    }
}
