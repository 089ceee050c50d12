import Contracts
import Foundation

/// The events a replay sends, prepared from a CSV and a mapping: every row parsed and checked up
/// front (errors name the line and column), sorted by event time, then produced in event-time order
/// with each outcome merged in at its row's time plus the label delay.
///
/// Event ids are deterministic (`<requestId>/<kind>`), so replaying the same file again produces the
/// same `(source, id)` pairs and ingest drops the duplicates.
public struct ReplayPlan: Sendable {
    /// One CSV row, parsed.
    struct Row: Sendable {
        var id: String
        var entity: String
        var time: Timestamp
        var observation: JSONObject?
        var context: JSONObject?
        var label: String?
        /// When the outcome is due (set once rows are sorted).
        var outcomeTime: Timestamp?
    }

    let rows: [Row]
    let source: String
    let requestIdPrefix: String

    /// How many events of each kind the plan produces.
    public let observationCount: Int
    public let scoreRequestCount: Int
    public let outcomeCount: Int
    /// Rows with a score request but an empty label cell (no outcome for them).
    public let unlabeledCount: Int

    /// Every event the plan produces.
    public var eventCount: Int { observationCount + scoreRequestCount + outcomeCount }
    /// Event time of the first and last row (outcomes may come later).
    public var firstTime: Timestamp? { rows.first?.time }
    public var lastTime: Timestamp? { rows.last?.time }

    /// Prepares a plan. `fieldKinds` (from loop.yaml) types the fields the mapping does not type.
    public init(
        table: CSVTable, mapping: ReplayMapping, file: String = "the CSV",
        fieldKinds: [String: FieldSpec.Kind] = [:]
    ) throws(LoopctlError) {
        try mapping.validate(header: table.header, file: file)
        let zoneOffset = try mapping.timeZoneOffset()
        let index = { (name: String) -> Int in table.column(name)! }
        let idIndex = mapping.idColumn.map(index)
        let entityIndex = mapping.entityColumn.map(index)
        let timeIndex = index(mapping.timeColumn)
        let labelIndex = mapping.labelColumn.map(index)

        func typedColumns(_ selection: ReplayMapping.Selection) -> [(name: String, index: Int, type: ReplayMapping.FieldType)] {
            (selection.fields ?? mapping.fields).map { name in
                let type = mapping.types[name] ?? fieldKinds[name].map(ReplayMapping.FieldType.init(kind:)) ?? .infer
                return (name, index(name), type)
            }
        }
        let observationColumns = typedColumns(mapping.observations)
        let contextColumns = typedColumns(mapping.scoreRequests)
        func filter(_ selection: ReplayMapping.Selection) -> (index: Int, values: Set<String>)? {
            selection.whereColumn.map { (index($0), Set(selection.whereValues)) }
        }
        let observationFilter = filter(mapping.observations)
        let scoreFilter = filter(mapping.scoreRequests)

        var rows: [Row] = []
        rows.reserveCapacity(table.rows.count)
        var seenIds: Set<String> = []
        for (number, cells) in table.rows.enumerated() {
            let line = number + 2
            func fail(_ column: String, _ message: String) -> LoopctlError {
                LoopctlError(.badCSV, "\(file) line \(line), column `\(column)`: \(message)")
            }
            let id = idIndex.map { cells[$0].trimmingCharacters(in: .whitespaces) } ?? String(number + 1)
            guard !id.isEmpty else { throw fail(mapping.idColumn ?? "id", "the row id is empty") }
            guard seenIds.insert(id).inserted else { throw fail(mapping.idColumn ?? "id", "row id `\(id)` appears twice") }
            let entity = entityIndex.map { cells[$0].trimmingCharacters(in: .whitespaces) } ?? mapping.entity ?? ""
            guard !entity.isEmpty else { throw fail(mapping.entityColumn ?? "entity", "the entity is empty") }
            let time: Timestamp
            do { time = try Self.parseTime(cells[timeIndex], format: mapping.timeFormat, zoneOffset: zoneOffset) } catch {
                throw fail(mapping.timeColumn, error.reason)
            }
            func selected(_ selection: ReplayMapping.Selection, _ filter: (index: Int, values: Set<String>)?) -> Bool {
                guard selection.enabled else { return false }
                guard let filter else { return true }
                return filter.values.contains(cells[filter.index].trimmingCharacters(in: .whitespaces))
            }
            func object(_ columns: [(name: String, index: Int, type: ReplayMapping.FieldType)]) throws(LoopctlError) -> JSONObject {
                var members: [(String, JSONValue)] = []
                for column in columns {
                    let text = cells[column.index].trimmingCharacters(in: .whitespaces)
                    if text.isEmpty { continue }
                    guard let value = Self.value(text, as: column.type) else {
                        throw fail(column.name, "`\(text)` is not a \(column.type.rawValue)")
                    }
                    members.append((column.name, value))
                }
                return JSONObject(members)
            }
            var row = Row(id: id, entity: entity, time: time)
            if selected(mapping.observations, observationFilter) { row.observation = try object(observationColumns) }
            if selected(mapping.scoreRequests, scoreFilter) {
                row.context = try object(contextColumns)
                if let labelIndex {
                    let label = cells[labelIndex].trimmingCharacters(in: .whitespaces)
                    row.label = label.isEmpty ? nil : label
                }
            }
            rows.append(row)
        }
        // Stable: rows with equal times keep their file order.
        let order = rows.indices.sorted { (rows[$0].time, $0) < (rows[$1].time, $1) }
        var sorted = order.map { rows[$0] }
        Self.assignOutcomeTimes(&sorted, delay: mapping.labelDelay)

        self.rows = sorted
        source = mapping.effectiveSource
        requestIdPrefix = mapping.effectiveRequestIdPrefix
        observationCount = sorted.count { $0.observation != nil }
        scoreRequestCount = sorted.count { $0.context != nil }
        outcomeCount = sorted.count { $0.context != nil && $0.label != nil }
        unlabeledCount = scoreRequestCount - outcomeCount
    }

