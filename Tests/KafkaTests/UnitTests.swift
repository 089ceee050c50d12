import Kafka
import Testing

@Suite("Kafka unit")
struct UnitTests {
    @Test("runtime librdkafka is at least 2.2 and matches the headers")
    func versionCheck() throws {
        try Librdkafka.checkVersion()
        #expect(Librdkafka.runtimeVersion.0 >= 0x0202_0000)
        #expect(Librdkafka.runtimeVersion.0 >> 16 == Librdkafka.headerVersion >> 16)
        #expect(Librdkafka.runtimeVersion.1.hasPrefix("2."))
    }

    @Test("an empty broker list is rejected")
    func emptyBrokers() {
        #expect(throws: KafkaError.self) {
            _ = try KafkaProducer(config: KafkaConfig(brokers: "  "), logger: testLogger)
        }
    }

    @Test("an unknown security protocol is rejected with a typed error")
    func badSecurityProtocol() {
        var config = KafkaConfig(brokers: "127.0.0.1:9092")
        config.securityProtocol = "carrier-pigeon"
        do {
            _ = try KafkaProducer(config: config, logger: testLogger)
            Issue.record("expected an error")
        } catch {
            #expect(error.code == .invalidConfiguration)
            #expect(error.reason.contains("carrier-pigeon"))
        }
    }

    @Test("extra properties pass through and librdkafka rejects unknown ones")
    func extraPassThrough() throws {
        var config = KafkaConfig(brokers: "127.0.0.1:9092")
        config.extra["socket.keepalive.enable"] = "true"
        _ = try KafkaAdmin(config: config, logger: testLogger)
        config.extra["no.such.property"] = "1"
        do {
            _ = try KafkaAdmin(config: config, logger: testLogger)
            Issue.record("expected an error")
        } catch {
            #expect(error.code == .invalidConfiguration)
            #expect(error.reason.contains("no.such.property"))
        }
    }

    @Test("extra may not contradict a typed setting")
    func extraConflict() {
        var config = KafkaConfig(brokers: "127.0.0.1:9092", clientID: "a")
        config.extra["client.id"] = "b"
        #expect(throws: KafkaError.self) { _ = try KafkaAdmin(config: config, logger: testLogger) }
    }

    @Test("SASL PLAIN without credentials is rejected")
    func saslNeedsCredentials() {
        var config = KafkaConfig(brokers: "127.0.0.1:9092")
        config.securityProtocol = "sasl_ssl"
        config.saslMechanism = "PLAIN"
        #expect(throws: KafkaError.self) { _ = try KafkaAdmin(config: config, logger: testLogger) }
    }
}

@Suite("Kafka on the in-process mock cluster")
struct MockClusterTests {
    func mockConfig() -> KafkaConfig {
        var config = KafkaConfig(brokers: "mock")
        config.extra["test.mock.num.brokers"] = "1"
        return config
    }

    @Test("a send larger than the local queue waits for space and delivers everything")
    func backPressureWaits() async throws {
        var settings = ProducerSettings()
        settings.maxQueuedMessages = 50
        let producer = try KafkaProducer(config: mockConfig(), producer: settings, logger: testLogger)
        let records = (0..<5000).map { OutgoingRecord(topic: "mock-bp", key: bytes("k\($0)"), value: bytes("v\($0)")) }
        let reports = try await producer.send(records)
        #expect(reports.count == 5000)
        #expect(Set(reports.map { "\($0.partition):\($0.offset)" }).count == 5000)
    }

    @Test("with whenQueueFull = .fail, records beyond the queue fail with queueFull")
    func backPressureFails() async throws {
        var settings = ProducerSettings()
        settings.maxQueuedMessages = 5
        settings.whenQueueFull = .fail
        settings.deliveryTimeout = .seconds(2)
        let producer = try KafkaProducer(
            config: KafkaConfig(brokers: "127.0.0.1:1"), producer: settings, logger: testLogger)
        let records = (0..<10).map { OutgoingRecord(topic: "nowhere", value: bytes("v\($0)")) }
        do {
            _ = try await producer.send(records)
            Issue.record("expected deliveryFailed")
        } catch {
            #expect(error.code == .deliveryFailed)
            #expect(error.failures.count == 10)
            let queueFull = error.failures.filter { $0.error.code == .queueFull }.map(\.index)
            #expect(queueFull == Array(5..<10))
            #expect(error.failures.filter { $0.error.code == .timedOut }.count == 5)
        }
    }
}
