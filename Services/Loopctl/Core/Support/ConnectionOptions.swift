import ArgumentParser
import Contracts
import Foundation
import Kafka

/// The FeedbackLoop services loopctl talks to, with their default admin ports.
public enum ServiceName: String, Sendable, Hashable, CaseIterable {
    case ingest
    case featureStore = "feature-store"
    case scorer
    case feedback
    case retrainer

    /// The port the service's admin server listens on by default.
    public var defaultAdminPort: Int {
        switch self {
        case .ingest: 8081
        case .featureStore: 8082
        case .scorer: 8083
        case .feedback: 8084
        case .retrainer: 8085
        }
    }

    /// The environment variable holding the service's admin URL, e.g. `LOOP_INGEST_URL`.
    public var urlVariable: String { "LOOP_\(rawValue.uppercased().replacingOccurrences(of: "-", with: "_"))_URL" }
}

/// Connection options every loopctl command shares: brokers, loop.yaml, topic prefix, service admin
/// URLs and the operator API key. A flag wins over its environment variable, which wins over the default.
public struct ConnectionOptions: ParsableArguments, Sendable {
    @Option(name: .long, help: ArgumentHelp(
        "Kafka bootstrap brokers, comma-separated (env LOOP_BROKERS; default 127.0.0.1:9092).", valueName: "host:port,..."))
    public var brokers: String?

    @Option(name: .long, help: ArgumentHelp(
        "Path of loop.yaml: topic prefix, label, costs and thresholds (env LOOP_CONFIG; default ./loop.yaml if it exists).",
        valueName: "path"))
    public var config: String?

    @Option(name: .long, help: ArgumentHelp(
        "Topic prefix, overriding loop.yaml's (env LOOP_TOPIC_PREFIX; default loop).", valueName: "prefix"))
    public var topicPrefix: String?

    @Option(name: .long, help: ArgumentHelp("Admin URL of ingest (env LOOP_INGEST_URL; default http://127.0.0.1:8081).", valueName: "url"))
    public var ingestURL: String?
    @Option(name: .long, help: ArgumentHelp("Admin URL of feature-store (env LOOP_FEATURE_STORE_URL; default http://127.0.0.1:8082).", valueName: "url"))
    public var featureStoreURL: String?
    @Option(name: .long, help: ArgumentHelp("Admin URL of scorer (env LOOP_SCORER_URL; default http://127.0.0.1:8083).", valueName: "url"))
    public var scorerURL: String?
    @Option(name: .long, help: ArgumentHelp("Admin URL of feedback (env LOOP_FEEDBACK_URL; default http://127.0.0.1:8084).", valueName: "url"))
    public var feedbackURL: String?
    @Option(name: .long, help: ArgumentHelp("Admin URL of retrainer (env LOOP_RETRAINER_URL; default http://127.0.0.1:8085).", valueName: "url"))
    public var retrainerURL: String?

    @Option(name: .long, help: ArgumentHelp(
        "API key sent as `Authorization: Bearer <key>` (env LOOP_API_KEY; prefer the env var: flags show in `ps`).",
        valueName: "key"))
    public var apiKey: String?

    @Option(name: .customLong("kafka-option"), help: ArgumentHelp(
        "Any librdkafka property, e.g. security.protocol=sasl_ssl; repeatable (env LOOP_KAFKA_OPTIONS, comma-separated).",
        valueName: "key=value"))
    public var kafkaOptions: [String] = []

    public init() {}

    /// The options resolved against `environment`: flags first, then env vars, then defaults.
    public func resolve(
        environment: [String: String] = ProcessInfo.processInfo.environment, clientID: String = "loopctl"
    ) throws(LoopctlError) -> Connection {
        func pick(_ flag: String?, _ variable: String) -> String? {
            if let flag, !flag.isEmpty { return flag }
            if let value = environment[variable], !value.isEmpty { return value }
            return nil
        }
        var loopConfig: LoopConfig?
        let configPath = pick(config, "LOOP_CONFIG")
        if let path = configPath ?? (FileManager.default.fileExists(atPath: "loop.yaml") ? "loop.yaml" : nil) {
            do { loopConfig = try LoopConfig.load(path: path) } catch {
                throw LoopctlError(.badConfig, error.description)
            }
        }
        let prefix = pick(topicPrefix, "LOOP_TOPIC_PREFIX") ?? loopConfig?.topics.prefix ?? "loop"

        var kafka = KafkaConfig(brokers: pick(brokers, "LOOP_BROKERS") ?? "127.0.0.1:9092", clientID: clientID)
        let pairs = kafkaOptions + (environment["LOOP_KAFKA_OPTIONS"].map { $0.split(separator: ",").map(String.init) } ?? [])
        for pair in pairs {
            guard let equals = pair.firstIndex(of: "="), equals != pair.startIndex else {
                throw LoopctlError(.badArgument, "--kafka-option `\(pair)` is not key=value")
            }
            let key = String(pair[..<equals]).trimmingCharacters(in: .whitespaces)
            if kafka.extra[key] == nil {
                kafka.extra[key] = String(pair[pair.index(after: equals)...]).trimmingCharacters(in: .whitespaces)
            }
        }

        var urls: [ServiceName: URL] = [:]
        let flags: [ServiceName: String?] = [
            .ingest: ingestURL, .featureStore: featureStoreURL, .scorer: scorerURL, .feedback: feedbackURL,
            .retrainer: retrainerURL,
        ]
        for service in ServiceName.allCases {
            let text = pick(flags[service] ?? nil, service.urlVariable) ?? "http://127.0.0.1:\(service.defaultAdminPort)"
            guard let url = URL(string: text), let scheme = url.scheme, scheme == "http" || scheme == "https", url.host != nil else {
                throw LoopctlError(.badArgument, "the \(service.rawValue) URL `\(text)` is not an http(s) URL")
            }
            urls[service] = url
        }
        return Connection(
            kafka: kafka, topics: Topics(prefix: prefix), loopConfig: loopConfig, serviceURLs: urls,
            apiKey: pick(apiKey, "LOOP_API_KEY"))
    }
}

/// Resolved connection settings.
public struct Connection: Sendable {
    /// Kafka client settings.
    public var kafka: KafkaConfig
    /// Topic names under the prefix in effect.
    public var topics: Topics
    /// loop.yaml, when one was given or found.
    public var loopConfig: LoopConfig?
    /// Each service's admin base URL.
    public var serviceURLs: [ServiceName: URL]
    /// The operator API key, if any.
    public var apiKey: String?

    public init(
        kafka: KafkaConfig, topics: Topics, loopConfig: LoopConfig? = nil, serviceURLs: [ServiceName: URL] = [:],
        apiKey: String? = nil
    ) {
        self.kafka = kafka
        self.topics = topics
        self.loopConfig = loopConfig
        self.serviceURLs = serviceURLs
        self.apiKey = apiKey
    }

    /// The admin URL of `service` (default port on localhost when not resolved).
    public func url(_ service: ServiceName) -> URL {
        serviceURLs[service] ?? URL(string: "http://127.0.0.1:\(service.defaultAdminPort)")!
    }
}
