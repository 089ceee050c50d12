import Foundation
@testable import Ingest
import Kafka
import Storage
import Testing

/// The dedupe store on its own: claims, persistence across a reopen, expiry, and files written by
/// the earlier one-row-per-hash layout. No broker needed.
@Suite struct DedupeStoreTests {
    let path = NSTemporaryDirectory() + "dedupe-\(UUID().uuidString).sqlite"
    let hour = Int64(3_600_000)

    @Test("claims, persisted batches survive a reopen, released claims do not, keys expire after the horizon")
    func claimsPersistAndExpire() throws {
        defer { try? FileManager.default.removeItem(atPath: path) }
        let start = DedupeStore.nowMs()
        do {
            let store = try DedupeStore(path: path, horizon: .seconds(3600))
            #expect(store.claim([1, 2, 1, 3], nowMs: start) == [true, true, false, true])
            #expect(store.claim([2, 4], nowMs: start) == [false, true])
            store.release([3, 4])
            let input = TopicPartition(topic: "raw", partition: 0)
            try store.persist(hashes: [1, 2], inputOffsets: [input: 10], outputMarks: [:], nowMs: start)
            try store.persist(hashes: [5], inputOffsets: [input: 12], outputMarks: [:], nowMs: start + hour / 2)
            #expect(try store.offsets(.input) == [input: 12])
        }
        let reopened = try DedupeStore(path: path, horizon: .seconds(3600))
        #expect(reopened.claim([1, 2, 3, 4, 5], nowMs: start + 1) == [false, false, true, true, false])
        reopened.release([3, 4])
        // An hour and a bit later the first batch has expired, the second not yet.
        let later = start + hour + 1
        #expect(try reopened.prune(nowMs: later, interval: .seconds(0)) == 2)
        #expect(reopened.claim([1, 5], nowMs: later) == [true, false])
    }

    @Test("a file from the one-row-per-hash layout keeps its keys")
    func earlierLayout() throws {
        defer { try? FileManager.default.removeItem(atPath: path) }
        let now = DedupeStore.nowMs()
        do {
            let database = try Database(path: path)
            _ = try database.migrate([
                Migration("seen keys and offsets", sql: """
                    CREATE TABLE seen (h INTEGER NOT NULL, key TEXT NOT NULL, at_ms INTEGER NOT NULL, PRIMARY KEY (h, key)) WITHOUT ROWID;
                    CREATE TABLE offsets (kind TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL, next INTEGER NOT NULL,
                                          PRIMARY KEY (kind, topic, partition)) WITHOUT ROWID;
                    """),
                Migration("seen key hashes only", sql: """
                    CREATE TABLE seen_hashes (h INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL);
                    DROP TABLE seen;
                    """),
            ])
            try database.transaction { connection in
                try connection.execute("INSERT INTO seen_hashes (h, at_ms) VALUES (7, \(now)), (-8, \(now)), (9, \(now - 1000))")
            }
        }
        let store = try DedupeStore(path: path, horizon: .seconds(3600))
        #expect(store.claim([7, UInt64(bitPattern: -8), 9, 10], nowMs: now) == [false, false, false, true])
    }
}