    /// The events in event-time order (at equal times: outcomes first, then a row's observation,
    /// then its score request).
    public func events() -> Events { Events(plan: self) }

    /// The plan's events, in order.
    public struct Events: Sequence, IteratorProtocol, Sendable {
        let plan: ReplayPlan
        var position = 0
        var pendingRowEvents: [CloudEvent] = []
        var outcomes = OutcomeQueue()
        var sequence = 0

        public mutating func next() -> CloudEvent? {
            if !pendingRowEvents.isEmpty { return pendingRowEvents.removeFirst() }
            let nextRowTime = position < plan.rows.count ? plan.rows[position].time : nil
            if let due = outcomes.peek(), nextRowTime.map({ due.time <= $0 }) ?? true {
                outcomes.pop()
                return plan.outcome(plan.rows[due.row], at: due.time)
            }
            guard position < plan.rows.count else { return nil }
            let row = plan.rows[position]
            if let time = row.outcomeTime, row.context != nil, row.label != nil {
                outcomes.push(OutcomeQueue.Entry(time: time, sequence: sequence, row: position))
                sequence += 1
            }
            position += 1
            if row.observation != nil { pendingRowEvents.append(plan.observation(row)) }
            if row.context != nil { pendingRowEvents.append(plan.scoreRequest(row)) }
            return self.next()
        }
    }

    // MARK: - Events of a row

    /// The data content type of every event (what binary mode's `content-type` header reads back as).
    static let json = "application/json"

    func requestId(_ row: Row) -> String { requestIdPrefix + row.id }

    func observation(_ row: Row) -> CloudEvent {
        CloudEvent(
            id: "\(requestId(row))/observation", source: source, type: EventType.observation.description,
            subject: row.entity, time: row.time, dataContentType: Self.json, data: .json(.object(row.observation ?? JSONObject())))
    }

    func scoreRequest(_ row: Row) -> CloudEvent {
        var data = row.context ?? JSONObject()
        data[PayloadField.requestId] = .string(requestId(row))
        return CloudEvent(
            id: "\(requestId(row))/score_request", source: source, type: EventType.scoreRequest.description,
            subject: row.entity, time: row.time, dataContentType: Self.json, data: .json(.object(data)))
    }

    func outcome(_ row: Row, at time: Timestamp) -> CloudEvent {
        let data: JSONObject = [PayloadField.requestId: .string(requestId(row)), PayloadField.label: .string(row.label ?? "")]
        return CloudEvent(
            id: "\(requestId(row))/outcome", source: source, type: EventType.outcome.description,
            subject: row.entity, time: time, dataContentType: Self.json, data: .json(.object(data)))
    }

    // MARK: - Parsing

