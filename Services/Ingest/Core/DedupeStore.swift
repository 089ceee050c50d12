import Foundation
import Kafka
import Storage
import Synchronization

/// The `(source, id)` pairs seen within the dedupe horizon, and the positions that make a crash
/// recoverable (raw input offsets, output marks), in one SQLite file.
///
/// Keys are kept as 64-bit hashes only, in memory (hash → time seen) and in SQLite: a claim never
/// reads the database, and a batch persists its hashes as one row (a blob of 8-byte words with the
/// batch's time), so a batch of any size costs one insert. Two different keys with the same hash
/// would make the second a false duplicate; with n keys in the horizon that happens with
/// probability about n² / 2⁶⁵ (10⁻⁵ for 10⁷ keys). Hashes move through three states: unknown →
/// claimed (in flight, so a second copy in the same or a concurrent batch is a duplicate) →
/// persisted (in one transaction per batch, together with the offsets).
public final class DedupeStore: Sendable {
    /// Which offsets a row of the `offsets` table holds.
    enum OffsetKind: String {
        /// The next raw record to read, per input partition.
        case input
        /// The end of what is known persisted, per output partition: recovery reads from here.
        case output
    }

    private struct Mirror {
        /// Hash → when it was persisted, or ``DedupeStore/claimed`` while its batch is in flight.
        var seen: [UInt64: Int64] = [:]
        var prunedAtMs: Int64 = 0
    }

    /// The time a claimed, not yet persisted hash carries: later than any cutoff.
    private static let claimed = Int64.max

    let database: Database
    let horizonMs: Int64
    private let mirror = Mutex(Mirror())

    /// Opens (or creates) the store at `path`; keys older than `horizon` no longer count.
    public init(path: String, horizon: Duration) throws {
        database = try Database(path: path)
        _ = try database.migrate([
            Migration("seen keys and offsets", sql: """
                CREATE TABLE seen (h INTEGER NOT NULL, key TEXT NOT NULL, at_ms INTEGER NOT NULL, PRIMARY KEY (h, key)) WITHOUT ROWID;
                CREATE TABLE offsets (kind TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL, next INTEGER NOT NULL,
                                      PRIMARY KEY (kind, topic, partition)) WITHOUT ROWID;
                """),
            Migration("seen key hashes only", sql: """
                CREATE TABLE seen_hashes (h INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL);
                INSERT OR REPLACE INTO seen_hashes (h, at_ms) SELECT h, max(at_ms) FROM seen GROUP BY h;
                DROP TABLE seen;
                """),
            Migration("seen key hashes by batch") { connection in
                try connection.execute("""
                    CREATE TABLE seen_batches (at_ms INTEGER NOT NULL, hashes BLOB NOT NULL);
                    CREATE INDEX seen_batches_at ON seen_batches (at_ms);
                    """)
                var byTime: [Int64: [UInt64]] = [:]
                let select = try connection.statement("SELECT h, at_ms FROM seen_hashes")
                while try select.step() { byTime[select.int64(at: 1), default: []].append(UInt64(bitPattern: select.int64(at: 0))) }
                for (atMs, hashes) in byTime { try Self.insert(hashes, atMs: atMs, connection) }
                try connection.execute("DROP TABLE seen_hashes")
            },
        ])
        let (seconds, attoseconds) = horizon.components
        horizonMs = seconds * 1000 + attoseconds / 1_000_000_000_000_000
        try load(nowMs: Self.nowMs())
    }

    /// Milliseconds since the epoch.
    static func nowMs() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    /// The number of keys the store holds (claimed ones, and expired ones until the next prune, included).
    public var count: Int { mirror.withLock { $0.seen.count } }

    // MARK: - Hashing

    /// The FNV-1a state before any byte.
    static let hashStart: UInt64 = 0xCBF2_9CE4_8422_2325

    /// Feeds `bytes` into an FNV-1a hash.
    @inline(__always)
    static func hash(_ bytes: some Sequence<UInt8>, into hash: inout UInt64) {
        for byte in bytes {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01B3
        }
    }

    /// FNV-1a, 64 bits, of the UTF-8 bytes of `key`: stable across processes (unlike `Hasher`) and
    /// the same function the stored hashes were made with.
    static func hash(_ key: String) -> UInt64 {
        var value = hashStart
        hash(key.utf8, into: &value)
        return value
    }

    /// The hash of the dedupe key `(source, id)`.
    static func hash(source: some Sequence<UInt8>, id: some Sequence<UInt8>) -> UInt64 {
        var value = hashStart
        hash(source, into: &value)
        hash(CollectionOfOne(0x1F), into: &value)
        hash(id, into: &value)
        return value
    }

    // MARK: - Claiming

    /// For each key hash in order: `true` if it is new (it is now claimed), `false` if it was seen
    /// within the horizon, is claimed by a batch in flight, or appeared earlier in `hashes`.
    public func claim(_ hashes: [UInt64], nowMs: Int64) -> [Bool] {
        let cutoff = nowMs - horizonMs
        return mirror.withLock { mirror in
            hashes.map { hash in
                if let at = mirror.seen[hash], at >= cutoff { return false }
                mirror.seen[hash] = Self.claimed
                return true
            }
        }
    }

