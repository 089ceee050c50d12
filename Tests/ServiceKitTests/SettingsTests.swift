import Kafka
import Logging
import ServiceKit
import ServiceLifecycle
import Testing

@Suite("Settings")
struct SettingsTests {
    let common = CommonSettings(service: "ingest", defaultAdminPort: 8081)
    let batchSize = Setting.integer("batch-size", default: 500, range: 1...10_000, help: "Events per batch.")
    let token = Setting.requiredString("token", help: "A required secret.", secret: true)

    func parse(
        _ arguments: [String], _ environment: [String: String] = [:], extra: [any SettingDeclaration] = []
    ) throws(ServiceError) -> Settings {
        switch try Settings.parse(common.all + extra, arguments: arguments, environment: environment) {
        case .run(let settings): return settings
        case .help: throw ServiceError(.internal, "unexpected --help")
        }
    }

    func parseError(_ arguments: [String], _ environment: [String: String] = [:],
                    extra: [any SettingDeclaration] = []) -> ServiceError? {
        do {
            _ = try parse(arguments, environment, extra: extra)
            return nil
        } catch {
            return error
        }
    }

    @Test("a flag overrides its env var, which overrides the default")
    func precedence() throws {
        let defaults = try parse([])
        #expect(defaults[common.brokers] == "127.0.0.1:9092")
        #expect(defaults[common.adminPort] == 8081)
        #expect(defaults.source(of: "brokers") == .default)

        let fromEnvironment = try parse([], ["LOOP_BROKERS": "kafka:9092", "LOOP_ADMIN_PORT": "9000"])
        #expect(fromEnvironment[common.brokers] == "kafka:9092")
        #expect(fromEnvironment[common.adminPort] == 9000)
        #expect(fromEnvironment.source(of: "brokers") == .environment)

        let fromFlag = try parse(["--brokers", "b1:9092,b2:9092", "--admin-port=0"],
                                 ["LOOP_BROKERS": "kafka:9092", "LOOP_ADMIN_PORT": "9000"])
        #expect(fromFlag[common.brokers] == "b1:9092,b2:9092")
        #expect(fromFlag[common.adminPort] == 0)
        #expect(fromFlag.source(of: "brokers") == .flag)
    }

    @Test("each service has its own admin port and state directory defaults")
    func serviceDefaults() throws {
        let scorer = CommonSettings(service: "scorer", defaultAdminPort: 8083)
        guard case .run(let settings) = try Settings.parse(scorer.all, arguments: [], environment: [:]) else {
            Issue.record("expected settings")
            return
        }
        #expect(settings[scorer.adminPort] == 8083)
        #expect(settings[scorer.stateDirectory] == "state/scorer")
    }

    @Test("an empty env var counts as not given")
    func emptyEnvironment() throws {
        let settings = try parse([], ["LOOP_BROKERS": "", "LOOP_KAFKA_SASL_USERNAME": ""])
        #expect(settings[common.brokers] == "127.0.0.1:9092")
        #expect(settings[common.kafkaSASLUsername] == nil)
    }

    @Test("typed values: choices, key=value lists, service settings")
    func typedValues() throws {
        let settings = try parse(
            ["--log-format", "text", "--log-level", "DEBUG", "--kafka-extra", "socket.timeout.ms=30000, debug = broker",
             "--batch-size", "42"],
            ["LOOP_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"], extra: [batchSize])
        #expect(settings[common.logFormat] == .text)
        #expect(settings[common.logLevel] == .debug)
        #expect(settings[common.kafkaExtra] == ["socket.timeout.ms": "30000", "debug": "broker"])
        #expect(settings[common.kafkaSecurityProtocol] == "sasl_ssl")
        #expect(settings[batchSize] == 42)
    }

    @Test("the Kafka config carries brokers and security pass-through")
    func kafkaConfig() throws {
        let settings = try parse(
            ["--kafka-sasl-mechanism", "SCRAM-SHA-512", "--kafka-tls-ca", "/etc/ca.pem"],
            ["LOOP_BROKERS": "k1:9093", "LOOP_KAFKA_SASL_USERNAME": "loop", "LOOP_KAFKA_SASL_PASSWORD": "s3cret",
             "LOOP_KAFKA_SECURITY_PROTOCOL": "sasl_ssl", "LOOP_KAFKA_EXTRA": "acks=all"])
        let config = common.kafkaConfig(from: settings, clientID: "feedbackloop-ingest")
        #expect(config.brokers == "k1:9093")
        #expect(config.clientID == "feedbackloop-ingest")
        #expect(config.securityProtocol == "sasl_ssl")
        #expect(config.saslMechanism == "SCRAM-SHA-512")
        #expect(config.saslUsername == "loop")
        #expect(config.saslPassword == "s3cret")
        #expect(config.tlsCALocation == "/etc/ca.pem")
        #expect(config.tlsCertificateLocation == nil)
        #expect(config.extra == ["acks": "all"])
    }

    @Test("unknown flags and stray arguments are errors naming them")
    func unknownFlags() {
        let unknown = parseError(["--brokerz", "x"])
        #expect(unknown?.code == .unknownFlag)
        #expect(unknown?.message.contains("--brokerz") == true)

        let stray = parseError(["loop.yaml"])
        #expect(stray?.code == .unknownFlag)
        #expect(stray?.message.contains("loop.yaml") == true)
    }

