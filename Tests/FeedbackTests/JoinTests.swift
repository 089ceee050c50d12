import Contracts
import Feedback
import Foundation
import Kafka
import Testing

@Suite("join")
struct JoinTests {
    @Test("prediction first, then its outcome: one labeled example with the served features and the label delay")
    func predictionFirst() throws {
        var driver = try JoinDriver()
        let served = prediction("r1", at: 10 * hour, score: 0.8, features: [FeatureValue(name: "x", value: 0.25)])
        #expect(try driver.apply([.prediction(served)]).labeled.isEmpty)
        let result = try driver.apply([outcome("r1", true, at: 10 * hour + 90_000)])
        let example = try #require(result.labeled.first)
        #expect(result.labeled.count == 1)
        #expect(example.requestId == "r1" && example.label && example.labelSource == .outcome)
        #expect(example.features == served.features && example.score == 0.8 && example.modelVersion == 1)
        #expect(example.labelDelaySeconds == 90)
        #expect(result.counters.joined == 1 && result.counters.late == 0)
        #expect(result.outbox.map(\.requestId) == ["r1"])
    }

    @Test("outcome first, then its prediction: joined the same way")
    func outcomeFirst() throws {
        var driver = try JoinDriver()
        #expect(try driver.apply([outcome("r1", false, at: 10 * hour + 60_000)]).labeled.isEmpty)
        let result = try driver.apply([.prediction(prediction("r1", at: 10 * hour))])
        let example = try #require(result.labeled.first)
        #expect(!example.label && example.labelSource == .outcome && example.labelDelaySeconds == 60)
        #expect(result.counters.joined == 1 && result.counters.orphans == 0)
    }

    @Test("both in one batch, in either order")
    func sameBatch() throws {
        var driver = try JoinDriver()
        let result = try driver.apply([
            .prediction(prediction("a", at: 0)), outcome("a", true, at: 1000),
            outcome("b", false, at: 2000), .prediction(prediction("b", at: 1500)),
        ])
        #expect(Set(result.labeled.map(\.requestId)) == ["a", "b"])
        #expect(result.counters.joined == 2)
    }

    @Test("deadline without a default label: counted unlabeled, nothing emitted; a late outcome is still emitted")
    func deadlineUnlabeled() throws {
        var driver = try JoinDriver(deadlineMs: 2 * hour)
        try driver.apply([.prediction(prediction("r1", at: 0))])
        let eventsOnly = try driver.apply([.clock(eventTimeMs: 2 * hour)])
        #expect(eventsOnly.counters.unlabeled == 0, "deadlines wait until the predictions reach them too")
        let atDeadline = try driver.apply([.prediction(prediction("r2", at: 2 * hour))])
        #expect(atDeadline.labeled.isEmpty)
        #expect(atDeadline.counters.unlabeled == 1)
        let late = try driver.apply([outcome("r1", true, at: 3 * hour)])
        #expect(late.labeled.map(\.labelSource) == [.outcome])
        #expect(late.labeled.first?.labelDelaySeconds == 10_800)
        #expect(late.counters.late == 1 && late.counters.lateEmitted == 1 && late.counters.joined == 0)
    }

    @Test("deadline with a default label: emitted with label source default; the deadline follows the partition's event time")
    func deadlineDefault() throws {
        var driver = try JoinDriver(deadlineMs: 2 * hour, defaultLabel: false)
        try driver.apply([.prediction(prediction("r1", at: 0)), .prediction(prediction("r2", at: hour))])
        #expect(try driver.apply([.clock(eventTimeMs: 2 * hour - 1)]).labeled.isEmpty)
        let other = try driver.apply([.clock(eventTimeMs: 5 * hour)], partition: 1)
        #expect(other.labeled.isEmpty, "another partition's clock does not expire partition 0")
        let expired = try driver.apply([.clock(eventTimeMs: 2 * hour), .prediction(prediction("r3", at: 2 * hour))])
        #expect(expired.labeled.map(\.requestId) == ["r1"])
        #expect(expired.labeled.first?.labelSource == .default && expired.labeled.first?.label == false)
        #expect(expired.labeled.first?.labelDelaySeconds == 7200)
        #expect(expired.counters.defaulted == 1 && expired.counters.unlabeled == 0)
        let late = try driver.apply([outcome("r1", true, at: 4 * hour), .prediction(prediction("r4", at: 4 * hour))])
        #expect(late.labeled.map(\.requestId) == ["r1", "r2", "r3"])
        #expect(late.labeled.map(\.labelSource) == [.outcome, .default, .default], "the late ground truth is still emitted, and r2, r3 expire")
        #expect(late.counters.late == 1 && late.counters.defaulted == 3)
    }

