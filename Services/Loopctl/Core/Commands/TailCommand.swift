import ArgumentParser
import Contracts
import Foundation

/// `loopctl tail <topic>`: records as JSON lines.
public struct TailCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "tail",
        abstract: "Print a topic's records as JSON lines, decoded by the topic's contract.",
        discussion: """
            The topic may be given in full (loop.predictions) or by its short name under the prefix \
            (predictions, events.dlq, …). Records are decoded by the topic's name: CloudEvents for events and \
            events.raw, dead letters, predictions, labeled examples, monitoring records, model versions and the \
            registry state, audit entries; --as overrides it. Each line is \
            {topic, partition, offset, key, timestamp, <kind>: …}; a record that does not decode carries `error` \
            and `raw` instead.
            """)

    @OptionGroup(title: "Connection")
    public var connection: ConnectionOptions

    @Argument(help: ArgumentHelp("The topic: full name or short name under the prefix (events, predictions, …).", valueName: "topic"))
    public var topic: String

    @Option(name: [.short, .customLong("last")], help: ArgumentHelp("Start with the last n records of each partition.", valueName: "n"))
    public var last: Int = 10
    @Flag(name: .long, help: "Start from the oldest retained record (instead of --last).")
    public var all = false
    @Flag(name: [.short, .long], help: "Keep printing new records until interrupted.")
    public var follow = false
    @Option(name: .customLong("as"), help: ArgumentHelp(
        "Decode as: \(RecordDecoder.Kind.allCases.map(\.rawValue).joined(separator: ", ")).", valueName: "kind"))
    public var kind: String?

    public init() {}

    public func run() async throws {
        let resolved = try connection.resolve()
        let name = Self.topicName(topic, topics: resolved.topics)
        let decodeAs: RecordDecoder.Kind
        if let kind {
            guard let parsed = RecordDecoder.Kind(rawValue: kind) else {
                throw ValidationError("--as must be one of \(RecordDecoder.Kind.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            decodeAs = parsed
        } else {
            decodeAs = RecordDecoder.kind(ofTopic: name)
        }
        let reader = TopicReader(config: resolved.kafka, logger: CLILogging.logger())
        try await reader.read(name, start: all ? .beginning : .last(last), follow: follow) { records in
            var output = ""
            for record in records {
                output += String(decoding: RecordDecoder.json(record, as: decodeAs).canonicalBytes(), as: UTF8.self) + "\n"
            }
            FileHandle.standardOutput.write(Data(output.utf8))
        }
    }

    /// A full topic name: `name` itself if it is one of the prefix's topics or contains the prefix,
    /// else `<prefix>.<name>` when that is one of them, else `name` unchanged.
    static func topicName(_ name: String, topics: Topics) -> String {
        if topics.all.contains(name) { return name }
        let prefixed = "\(topics.prefix).\(name)"
        return topics.all.contains(prefixed) ? prefixed : name
    }
}
