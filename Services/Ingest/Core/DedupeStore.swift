import Foundation
import Kafka
import Storage
import Synchronization

/// The `(source, id)` pairs seen within the dedupe horizon, and the positions that make a crash
/// recoverable (raw input offsets, output marks), in one SQLite file.
///
/// Keys are kept as 64-bit hashes only, in memory (hash → time seen) and in SQLite: a claim never
/// reads the database, and a batch persists one 16-byte row per event. Two different keys with the
/// same hash would make the second a false duplicate; with n keys in the horizon that happens with
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
        var seen: [UInt64: Int64] = [:]
        var claimed: Set<UInt64> = []
        var prunedAtMs: Int64 = 0
    }

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
        ])
        let (seconds, attoseconds) = horizon.components
        horizonMs = seconds * 1000 + attoseconds / 1_000_000_000_000_000
        try load(nowMs: Self.nowMs())
    }

    /// Milliseconds since the epoch.
    static func nowMs() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    /// The number of keys the store holds (expired ones included until the next prune).
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
                return mirror.claimed.insert(hash).inserted
            }
        }
    }

    /// Gives up claims whose events were not written.
    public func release(_ hashes: some Sequence<UInt64>) {
        mirror.withLock { mirror in
            for hash in hashes { mirror.claimed.remove(hash) }
        }
    }

    // MARK: - Persisting

    /// In one transaction: remembers `hashes` (written and acknowledged), and records the next
    /// input offsets and the output marks. Claims on `hashes` end.
    public func persist(
        hashes: [UInt64], inputOffsets: [TopicPartition: Int64], outputMarks: [TopicPartition: Int64], nowMs: Int64
    ) throws {
        try database.transaction { connection in
            let insert = try connection.statement("INSERT OR REPLACE INTO seen_hashes (h, at_ms) VALUES (?, ?)")
            for hash in hashes {
                insert.reset()
                try insert.bind(Int64(bitPattern: hash), at: 1)
                try insert.bind(nowMs, at: 2)
                try insert.run()
            }
            try Self.store(inputOffsets, kind: .input, connection)
            try Self.store(outputMarks, kind: .output, connection)
        }
        mirror.withLock { mirror in
            for hash in hashes {
                mirror.claimed.remove(hash)
                mirror.seen[hash] = nowMs
            }
        }
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
            let delete = try connection.statement("DELETE FROM seen_hashes WHERE at_ms < ?")
            try delete.bind(cutoff, at: 1)
            try delete.run()
            return connection.changes
        }
        mirror.withLock { mirror in mirror.seen = mirror.seen.filter { $0.value >= cutoff } }
        return expired
    }

    /// Drops expired keys and loads the rest into memory.
    private func load(nowMs: Int64) throws {
        let cutoff = nowMs - horizonMs
        let seen: [UInt64: Int64] = try database.withConnection { connection in
            let delete = try connection.statement("DELETE FROM seen_hashes WHERE at_ms < ?")
            try delete.bind(cutoff, at: 1)
            try delete.run()
            let select = try connection.statement("SELECT h, at_ms FROM seen_hashes")
            var seen: [UInt64: Int64] = [:]
            while try select.step() { seen[UInt64(bitPattern: select.int64(at: 0))] = select.int64(at: 1) }
            return seen
        }
        mirror.withLock {
            $0.seen = seen
            $0.prunedAtMs = nowMs
        }
    }
}