    @Test("an outcome whose own event time is past the deadline is late even before the clock expired the prediction")
    func lateByEventTime() throws {
        var driver = try JoinDriver(deadlineMs: 2 * hour)
        try driver.apply([.prediction(prediction("r1", at: 0))])
        let result = try driver.apply([outcome("r1", true, at: 3 * hour)])
        #expect(result.labeled.count == 1)
        #expect(result.counters.late == 1 && result.counters.joined == 0 && result.counters.unlabeled == 0)
    }

    @Test("an outcome without a prediction is counted orphan once the deadline of its event time passes")
    func orphan() throws {
        var driver = try JoinDriver(deadlineMs: 2 * hour)
        try driver.apply([outcome("ghost", true, at: hour)])
        #expect(try driver.apply([.clock(eventTimeMs: 2 * hour), .prediction(prediction("a", at: 2 * hour))]).counters.orphans == 0)
        let result = try driver.apply([.clock(eventTimeMs: 3 * hour), .prediction(prediction("b", at: 3 * hour))])
        #expect(result.counters.orphans == 1)
        #expect(try driver.apply([.prediction(prediction("ghost", at: 3 * hour))]).labeled.isEmpty)
    }

    @Test("loop.events running far ahead of loop.predictions (a replay) expires nothing the predictions have not reached")
    func eventsAheadOfPredictions() throws {
        var driver = try JoinDriver(deadlineMs: 2 * hour)
        try driver.apply([outcome("r1", true, at: hour), outcome("r2", false, at: 30 * hour), .clock(eventTimeMs: 100 * hour)])
        let first = try driver.apply([.prediction(prediction("r1", at: hour / 2))])
        let second = try driver.apply([.prediction(prediction("r2", at: 29 * hour))])
        #expect(first.labeled.map(\.requestId) == ["r1"] && second.labeled.map(\.requestId) == ["r2"])
        #expect(second.counters.joined == 2 && second.counters.orphans == 0 && second.counters.unlabeled == 0)
    }

    @Test("duplicate outcomes are counted and not emitted, whether they arrive before or after the prediction")
    func duplicates() throws {
        var driver = try JoinDriver()
        try driver.apply([.prediction(prediction("a", at: 0)), outcome("a", true, at: 10)])
        let second = try driver.apply([outcome("a", true, at: 20)])
        #expect(second.labeled.isEmpty && second.counters.duplicates == 1)
        try driver.apply([outcome("b", true, at: 30), outcome("b", false, at: 40)])
        let joined = try driver.apply([.prediction(prediction("b", at: 25))])
        #expect(joined.labeled.map(\.label) == [true], "the first outcome wins")
        #expect(joined.counters.duplicates == 2)
        let again = try driver.apply([.prediction(prediction("b", at: 25))])
        #expect(again.labeled.isEmpty && again.counters.duplicatePredictions == 1)
    }