    /// Gives up claims whose events were not written.
    public func release(_ hashes: some Sequence<UInt64>) {
        mirror.withLock { mirror in
            for hash in hashes where mirror.seen[hash] == Self.claimed { mirror.seen[hash] = nil }
        }
    }

    // MARK: - Persisting

    /// In one transaction: remembers `hashes` (written and acknowledged), and records the next
    /// input offsets and the output marks. Claims on `hashes` end.
    public func persist(
        hashes: [UInt64], inputOffsets: [TopicPartition: Int64], outputMarks: [TopicPartition: Int64], nowMs: Int64
    ) throws {
        try database.transaction { connection in
            try Self.insert(hashes, atMs: nowMs, connection)
            try Self.store(inputOffsets, kind: .input, connection)
            try Self.store(outputMarks, kind: .output, connection)
        }
        mirror.withLock { mirror in
            for hash in hashes { mirror.seen[hash] = nowMs }
        }
    }

    /// Stores `hashes` as one row: a blob of little-endian 8-byte words, all seen at `atMs`.
    private static func insert(_ hashes: [UInt64], atMs: Int64, _ connection: Connection) throws {
        guard !hashes.isEmpty else { return }
        let insert = try connection.statement("INSERT INTO seen_batches (at_ms, hashes) VALUES (?, ?)")
        try insert.bind(atMs, at: 1)
        try hashes.map(\.littleEndian).withUnsafeBytes { try insert.bind(bytes: $0, at: 2) }
        try insert.run()
    }

    private static func store(_ offsets: [TopicPartition: Int64], kind: OffsetKind, _ connection: Connection) throws {
        guard !offsets.isEmpty else { return }
        let upsert = try connection.statement("""
            INSERT INTO offsets (kind, topic, partition, next) VALUES (?, ?, ?, ?)
            ON CONFLICT (kind, topic, partition) DO UPDATE SET next = max(next, excluded.next)
            """)
        for (partition, next) in offsets {
            upsert.reset()
            try upsert.bind(kind.rawValue, at: 1)
            try upsert.bind(partition.topic, at: 2)
            try upsert.bind(Int64(partition.partition), at: 3)
            try upsert.bind(next, at: 4)
            try upsert.run()
        }
    }

    /// The stored offsets of `kind`.
    func offsets(_ kind: OffsetKind) throws -> [TopicPartition: Int64] {
        try database.withConnection { connection in
            let select = try connection.statement("SELECT topic, partition, next FROM offsets WHERE kind = ?")
            try select.bind(kind.rawValue, at: 1)
            var offsets: [TopicPartition: Int64] = [:]
            while try select.step() {
                offsets[TopicPartition(topic: select.string(at: 0) ?? "", partition: Int32(select.int64(at: 1)))] = select.int64(at: 2)
            }
            return offsets
        }
    }

    // MARK: - Expiry

    /// Deletes keys older than the horizon from the file and from memory, at most once per
    /// `interval`. Returns how many keys expired.
    @discardableResult
    public func prune(nowMs: Int64, interval: Duration = .seconds(3600)) throws -> Int {
        let cutoff = nowMs - horizonMs
        let due = mirror.withLock { mirror -> Bool in
            guard nowMs - mirror.prunedAtMs >= interval.components.seconds * 1000 else { return false }
            mirror.prunedAtMs = nowMs
            return true
        }
        guard due else { return 0 }
        let expired: Int = try database.withConnection { connection in
            let expired = try connection.statement("SELECT coalesce(sum(length(hashes)), 0) / 8 FROM seen_batches WHERE at_ms < ?")
            try expired.bind(cutoff, at: 1)
            _ = try expired.step()
            let count = Int(expired.int64(at: 0))
            let delete = try connection.statement("DELETE FROM seen_batches WHERE at_ms < ?")
            try delete.bind(cutoff, at: 1)
            try delete.run()
            return count
        }
        mirror.withLock { mirror in mirror.seen = mirror.seen.filter { $0.value >= cutoff } }
        return expired
    }

    /// Drops expired keys and loads the rest into memory.
    private func load(nowMs: Int64) throws {
        let cutoff = nowMs - horizonMs
        let seen: [UInt64: Int64] = try database.withConnection { connection in
            let delete = try connection.statement("DELETE FROM seen_batches WHERE at_ms < ?")
            try delete.bind(cutoff, at: 1)
            try delete.run()
            let select = try connection.statement("SELECT at_ms, hashes FROM seen_batches")
            var seen: [UInt64: Int64] = [:]
            while try select.step() {
                let atMs = select.int64(at: 0)
                select.withBlob(at: 1) { blob in
                    guard let blob else { return }
                    for offset in stride(from: 0, to: blob.count - 7, by: 8) {
                        let hash = UInt64(littleEndian: blob.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
                        seen[hash] = max(seen[hash] ?? atMs, atMs)
                    }
                }
            }
            return seen
        }
        mirror.withLock {
            $0.seen = seen
            $0.prunedAtMs = nowMs
        }
    }
}
