import Contracts
import Foundation
import Loopctl
import Testing

/// A small Elec2-like CSV, written out of time order on purpose (row 3 is earliest).
let sampleCSV = """
    id,entity,ts,dow,price,label
    1,a,2020-01-01T00:30:00,3,0.5,1
    2,b,2020-01-01T00:30:00,3,0.25,0
    3,a,2020-01-01T00:00:00,3,0.75,0
    4,a,2020-01-01T01:00:00,3,0.125,
    5,b,2020-01-01T01:30:00,3,1e-3,1
    """

let sampleMapping = ReplayMapping(
    name: "sample", idColumn: "id", entityColumn: "entity", timeColumn: "ts", fields: ["dow", "price"],
    types: ["dow": .int], labelColumn: "label", scoreRequests: .all, observations: .all,
    labelDelay: .eventTime(.minutes(30)))

/// The repository root, from this file's path.
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

extension CloudEvent {
    var dataObject: JSONValue { if case .json(let value) = data { value } else { .null } }
}

@Suite("Replay plan")
struct ReplayPlanTests {
    @Test("rows become observation + score request at their time and outcomes the delay later, in event-time order")
    func ordering() throws {
        let plan = try ReplayPlan(table: try CSVTable.parse(sampleCSV), mapping: sampleMapping)
        let events = Array(plan.events())
        #expect(plan.eventCount == events.count)
        #expect(plan.observationCount == 5)
        #expect(plan.scoreRequestCount == 5)
        #expect(plan.outcomeCount == 4)
        #expect(plan.unlabeledCount == 1)

        let times = events.map { $0.time! }
        #expect(times == times.sorted(), "events are in event-time order")
        #expect(events.map(\.id) == [
            "sample-3/observation", "sample-3/score_request",
            "sample-3/outcome", "sample-1/observation", "sample-1/score_request", "sample-2/observation", "sample-2/score_request",
            "sample-1/outcome", "sample-2/outcome", "sample-4/observation", "sample-4/score_request",
            "sample-5/observation", "sample-5/score_request",
            "sample-5/outcome",
        ])
        for event in events {
            #expect(event.source == "/replay/sample")
            #expect(event.subject == (["1", "3", "4"].contains(event.id.split(separator: "/")[0].dropFirst(7)) ? "a" : "b"))
        }
        let byId = Dictionary(uniqueKeysWithValues: events.map { ($0.id, $0) })
        let request = try #require(byId["sample-1/score_request"])
        #expect(request.type == "loop.score_request.v1")
        #expect(request.time?.text == "2020-01-01T00:30:00Z", "times without an offset are read as UTC")
        #expect(request.dataObject == ["requestId": "sample-1", "dow": 3, "price": 0.5])
        let observation = try #require(byId["sample-1/observation"])
        #expect(observation.type == "loop.observation.v1")
        #expect(observation.dataObject == ["dow": 3, "price": 0.5])
        let outcome = try #require(byId["sample-1/outcome"])
        #expect(outcome.type == "loop.outcome.v1")
        #expect(outcome.dataObject == ["requestId": "sample-1", "label": "1"])
        #expect(outcome.time!.seconds - request.time!.seconds == 1800, "the outcome comes the label delay after its request")
        #expect(byId["sample-5/score_request"]?.dataObject["price"] == .double(0.001), "inferred types: 1e-3 is a double")
        #expect(byId["sample-4/outcome"] == nil, "an empty label sends no outcome")
    }

    @Test("event ids and payloads are the same on every run")
    func deterministic() throws {
        let first = Array(try ReplayPlan(table: try CSVTable.parse(sampleCSV), mapping: sampleMapping).events())
        let second = Array(try ReplayPlan(table: try CSVTable.parse(sampleCSV), mapping: sampleMapping).events())
        #expect(first == second)
        #expect(Set(first.map(\.dedupeKey)).count == first.count, "(source, id) is unique per event")
    }

    @Test("a delay in periods puts the outcome at the entity's N-th next row; the last rows extrapolate the gap")
    func periods() throws {
        var mapping = sampleMapping
        mapping.labelDelay = try #require(ReplayMapping.LabelDelay("1 period"))
        mapping.observations = .none
        let events = Array(try ReplayPlan(table: try CSVTable.parse(sampleCSV), mapping: mapping).events())
        let outcomes = Dictionary(uniqueKeysWithValues: events.filter { $0.type == "loop.outcome.v1" }.map { ($0.id, $0.time!.text) })
        #expect(outcomes["sample-3/outcome"] == "2020-01-01T00:30:00Z", "a's next row after 00:00 is at 00:30")
        #expect(outcomes["sample-1/outcome"] == "2020-01-01T01:00:00Z")
        #expect(outcomes["sample-2/outcome"] == "2020-01-01T01:30:00Z", "b's next row")
        #expect(outcomes["sample-5/outcome"] == "2020-01-01T02:30:00Z", "b's last row: one more 1h gap")
        #expect(ReplayMapping.LabelDelay("3p") == .periods(3))
        #expect(ReplayMapping.LabelDelay("30m") == .eventTime(.minutes(30)))
        #expect(ReplayMapping.LabelDelay("soon") == nil)
    }

    @Test("a row filter selects which rows become score requests")
    func rowFilter() throws {
        var mapping = sampleMapping
        mapping.scoreRequests = .init(enabled: true, fields: ["price"], whereColumn: "entity", whereValues: ["b"])
        mapping.observations = .none
        let events = Array(try ReplayPlan(table: try CSVTable.parse(sampleCSV), mapping: mapping).events())
        #expect(events.map(\.id) == ["sample-2/score_request", "sample-2/outcome", "sample-5/score_request", "sample-5/outcome"])
        #expect(events[0].dataObject == ["requestId": "sample-2", "price": 0.25])
    }

    @Test("mapping errors name the mapping key and the missing column")
    func mappingErrors() throws {
        var mapping = sampleMapping
        mapping.timeColumn = "timestamp"
        let table = try CSVTable.parse(sampleCSV)
        let error = try #require(throws: LoopctlError.self) { try ReplayPlan(table: table, mapping: mapping, file: "s.csv") }
        #expect(error.code == .badMapping)
        #expect(error.reason.contains("columns.time names column `timestamp`"))
        #expect(error.reason.contains("s.csv"))
        #expect(error.reason.contains("columns: id, entity, ts, dow, price, label"))

        mapping = sampleMapping
        mapping.fields = ["dow", "prize"]
        let fieldError = try #require(throws: LoopctlError.self) { try ReplayPlan(table: table, mapping: mapping) }
        #expect(fieldError.reason.contains("fields names column `prize`"))

        let yamlError = try #require(throws: LoopctlError.self) {
            try ReplayMapping.parse("columns: {time: ts}\nlabelDelay: soon\n", file: "m.yaml")
        }
        #expect(yamlError.reason.contains("labelDelay `soon`"))
        let unknownKey = try #require(throws: LoopctlError.self) {
            try ReplayMapping.parse("columns: {time: ts, lable: y}\n", file: "m.yaml")
        }
        #expect(unknownKey.reason.contains("columns.lable"))
    }

    @Test("bad cells name the line and the column")
    func cellErrors() throws {
        let csv = "id,entity,ts,dow,price,label\n1,a,2020-01-01T00:00:00,3,0.5,1\n2,a,2020-13-01T00:00:00,3,0.5,1\n"
        let timeError = try #require(throws: LoopctlError.self) {
            try ReplayPlan(table: try CSVTable.parse(csv), mapping: sampleMapping, file: "x.csv")
        }
        #expect(timeError.reason.hasPrefix("x.csv line 3, column `ts`"))
        let typed = "id,entity,ts,dow,price,label\n1,a,2020-01-01T00:00:00,three,0.5,1\n"
        let typeError = try #require(throws: LoopctlError.self) {
            try ReplayPlan(table: try CSVTable.parse(typed), mapping: sampleMapping, file: "x.csv")
        }
        #expect(typeError.reason == "x.csv line 2, column `dow`: `three` is not a int")
        let ragged = try #require(throws: LoopctlError.self) { try CSVTable.parse("a,b\n1,2\n3\n") }
        #expect(ragged.reason.contains("data row 2 has 1 cells"))
    }

    @Test("CSV quoting: commas, quotes and newlines inside quoted cells; CRLF line ends")
    func csvQuoting() throws {
        let table = try CSVTable.parse("a,b\r\n\"x, y\",\"say \"\"hi\"\"\"\r\n\"two\nlines\",3\r\n")
        #expect(table.header == ["a", "b"])
        #expect(table.rows == [["x, y", "say \"hi\""], ["two\nlines", "3"]])
    }

    @Test("the committed Elec2 mapping fits elec2.csv: every row a request and an observation of nsw, outcomes 30 min later")
    func elec2Mapping() throws {
        let examples = repositoryRoot.appendingPathComponent("examples/elec2")
        let mapping = try ReplayMapping.load(path: examples.appendingPathComponent("replay.yaml").path)
        #expect(mapping.labelDelay == .eventTime(.minutes(30)))
        #expect(mapping.scoreRequests.enabled && mapping.observations.enabled)
        var table = try CSVTable.load(path: examples.appendingPathComponent("elec2.csv").path)
        #expect(table.rows.count == 45_312)
        table.rows = Array(table.rows.prefix(48))
        let config = try LoopConfig.load(path: examples.appendingPathComponent("loop.yaml").path)
        let plan = try ReplayPlan(table: table, mapping: mapping, fieldKinds: config.fields.mapValues(\.kind))
        let events = Array(plan.events())
        #expect(events.count == 48 * 3)
        #expect(events.allSatisfy { $0.subject == "nsw" })
        let first = try #require(events.first { $0.type == "loop.score_request.v1" })
        #expect(first.id == "elec2-0/score_request")
        #expect(first.time?.text == "1996-05-07T00:00:00Z")
        #expect(first.dataObject["dow"] == .int(2))
        #expect(first.dataObject["period"] == .double(0))
        #expect(first.dataObject["label"] == nil, "the label only travels in outcomes")
        let outcome = try #require(events.first { $0.id == "elec2-0/outcome" })
        #expect(outcome.time?.text == "1996-05-07T00:30:00Z")
        for field in ["dow", "period", "nswprice", "nswdemand"] {
            #expect(first.dataObject[field] != nil, "required field \(field) is sent")
        }
    }
}