    @Test("a review labels a pending prediction; later ground truth measures reviewer agreement")
    func reviewAgreement() throws {
        var driver = try JoinDriver()
        try driver.apply([
            .prediction(prediction("a", at: 0, score: 0.5, route: .review)),
            .prediction(prediction("b", at: 0, score: 0.52, route: .review)),
            .prediction(prediction("c", at: 0, score: 0.49, route: .review)),
        ])
        let queue = try driver.store.reviewQueue(threshold: 0.5, limit: 10)
        #expect(queue.map(\.requestId) == ["a", "c", "b"], "most uncertain first")
        let reviewed = try driver.apply([outcome("a", true, at: 10, source: .review), outcome("b", true, at: 10, source: .review)])
        #expect(reviewed.labeled.map(\.labelSource) == [.review, .review])
        #expect(try driver.store.reviewQueue(threshold: 0.5, limit: 10).map(\.requestId) == ["c"])
        let truth = try driver.apply([outcome("a", true, at: 20), outcome("b", false, at: 20)])
        #expect(truth.labeled.isEmpty)
        #expect(truth.counters.reviewAgreements == 1 && truth.counters.reviewDisagreements == 1)
        #expect(truth.counters.reviewerAgreement == 0.5)
    }

    @Test("state, counters and input offsets survive reopening the store file")
    func persistence() throws {
        let path = try temporaryDirectory("persist") + "/join.sqlite"
        var driver = try JoinDriver(path: path)
        try driver.apply([.prediction(prediction("a", at: 0)), .prediction(prediction("b", at: 0)), outcome("a", true, at: 5)])
        let reopened = try JoinDriver(path: path)
        #expect(reopened.store.counters.joined == 1 && reopened.store.counters.predictions == 2)
        let offsets = try reopened.store.storedOffsets(for: [
            .init(topic: JoinDriver.predictions, partition: 0), .init(topic: JoinDriver.events, partition: 0),
        ])
        #expect(offsets[.init(topic: JoinDriver.predictions, partition: 0)] == 2)
        #expect(offsets[.init(topic: JoinDriver.events, partition: 0)] == 1)
        #expect(try reopened.store.outbox().map(\.requestId) == ["a"], "unconfirmed output stays in the outbox")
        var continued = reopened
        continued.offsets = driver.offsets
        #expect(continued.store.restoreServed(from: driver.predictionRecords) == 1, "b's served record is read back")
        #expect(try continued.apply([outcome("b", false, at: 6)]).labeled.map(\.requestId) == ["b"])
    }

    @Test("the in-memory index is rebuilt on reopening: held outcomes, pending deadlines, review queue, duplicates")
    func indexReloaded() throws {
        let path = try temporaryDirectory("reload") + "/join.sqlite"
        var driver = try JoinDriver(path: path, deadlineMs: 2 * hour, defaultLabel: false)
        try driver.apply([
            outcome("early", true, at: 10), .prediction(prediction("pending", at: 0, score: 0.55, route: .review)),
            .prediction(prediction("done", at: 0)), outcome("done", true, at: 20), .clock(eventTimeMs: 30),
        ])
        var reopened = try JoinDriver(path: path, deadlineMs: 2 * hour, defaultLabel: false)
        reopened.offsets = driver.offsets
        #expect(reopened.store.restoreServed(from: driver.predictionRecords) == 1, "the pending prediction's record is read back")
        #expect(try reopened.store.reviewQueue(threshold: 0.5, limit: 10).map(\.requestId) == ["pending"])
        #expect(reopened.store.clocks[0] == 0, "the join clock (the lesser of both inputs) is restored")
        let joined = try reopened.apply([.prediction(prediction("early", at: 5)), outcome("done", true, at: 40)])
        #expect(joined.labeled.map(\.requestId) == ["early"], "the held outcome joins after the restart")
        #expect(joined.counters.duplicates == 1, "the labeled prediction is still known")
        let expired = try reopened.apply([.clock(eventTimeMs: 3 * hour), .prediction(prediction("later", at: 3 * hour))])
        #expect(expired.labeled.map(\.requestId) == ["pending"], "a deadline restored from SQLite still fires")
        #expect(expired.labeled.first?.labelSource == .default)
        #expect(try reopened.store.reviewQueue(threshold: 0.5, limit: 10).isEmpty)
    }

