import Contracts
import ServiceKit

/// The ingest service's own settings (env `LOOP_<NAME>`, flag `--<name>`), validated once.
public struct IngestSettings: Sendable {
    /// The HMAC-SHA256 key for `pii: hash` fields (required when `loop.yaml` declares one).
    public var piiKey: [UInt8]?
    /// The consumer group reading `loop.events.raw`.
    public var consumerGroup: String
    /// Raw records per consumed batch.
    public var batchSize: Int
    /// Events allowed in one HTTP batch request.
    public var httpMaxBatch: Int
    /// Bytes allowed in one HTTP request body.
    public var httpMaxBodyBytes: Int
    /// Events waiting to be written above which HTTP requests are answered 503 with `Retry-After`.
    public var maxPendingEvents: Int
    /// How long the producer tries to deliver a record before its batch fails.
    public var deliveryTimeout: Duration

    public init(
        piiKey: [UInt8]? = nil, consumerGroup: String = "ingest", batchSize: Int = 5000, httpMaxBatch: Int = 1000,
        httpMaxBodyBytes: Int = 16 << 20, maxPendingEvents: Int = 100_000,
        deliveryTimeout: Duration = .seconds(120)
    ) {
        self.piiKey = piiKey
        self.consumerGroup = consumerGroup
        self.batchSize = batchSize
        self.httpMaxBatch = httpMaxBatch
        self.httpMaxBodyBytes = httpMaxBodyBytes
        self.maxPendingEvents = maxPendingEvents
        self.deliveryTimeout = deliveryTimeout
    }

    // MARK: - Declarations

    static let piiKeySetting = Setting.optionalString(
        "pii-key", valueName: "<secret>",
        help: "Secret key of the HMAC-SHA256 that replaces `pii: hash` fields (required if loop.yaml has one).",
        secret: true)
    static let consumerGroupSetting = Setting.string(
        "group", default: "", valueName: "<group>",
        help: "Consumer group reading the raw events topic; empty means `<topic prefix>.ingest`.")
    static let batchSizeSetting = Setting.integer(
        "batch-size", default: 5000, range: 1...100_000, help: "Raw records consumed, validated and written per batch.")
    static let httpMaxBatchSetting = Setting.integer(
        "http-max-batch", default: 1000, range: 1...100_000, help: "Events allowed in one HTTP batch request (more: 413).")
    static let httpMaxBodySetting = Setting.integer(
        "http-max-body", default: 16 << 20, range: 1024...(1 << 30), valueName: "<bytes>",
        help: "Bytes allowed in one HTTP request body (more: 413).")
    static let maxPendingSetting = Setting.integer(
        "max-pending", default: 100_000, range: 1...10_000_000,
        help: "Events waiting to be written above which HTTP requests get 503 with Retry-After.")

    static let deliveryTimeoutSetting = Setting.integer(
        "delivery-timeout", default: 120, range: 1...3600, valueName: "<seconds>",
        help: "Seconds the producer tries to deliver a record; then its HTTP request gets 503 and raw records are replayed after a restart.")

    /// Every ingest setting, for ``IngestService/settings``.
    static let declarations: [any SettingDeclaration] = [
        piiKeySetting, consumerGroupSetting, batchSizeSetting, httpMaxBatchSetting, httpMaxBodySetting, maxPendingSetting,
        deliveryTimeoutSetting,
    ]

    /// Reads the parsed settings.
    init(settings: Settings, topicPrefix: String) {
        self.init(
            piiKey: settings[Self.piiKeySetting].map { Array($0.utf8) }, consumerGroup: settings[Self.consumerGroupSetting].isEmpty
                ? "\(topicPrefix).ingest" : settings[Self.consumerGroupSetting],
            batchSize: settings[Self.batchSizeSetting], httpMaxBatch: settings[Self.httpMaxBatchSetting],
            httpMaxBodyBytes: settings[Self.httpMaxBodySetting], maxPendingEvents: settings[Self.maxPendingSetting],
            deliveryTimeout: .seconds(settings[Self.deliveryTimeoutSetting]))
    }
}