    @Test("bad values name the flag or env var they came from")
    func badValues() {
        let flag = parseError(["--admin-port", "http"])
        #expect(flag?.code == .badValue)
        #expect(flag?.message.contains("--admin-port") == true)
        #expect(flag?.message.contains("'http'") == true)

        let environment = parseError([], ["LOOP_ADMIN_PORT": "70000"])
        #expect(environment?.code == .badValue)
        #expect(environment?.message.contains("LOOP_ADMIN_PORT") == true)

        let choice = parseError(["--log-format=xml"])
        #expect(choice?.message.contains("one of json, text") == true)

        let pairs = parseError(["--kafka-extra", "novalue"])
        #expect(pairs?.code == .badValue)

        let missing = parseError(["--brokers"])
        #expect(missing?.code == .badValue)
        #expect(missing?.message.contains("--brokers needs a value") == true)
    }

    @Test("a bad secret value is not echoed")
    func secretNotEchoed() {
        let secretNumber = Setting.integer("pin", default: 0, range: 0...9999, help: "A PIN.")
        let secret = Setting<Int>("code", default: 0, defaultText: "0", valueName: "<n>", help: "Secret code.",
                                  secret: true, expectation: "an integer") { Int($0) }
        let error = parseError(["--code", "hunter2"], extra: [secretNumber, secret])
        #expect(error?.code == .badValue)
        #expect(error?.message.contains("hunter2") == false)
    }

    @Test("a required setting is missing until given by flag or env var")
    func required() throws {
        let missing = parseError([], extra: [token])
        #expect(missing?.code == .missingSetting)
        #expect(missing?.message.contains("--token") == true)
        #expect(missing?.message.contains("LOOP_TOKEN") == true)
        #expect(try parse([], ["LOOP_TOKEN": "abc"], extra: [token])[token] == "abc")
    }

    @Test("redacted values hide secrets and leave out unset settings")
    func redaction() throws {
        let settings = try parse(["--kafka-sasl-password", "hunter2", "--kafka-sasl-username", "loop"])
        let values = Dictionary(uniqueKeysWithValues: settings.redactedValues.map { ($0.name, $0.value) })
        #expect(values["kafka-sasl-password"] == "<redacted>")
        #expect(values["kafka-sasl-username"] == "loop")
        #expect(values["brokers"] == "127.0.0.1:9092")
        #expect(values["kafka-tls-ca"] == nil)
        #expect(!settings.redactedValues.contains { $0.value.contains("hunter2") })
    }

    @Test("--help is recognised anywhere and lists every setting with env var and default")
    func help() throws {
        guard case .help = try Settings.parse(common.all, arguments: ["--brokers", "x", "--help"], environment: [:])
        else {
            Issue.record("expected --help")
            return
        }
        guard case .help = try Settings.parse(common.all, arguments: ["-h"], environment: [:]) else {
            Issue.record("expected -h")
            return
        }
        let declarations = common.all + [batchSize, token]
        let text = Settings.helpText(program: "ingest", summary: "validates events", declarations: declarations)
        #expect(text.hasPrefix("ingest — validates events"))
        for spec in declarations.map(\.spec) {
            #expect(text.contains(spec.flag), "\(spec.flag) missing from --help")
            #expect(text.contains("env " + spec.environmentVariable), "\(spec.environmentVariable) missing from --help")
            #expect(text.contains(spec.help.split(separator: "\n")[0]))
            if let defaultText = spec.defaultText {
                #expect(text.contains("default " + defaultText), "default of \(spec.name) missing from --help")
            }
        }
        #expect(text.contains("env LOOP_TOKEN, required, secret: never logged"))
    }

    @Test("the common settings declare the documented env vars")
    func declaredEnvironmentVariables() {
        let declared = Set(common.all.map(\.spec.environmentVariable))
        let documented: Set<String> = [
            "LOOP_CONFIG", "LOOP_BROKERS", "LOOP_ADMIN_PORT", "LOOP_ADMIN_HOST", "LOOP_STATE_DIR", "LOOP_LOG_FORMAT",
            "LOOP_LOG_LEVEL", "LOOP_KAFKA_SECURITY_PROTOCOL", "LOOP_KAFKA_SASL_MECHANISM", "LOOP_KAFKA_SASL_USERNAME",
            "LOOP_KAFKA_SASL_PASSWORD", "LOOP_KAFKA_TLS_CA", "LOOP_KAFKA_TLS_CERT", "LOOP_KAFKA_TLS_KEY",
            "LOOP_KAFKA_EXTRA", "LOOP_API_KEYS_FILE",
        ]
        #expect(documented.isSubset(of: declared))
        #expect(Set(common.all.map(\.spec.flag)).count == common.all.count)
    }

    @Test("declaring one setting twice is an error, not a crash")
    func duplicate() {
        let error = parseError([], extra: [Setting.string("brokers", default: "x", help: "again")])
        #expect(error?.code == .internal)
    }
}

/// A service declaring one setting of its own, for the declared-settings list.
private struct ExampleService: LoopService {
    static let name = "example"
    static let summary = "an example"
    static let defaultAdminPort = 8099
    static let settings: [any SettingDeclaration] = [
        Setting.optionalString("pii-hash-key", help: "Key for hashing PII fields.", secret: true),
    ]
    let parts: [any Service] = []
    init(environment: ServiceEnvironment) {}
}

@Suite("Declared settings")
struct DeclaredSettingsTests {
    @Test("a service's declared settings are the common ones plus its own, with its defaults")
    func declared() throws {
        let specs = ServiceRunner.declaredSettings(of: ExampleService.self)
        #expect(specs.first?.environmentVariable == "LOOP_CONFIG")
        let own = try #require(specs.last)
        #expect(own.environmentVariable == "LOOP_PII_HASH_KEY")
        #expect(own.flag == "--pii-hash-key")
        #expect(own.isSecret)
        #expect(specs.first { $0.name == "admin-port" }?.defaultText == "8099")
        #expect(specs.first { $0.name == "state-dir" }?.defaultText == "state/example")
    }
}