    @Test("predictions and outcomes are purged after the retention; a very late outcome is then an orphan")
    func retentionPurge() throws {
        var driver = try JoinDriver(deadlineMs: hour, retentionMs: hour)
        try driver.apply([.prediction(prediction("a", at: 0)), outcome("a", true, at: 10)])
        try driver.apply([.clock(eventTimeMs: 2 * hour + 1), .prediction(prediction("b", at: 2 * hour + 1))])
        #expect(try driver.store.prediction(requestId: "a") == nil, "purged at deadline + retention")
        let again = try driver.apply([outcome("a", true, at: 2 * hour + 2)])
        #expect(again.labeled.isEmpty && again.counters.duplicates == 0)
        let later = try driver.apply([.clock(eventTimeMs: 4 * hour), .prediction(prediction("c", at: 4 * hour))])
        #expect(later.counters.orphans == 1)
    }

    @Test("a request id seen again after its purge is a new prediction: pending until its own deadline, then joined by its outcome")
    func requestIdAfterPurge() throws {
        var driver = try JoinDriver(deadlineMs: hour, retentionMs: hour)
        try driver.apply([.prediction(prediction("a", at: 0))])
        // At 1 h "a" expires unlabeled (purge due at 2 h); at 2 h "x" expires and "a" is purged.
        try driver.apply([.clock(eventTimeMs: hour), .prediction(prediction("x", at: hour))])
        try driver.apply([.clock(eventTimeMs: 2 * hour), .prediction(prediction("y", at: 2 * hour))])
        #expect(try driver.store.prediction(requestId: "a") == nil)
        // "a" again, due at 3.5 h: at 3 h "y" expires and "x" is purged, the new "a" still waits.
        let again = try driver.apply([.prediction(prediction("a", at: 2 * hour + hour / 2))])
        #expect(again.counters.predictions == 4 && again.counters.duplicatePredictions == 0)
        let later = try driver.apply([.clock(eventTimeMs: 3 * hour), .prediction(prediction("z", at: 3 * hour))])
        #expect(later.counters.unlabeled == 3)
        #expect(try driver.store.prediction(requestId: "a")?.isPending == true)
        #expect(try driver.store.prediction(requestId: "x") == nil)
        let joined = try driver.apply([outcome("a", true, at: 3 * hour + 1)])
        #expect(joined.labeled.map(\.requestId) == ["a"] && joined.counters.joined == 1 && joined.counters.unlabeled == 3)
        // At 3.5 h its deadline passes: it is labeled, so nothing expires.
        let past = try driver.apply([.clock(eventTimeMs: 4 * hour), .prediction(prediction("w", at: 4 * hour))])
        #expect(past.counters.unlabeled == 4, "only \"z\" expires")
        #expect(try driver.store.prediction(requestId: "a")?.isPending == false)
    }