    static func parseTime(_ raw: String, format: ReplayMapping.TimeFormat, zoneOffset: Int64) throws(LoopctlError) -> Timestamp {
        let text = raw.trimmingCharacters(in: .whitespaces)
        switch format {
        case .epochSeconds, .epochMilliseconds:
            guard let number = Double(text), number.isFinite else {
                throw LoopctlError(.badCSV, "`\(text)` is not a number of \(format == .epochSeconds ? "seconds" : "milliseconds")")
            }
            let seconds = format == .epochSeconds ? number : number / 1000
            let whole = seconds.rounded(.down)
            return Timestamp(seconds: Int64(whole), nanoseconds: Int32(((seconds - whole) * 1e9).rounded()))
        case .rfc3339:
            var candidate = text
            if candidate.count > 10, candidate[candidate.index(candidate.startIndex, offsetBy: 10)] == " " {
                candidate.replaceSubrange(candidate.index(candidate.startIndex, offsetBy: 10)...candidate.index(candidate.startIndex, offsetBy: 10), with: "T")
            }
            let timePart = candidate.split(separator: "T", maxSplits: 1).dropFirst().first ?? ""
            let hasOffset = timePart.contains { $0 == "Z" || $0 == "z" || $0 == "+" || $0 == "-" }
            do {
                let parsed = try Timestamp(rfc3339: hasOffset ? candidate : candidate + "Z")
                return hasOffset ? parsed : Timestamp(seconds: parsed.seconds - zoneOffset, nanoseconds: parsed.nanoseconds)
            } catch {
                throw LoopctlError(.badCSV, "`\(text)` is not an RFC 3339 time: \(error.message)")
            }
        }
    }

    static func value(_ text: String, as type: ReplayMapping.FieldType) -> JSONValue? {
        switch type {
        case .string: return .string(text)
        case .int: return Int64(text).map(JSONValue.int)
        case .double:
            guard let number = Double(text), number.isFinite else { return nil }
            return .double(number)
        case .bool:
            switch text.lowercased() {
            case "true", "1", "yes": return .bool(true)
            case "false", "0", "no": return .bool(false)
            default: return nil
            }
        case .infer:
            if let integer = Int64(text) { return .int(integer) }
            if let number = Double(text), number.isFinite { return .double(number) }
            if text == "true" || text == "false" { return .bool(text == "true") }
            return .string(text)
        }
    }

    /// Sets each row's outcome time from the delay; rows must be sorted by time.
    static func assignOutcomeTimes(_ rows: inout [Row], delay: ReplayMapping.LabelDelay) {
        switch delay {
        case .eventTime(let span):
            let whole = span.seconds.rounded(.down)
            for index in rows.indices {
                rows[index].outcomeTime = Timestamp(
                    seconds: rows[index].time.seconds + Int64(whole),
                    nanoseconds: rows[index].time.nanoseconds + Int32((span.seconds - whole) * 1e9))
            }
        case .periods(let count):
            var byEntity: [String: [Int]] = [:]
            for index in rows.indices { byEntity[rows[index].entity, default: []].append(index) }
            for positions in byEntity.values {
                for (offset, position) in positions.enumerated() {
                    if offset + count < positions.count {
                        rows[position].outcomeTime = rows[positions[offset + count]].time
                    } else {
                        let last = positions[positions.count - 1]
                        let gap = positions.count > 1 ? rows[last].time.seconds - rows[positions[positions.count - 2]].time.seconds : 0
                        let steps = Int64(offset + count - (positions.count - 1))
                        rows[position].outcomeTime = Timestamp(
                            seconds: rows[last].time.seconds + gap * steps, nanoseconds: rows[last].time.nanoseconds)
                    }
                }
            }
        }
    }
}

extension ReplayMapping.FieldType {
    /// The JSON type loop.yaml's field kind stands for.
    init(kind: FieldSpec.Kind) {
        switch kind {
        case .double: self = .double
        case .int: self = .int
        case .bool: self = .bool
        case .string, .category: self = .string
        }
    }
}

/// Outcomes waiting for their time: a binary min-heap by (time, sequence).
struct OutcomeQueue: Sendable {
    struct Entry: Sendable {
        var time: Timestamp
        var sequence: Int
        var row: Int
        func precedes(_ other: Entry) -> Bool { (time, sequence) < (other.time, other.sequence) }
    }

    private var heap: [Entry] = []

    func peek() -> Entry? { heap.first }

    mutating func push(_ entry: Entry) {
        heap.append(entry)
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child].precedes(heap[parent]) else { break }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    mutating func pop() {
        guard !heap.isEmpty else { return }
        heap.swapAt(0, heap.count - 1)
        heap.removeLast()
        var parent = 0
        while true {
            let left = 2 * parent + 1, right = left + 1
            var smallest = parent
            if left < heap.count, heap[left].precedes(heap[smallest]) { smallest = left }
            if right < heap.count, heap[right].precedes(heap[smallest]) { smallest = right }
            guard smallest != parent else { return }
            heap.swapAt(parent, smallest)
            parent = smallest
        }
    }
}
