import Foundation
import Kafka
import Storage
import Synchronization

/// The `(source, id)` pairs seen within the dedupe horizon, and the positions that make a crash
/// recoverable (raw input offsets, output marks), in one SQLite file.
///
/// A memory mirror holds a 64-bit hash of every stored key, so a new key (the common case) is
/// recognised without touching SQLite; only a hash hit reads the table. Keys move through three
/// states: unknown → claimed (in flight, so a second copy in the same or a concurrent batch is a
/// duplicate) → persisted (in one transaction per batch, together with the offsets).
public final class DedupeStore: Sendable {
    /// Which offsets a row of the `offsets` table holds.
    enum OffsetKind: String {
        /// The next raw record to read, per input partition.
        case input
        /// The end of what is known persisted, per output partition: recovery reads from here.
        case output
    }

    private struct Mirror {
        var hashes: Set<UInt64> = []
        var claimed: Set<String> = []
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
        ])
        let (seconds, attoseconds) = horizon.components
        horizonMs = seconds * 1000 + attoseconds / 1_000_000_000_000_000
        try prune(nowMs: Self.nowMs())
    }

    /// Milliseconds since the epoch.
    static func nowMs() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    /// The number of keys the store holds (expired ones included until the next prune).
    public var count: Int { mirror.withLock { $0.hashes.count } }

    // MARK: - Claiming

    /// For each key in order: `true` if it is new (it is now claimed), `false` if it was seen
    /// within the horizon, is claimed by a batch in flight, or appeared earlier in `keys`.
    public func claim(_ keys: [String], nowMs: Int64) throws -> [Bool] {
        var fresh = [Bool](repeating: false, count: keys.count)
        var toCheck: [(index: Int, hash: UInt64)] = []
        mirror.withLock { mirror in
            for (index, key) in keys.enumerated() {
                guard !mirror.claimed.contains(key) else { continue }
                let hash = Self.hash(key)
                if mirror.hashes.contains(hash) {
                    toCheck.append((index, hash))
                } else {
                    mirror.claimed.insert(key)
                    fresh[index] = true
                }
            }
        }
        guard !toCheck.isEmpty else { return fresh }
        let cutoff = nowMs - horizonMs
        let stored: [Int] = try database.withConnection { connection in
            let select = try connection.statement("SELECT 1 FROM seen WHERE h = ? AND key = ? AND at_ms >= ?")
            var stored: [Int] = []
            for (index, hash) in toCheck {
                select.reset()
                try select.bind(Int64(bitPattern: hash), at: 1)
                try select.bind(keys[index], at: 2)
                try select.bind(cutoff, at: 3)
                if try select.step() { stored.append(index) }
            }
            return stored
        }
        let storedSet = Set(stored)
        mirror.withLock { mirror in
            for (index, _) in toCheck where !storedSet.contains(index) {
                if mirror.claimed.insert(keys[index]).inserted { fresh[index] = true }
            }
        }
        return fresh
    }

    /// Gives up claims whose events were not written.
    public func release(_ keys: some Sequence<String>) {
        mirror.withLock { mirror in
            for key in keys { mirror.claimed.remove(key) }
        }
    }

    // MARK: - Persisting

    /// In one transaction: remembers `keys` (written and acknowledged), and records the next input
    /// offsets and the output marks. Claims on `keys` end.
    public func persist(
        keys: [String], inputOffsets: [TopicPartition: Int64], outputMarks: [TopicPartition: Int64], nowMs: Int64
    ) throws {
        try database.transaction { connection in
            let insert = try connection.statement("INSERT OR REPLACE INTO seen (h, key, at_ms) VALUES (?, ?, ?)")
            for key in keys {
                insert.reset()
                try insert.bind(Int64(bitPattern: Self.hash(key)), at: 1)
                try insert.bind(key, at: 2)
                try insert.bind(nowMs, at: 3)
                try insert.run()
            }
            try Self.store(inputOffsets, kind: .input, connection)
            try Self.store(outputMarks, kind: .output, connection)
        }
        mirror.withLock { mirror in
            for key in keys {
                mirror.claimed.remove(key)
                mirror.hashes.insert(Self.hash(key))
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

    /// Deletes keys older than the horizon and rebuilds the memory mirror from what remains.
    /// Returns how many keys expired.
    @discardableResult
    public func prune(nowMs: Int64) throws -> Int {
        let cutoff = nowMs - horizonMs
        let (expired, hashes): (Int, [Int64]) = try database.withConnection { connection in
            let delete = try connection.statement("DELETE FROM seen WHERE at_ms < ?")
            try delete.bind(cutoff, at: 1)
            try delete.run()
            let expired = connection.changes
            let select = try connection.statement("SELECT h FROM seen")
            var hashes: [Int64] = []
            while try select.step() { hashes.append(select.int64(at: 0)) }
            return (expired, hashes)
        }
        let set = Set(hashes.map { UInt64(bitPattern: $0) })
        mirror.withLock { $0.hashes = set }
        return expired
    }

    /// FNV-1a, 64 bits: stable across processes (unlike `Hasher`), cheap, and only a pre-filter.
    static func hash(_ key: String) -> UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in key.utf8 {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01B3
        }
        return hash
    }
}