    @Test("outcome events are decoded from Kafka binary mode, filtered by ce_type; other events only move the clock")
    func decoding() throws {
        let policy = try JoinPolicy(deadlineMs: hour, retentionMs: hour, positiveLabel: "1")
        let decoder = InputDecoder(predictionsTopic: "p", policy: policy)
        func record(type: String, data: String) -> ConsumedRecordBuilder {
            ConsumedRecordBuilder(type: type, data: data)
        }
        let positive = decoder.decode(record(type: "loop.outcome.v1", data: #"{"requestId":"r","label":"1","value":3.5}"#).record)
        guard case .outcome(let outcome) = positive else { Issue.record("not an outcome: \(positive)"); return }
        #expect(outcome.label && outcome.value == 3.5 && outcome.source == .outcome)
        #expect(outcome.eventTimeMs == 1_700_000_000_000)
        let numeric = decoder.decode(record(type: "loop.outcome.v1", data: #"{"requestId":"r","label":0}"#).record)
        guard case .outcome(let negative) = numeric else { Issue.record("not an outcome"); return }
        #expect(!negative.label)
        let review = decoder.decode(record(type: "loop.review.v1", data: #"{"requestId":"r","label":"1","reviewer":"ann"}"#).record)
        guard case .outcome(let verdict) = review else { Issue.record("not a review"); return }
        #expect(verdict.source == .review && verdict.reviewer == "ann")
        let observation = decoder.decode(record(type: "loop.observation.v1", data: "not json at all").record)
        guard case .clock(let time) = observation else { Issue.record("not a clock tick"); return }
        #expect(time == 1_700_000_000_000)
        let broken = decoder.decode(record(type: "loop.outcome.v1", data: #"{"label":"1"}"#).record)
        guard case .malformed = broken else { Issue.record("not malformed"); return }
    }

    @Test("outcome data read straight from its bytes gives what the full JSON parse gives, for plain and unusual data")
    func outcomeFastPath() throws {
        let policy = try JoinPolicy(deadlineMs: hour, retentionMs: hour, positiveLabel: "1", valueField: "amount")
        let decoder = InputDecoder(predictionsTopic: "p", policy: policy)
        let manyKeys = "{" + (0..<20).map { "\"k\($0)\":\($0)," }.joined() + #""requestId":"r","label":"1"}"#
        let cases = [
            #"{"requestId":"r","label":"1"}"#, #"{"label":"0","requestId":"r"}"#, #"{"requestId":"r","label":true}"#,
            #"{"requestId":"r","label":false}"#, #"{"requestId":"r","label":1}"#, #"{"requestId":"r","label":"yes"}"#,
            #"{"requestId":"","label":"1"}"#, #" { "requestId" : "r" , "label" : "1" , "value" : -2e3 } "#,
            #"{"requestId":"r","label":"1","value":3.5}"#, #"{"requestId":"r","label":"1","value":null,"amount":7}"#,
            #"{"requestId":"r","label":"1","value":"x","amount":7.25}"#, #"{"requestId":"r","label":"1","amount":"7"}"#,
            #"{"requestId":"r","label":"1","value":12345678901234567890}"#, #"{"requestId":"r","label":"1","value":0.1}"#,
            #"{"requestId":"r","requestId":"s","label":"1"}"#, #"{"requestId":"r","label":"1","x":1,"x":2}"#,
            #"{"requestId":"r\u0031","label":"1"}"#, #"{"requestId":"ré","label":"1"}"#, #"{"requestId":"r","label":"\u0031"}"#,
            #"{"requestId":"r","label":"1","meta":{"a":[1,2,{"b":null}],"c":"d"}}"#, #"{"requestId":7,"label":"1"}"#,
            #"{"label":"1"}"#, #"{"requestId":"r"}"#, #"{"requestId":"r","label":{"v":1}}"#, #"{"requestId":"r","label":"1"}x"#,
            #"{"requestId":"r","label":"1",}"#, #"{"requestId":"r","label":01}"#, "{}", "[]", #""r""#, "", manyKeys,
        ]
        for data in cases {
            let fast = decoder.decode(ConsumedRecordBuilder(type: "loop.outcome.v1", data: data).record)
            let expected: Outcome?
            if case .object(let object)? = try? JSONValue.parse(Array(data.utf8)),
               case .outcome(let outcome) = decoder.outcome(
                   from: CloudEvent(id: "e1", source: "test", type: "loop.outcome.v1", time: Timestamp(seconds: 1_700_000_000),
                                    data: .json(.object(object))), kind: .outcome) {
                expected = outcome
            } else {
                expected = nil
            }
            switch fast {
            case .outcome(let outcome): #expect(outcome == expected, "\(data)")
            case .malformed: #expect(expected == nil, "\(data)")
            default: Issue.record("\(data): neither an outcome nor malformed: \(fast)")
            }
        }
    }
}

/// A binary-mode CloudEvent record on loop.events.
struct ConsumedRecordBuilder {
    var type: String
    var data: String

    var record: ConsumedRecord {
        ConsumedRecord(
            topic: "events", partition: 0, offset: 0, key: Array("nsw".utf8), value: Array(data.utf8),
            headers: [
                .init(key: "ce_specversion", string: "1.0"), .init(key: "ce_id", string: "e1"),
                .init(key: "ce_source", string: "test"), .init(key: "ce_type", string: type),
                .init(key: "ce_subject", string: "nsw"), .init(key: "ce_time", string: "2023-11-14T22:13:20Z"),
                .init(key: "content-type", string: "application/json"),
            ])
    }
}
