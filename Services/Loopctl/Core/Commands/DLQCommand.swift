import ArgumentParser
import Contracts
import Foundation
import Kafka
import Logging

/// `loopctl dlq`: inspect and replay `loop.events.dlq`.
public struct DLQCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "dlq",
        abstract: "Inspect dead letters and replay them to loop.events.raw.",
        subcommands: [List.self, Show.self, Replay.self])

    public init() {}

    /// `dlq list`
    public struct List: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(
            abstract: "Count dead letters by reason, with the fields blamed and an example message.")

        @OptionGroup(title: "Connection") public var connection: ConnectionOptions
        @Option(name: .long, help: ArgumentHelp("Dead-letter topic (default <prefix>.events.dlq).", valueName: "topic"))
        public var topic: String?
        @Flag(name: .long, help: "One JSON object per reason instead of a table.")
        public var json = false

        public init() {}

        public func run() async throws {
            let resolved = try connection.resolve()
            let records = try await TopicReader(config: resolved.kafka, logger: CLILogging.logger())
                .readAll(topic ?? resolved.topics.deadLetters, missingIsEmpty: true)
            let (entries, undecodable) = DeadLetters.entries(records)
            let groups = DeadLetters.groups(entries)
            if json {
                for group in groups {
                    let line: JSONValue = [
                        "reason": .string(group.reason), "count": .int(Int64(group.count)),
                        "fields": .object(JSONObject(group.fields.map { ($0.field, JSONValue.int(Int64($0.count))) })),
                        "firstRejectedMs": .int(group.firstRejectedMs), "lastRejectedMs": .int(group.lastRejectedMs),
                        "example": .string(group.example),
                    ]
                    print(String(decoding: line.canonicalBytes(), as: UTF8.self))
                }
            } else {
                print(DeadLetters.listText(groups, undecodable: undecodable))
            }
        }
    }

    /// `dlq show`
    public struct Show: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(
            abstract: "Show dead letters in full: one by position, or those of a reason.",
            discussion: "Prints each letter as a JSON line with its position (partition:offset), as `dlq replay --at` takes it.")

        @OptionGroup(title: "Connection") public var connection: ConnectionOptions
        @Argument(help: ArgumentHelp("Positions partition:offset to show (none: all, or those of --reason).", valueName: "position"))
        public var positions: [String] = []
        @Option(name: .long, help: ArgumentHelp("Only letters with this reason.", valueName: "reason"))
        public var reason: String?
        @Option(name: .long, help: ArgumentHelp("At most n letters (newest last).", valueName: "n"))
        public var limit: Int = 20
        @Option(name: .long, help: ArgumentHelp("Dead-letter topic (default <prefix>.events.dlq).", valueName: "topic"))
        public var topic: String?

        public init() {}

        public func run() async throws {
            let resolved = try connection.resolve()
            let records = try await TopicReader(config: resolved.kafka, logger: CLILogging.logger())
                .readAll(topic ?? resolved.topics.deadLetters)
            let selected = try DLQCommand.select(DeadLetters.entries(records).entries, positions: positions, reasons: reason.map { [$0] } ?? [])
            for entry in selected.suffix(max(0, limit)) {
                var object = entry.letter.json.objectValue ?? JSONObject()
                object["position"] = .string(entry.position)
                print(String(decoding: JSONValue.object(object).canonicalBytes(), as: UTF8.self))
            }
            if selected.isEmpty { print("no matching dead letters") }
        }
    }

    /// `dlq replay`
    public struct Replay: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(
            abstract: "Send dead letters' original bytes and headers back to loop.events.raw.",
            discussion: """
                Choose letters with --reason (repeatable), --at partition:offset (repeatable) or --all. The \
                original value and headers are sent unchanged, keyed as before, so ingest validates them \
                again (after a loop.yaml fix, for instance); ingest's dedupe drops any that already passed.
                """)

        @OptionGroup(title: "Connection") public var connection: ConnectionOptions
        @Option(name: .long, help: ArgumentHelp("Replay letters with this reason (repeatable).", valueName: "reason"))
        public var reason: [String] = []
        @Option(name: .long, help: ArgumentHelp("Replay the letter at partition:offset (repeatable).", valueName: "position"))
        public var at: [String] = []
        @Flag(name: .long, help: "Replay every dead letter.")
        public var all = false
        @Flag(name: .long, help: "List what would be replayed without sending.")
        public var dryRun = false
        @Option(name: .long, help: ArgumentHelp("Dead-letter topic (default <prefix>.events.dlq).", valueName: "topic"))
        public var topic: String?
        @Option(name: .long, help: ArgumentHelp("Destination topic (default <prefix>.events.raw).", valueName: "topic"))
        public var to: String?

        public init() {}

        public func validate() throws {
            if !all && reason.isEmpty && at.isEmpty { throw ValidationError("choose letters with --reason, --at or --all") }
        }

        public func run() async throws {
            let resolved = try connection.resolve()
            let logger = CLILogging.logger()
            let records = try await TopicReader(config: resolved.kafka, logger: logger).readAll(topic ?? resolved.topics.deadLetters)
            let selected = try DLQCommand.select(DeadLetters.entries(records).entries, positions: at, reasons: reason)
            let destination = to ?? resolved.topics.rawEvents
            let outgoing = try selected.map { entry throws(LoopctlError) in try DeadLetters.replayRecord(entry, topic: destination) }
            if dryRun {
                for entry in selected { print("would replay \(entry.position) (\(entry.letter.reason)) to \(destination)") }
                return
            }
            let summary = try await DLQCommand.send(outgoing, config: resolved.kafka, logger: logger)
            print("replayed \(Format.count(summary)) dead letters to \(destination)")
        }
    }

    // MARK: - Shared

    /// Letters at `positions` and/or with one of `reasons` (both empty: all), in topic order.
    static func select(_ entries: [DeadLetterEntry], positions: [String], reasons: [String]) throws(LoopctlError) -> [DeadLetterEntry] {
        var wanted: Set<String> = []
        for position in positions {
            let parts = position.split(separator: ":")
            guard parts.count == 2, Int32(parts[0]) != nil, Int64(parts[1]) != nil else {
                throw LoopctlError(.badArgument, "`\(position)` is not a position partition:offset")
            }
            wanted.insert(position)
        }
        if !wanted.isEmpty {
            let found = Set(entries.map(\.position))
            if let missing = wanted.subtracting(found).sorted().first {
                throw LoopctlError(.notFound, "no dead letter at \(missing)")
            }
        }
        let reasonSet = Set(reasons)
        return entries.filter { entry in
            if wanted.isEmpty && reasonSet.isEmpty { return true }
            return wanted.contains(entry.position) || reasonSet.contains(entry.letter.reason)
        }.sorted { ($0.partition, $0.offset) < ($1.partition, $1.offset) }
    }

    /// Sends records with an idempotent producer; returns how many were acknowledged.
    static func send(_ records: [OutgoingRecord], config: KafkaConfig, logger: Logger) async throws(LoopctlError) -> Int {
        guard !records.isEmpty else { return 0 }
        do {
            let producer = try KafkaProducer(config: config, logger: logger)
            return try await producer.send(records).count
        } catch {
            throw LoopctlError(.kafka, "sending to Kafka failed: \(error.reason)", isRetryable: error.isRetriable)
        }
    }
}
