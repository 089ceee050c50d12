import ArgumentParser
import Contracts
import Foundation
import Kafka

/// `loopctl status`: health, readiness, versions and consumer lag of every service.
public struct StatusCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show every service's health, readiness, version and consumer lag per group.",
        discussion: """
            Calls GET /healthz and /readyz on each service's admin URL, and reads each consumer group's lag \
            (high watermark minus committed offset, summed over partitions) on the topics it consumes. \
            Group names default to <prefix>.<service>; override with --group service=name. Exits with \
            status 1 when a service is down or not ready.
            """)

    @OptionGroup(title: "Connection") public var connection: ConnectionOptions
    @Option(name: .long, help: ArgumentHelp("Consumer group of a service, e.g. scorer=loop.scorer (repeatable).", valueName: "service=group"))
    public var group: [String] = []
    @Flag(name: .long, help: "Print one JSON object instead of tables.")
    public var json = false

    public init() {}

    /// One service's admin endpoints.
    public struct ServiceHealth: Sendable, Hashable {
        public var service: ServiceName
        public var url: URL
        /// `alive`, `down` or the HTTP status it answered.
        public var health: String
        /// `ready`, the reason it is not, or `-` when down.
        public var readiness: String
        public var version: String?
        public var isUp: Bool { health == "alive" && readiness == "ready" }
    }

    /// One group's lag on one topic.
    public struct GroupLag: Sendable, Hashable {
        public var service: ServiceName
        public var group: String
        public var topic: String
        public var lag: Int64?
        public var committedPartitions: Int
        public var partitions: Int
        /// Why the lag is unknown.
        public var problem: String?
    }

    /// The topics each service consumes with its group.
    public static func consumedTopics(_ topics: Topics) -> [(ServiceName, [String])] {
        [
            (.ingest, [topics.rawEvents]), (.featureStore, [topics.events]), (.scorer, [topics.events]),
            (.feedback, [topics.events, topics.predictions]), (.retrainer, [topics.labeled, topics.monitoring]),
        ]
    }

    public func run() async throws {
        let resolved = try connection.resolve()
        var groups: [ServiceName: String] = [:]
        for pair in group {
            let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, let service = ServiceName(rawValue: parts[0]) else {
                throw ValidationError("--group `\(pair)` is not service=group with a service among \(ServiceName.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            groups[service] = parts[1]
        }
        let client = HTTPClient(timeout: .seconds(3))
        var health: [ServiceHealth] = []
        for service in ServiceName.allCases {
            health.append(await Self.probe(service, url: resolved.url(service), client: client))
        }
        let lags = await Self.lags(resolved, groups: groups)
        if json {
            print(String(decoding: Self.json(health: health, lags: lags).canonicalBytes(), as: UTF8.self))
        } else {
            print(Self.text(health: health, lags: lags))
        }
        if !health.allSatisfy(\.isUp) { throw ExitCode(1) }
    }

    /// Calls `/healthz` and `/readyz` of one service.
    public static func probe(_ service: ServiceName, url: URL, client: HTTPClient) async -> ServiceHealth {
        var result = ServiceHealth(service: service, url: url, health: "down", readiness: "-", version: nil)
        guard let healthReply = try? await client.send(HTTPRequest(method: "GET", url: url.appendingPathComponent("healthz"))) else {
            return result
        }
        let body = try? JSONValue.parse(healthReply.body)
        result.health = healthReply.isSuccess ? "alive" : "HTTP \(healthReply.status)"
        result.version = body?["version"]?.stringValue
        if let reply = try? await client.send(HTTPRequest(method: "GET", url: url.appendingPathComponent("readyz"))) {
            let readyBody = try? JSONValue.parse(reply.body)
            result.readiness = reply.isSuccess ? "ready" : (readyBody?["message"]?.stringValue ?? "not ready (HTTP \(reply.status))")
        }
        return result
    }

    /// Each service group's lag on the topics it consumes.
    static func lags(_ connection: Connection, groups: [ServiceName: String]) async -> [GroupLag] {
        let admin: KafkaAdmin
        do { admin = try KafkaAdmin(config: connection.kafka, timeout: .seconds(5), logger: CLILogging.logger()) } catch {
            return []
        }
        var result: [GroupLag] = []
        for (service, topics) in consumedTopics(connection.topics) {
            let group = groups[service] ?? "\(connection.topics.prefix).\(service.rawValue)"
            for topic in topics {
                var entry = GroupLag(service: service, group: group, topic: topic, lag: nil, committedPartitions: 0, partitions: 0)
                do {
                    let lag = try await admin.lag(group: group, topic: topic)
                    entry.lag = lag.total
                    entry.partitions = lag.partitions.count
                    entry.committedPartitions = lag.partitions.count { $0.committed != nil }
                } catch {
                    entry.problem = error.code == .unknownTopicOrPartition ? "no topic" : error.reason
                }
                result.append(entry)
            }
        }
        return result
    }

    /// The two tables `status` prints.
    public static func text(health: [ServiceHealth], lags: [GroupLag]) -> String {
        var rows = [["SERVICE", "HEALTH", "READY", "VERSION", "URL"]]
        for entry in health {
            rows.append([entry.service.rawValue, entry.health, entry.readiness, entry.version ?? "-", entry.url.absoluteString])
        }
        var text = Format.table(rows)
        guard !lags.isEmpty else { return text + "\n\nconsumer lag: brokers unreachable" }
        var lagRows = [["GROUP", "TOPIC", "LAG", "COMMITTED"]]
        for lag in lags {
            let committed = lag.problem ?? (lag.committedPartitions == 0 ? "never" : "\(lag.committedPartitions)/\(lag.partitions) partitions")
            lagRows.append([lag.group, lag.topic, lag.lag.map { Format.count(Int($0)) } ?? "-", committed])
        }
        text += "\n\n" + Format.table(lagRows)
        return text
    }

    static func json(health: [ServiceHealth], lags: [GroupLag]) -> JSONValue {
        .object([
            "services": .array(health.map { entry in
                ["service": .string(entry.service.rawValue), "url": .string(entry.url.absoluteString),
                 "health": .string(entry.health), "readiness": .string(entry.readiness), "version": JSONValue(entry.version)]
            }),
            "lag": .array(lags.map { lag in
                ["service": .string(lag.service.rawValue), "group": .string(lag.group), "topic": .string(lag.topic),
                 "lag": JSONValue(lag.lag), "committedPartitions": .int(Int64(lag.committedPartitions)),
                 "partitions": .int(Int64(lag.partitions)), "problem": JSONValue(lag.problem)]
            }),
        ])
    }
}
