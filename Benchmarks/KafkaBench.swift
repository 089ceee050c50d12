import Foundation
import Kafka
import Logging
import TestSupport

// loop-bench kafka: throughput of the Kafka client against kcat on the same librdkafka and broker.
//
//   loop-bench kafka [--records 1000000] [--size 100] [--brokers host:port]
//
// Without --brokers it starts its own Tansu ($TANSU_BIN). kcat comes from $KCAT_BIN (or PATH) and
// runs with LD_LIBRARY_PATH pointing at .local/librdkafka/lib so both use the same librdkafka.

struct BenchError: Error, CustomStringConvertible {
    var description: String
}

struct KafkaBenchOptions {
    var records = 1_000_000
    var size = 100
    var brokers: String?

    init(_ arguments: [String]) throws {
        var iterator = arguments.makeIterator()
        while let argument = iterator.next() {
            func value() throws -> String {
                guard let value = iterator.next() else { throw BenchError(description: "\(argument) needs a value") }
                return value
            }
            switch argument {
            case "--records": records = Int(try value()) ?? records
            case "--size": size = Int(try value()) ?? size
            case "--brokers": brokers = try value()
            default: throw BenchError(description: "unknown option \(argument)")
            }
        }
        guard records > 0, size > 0 else { throw BenchError(description: "--records and --size must be positive") }
    }
}

/// One measured run: records moved and the seconds it took.
struct Measurement {
    var records: Int
    var seconds: Double
    var rate: Double { Double(records) / seconds }
}

func measure(_ records: Int, _ body: () async throws -> Void) async rethrows -> Measurement {
    let start = ContinuousClock.now
    try await body()
    let elapsed = ContinuousClock.now - start
    let (seconds, attoseconds) = elapsed.components
    return Measurement(records: records, seconds: Double(seconds) + Double(attoseconds) / 1e18)
}

// MARK: - kcat

struct Kcat {
    let path: String
    let libraryPath: String

    static func locate() throws -> Kcat {
        let environment = ProcessInfo.processInfo.environment
        let candidates = [environment["KCAT_BIN"], "/usr/bin/kcat", "/usr/local/bin/kcat"].compactMap { $0 }.filter { !$0.isEmpty }
        guard let path = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw BenchError(description: "kcat not found: install it (apt-get install kcat) or set KCAT_BIN")
        }
        let library = environment["LOOP_LIBRDKAFKA_DIR"] ?? FileManager.default.currentDirectoryPath + "/.local/librdkafka/lib"
        return Kcat(path: path, libraryPath: library)
    }

    /// Runs a shell pipeline with kcat's library path set; returns standard output.
    func shell(_ command: String) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", command]
        var environment = ProcessInfo.processInfo.environment
        environment["LD_LIBRARY_PATH"] = libraryPath
        environment["KCAT"] = path
        process.environment = environment
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw BenchError(description: "`\(command)` exited with \(process.terminationStatus)")
        }
        return String(decoding: data, as: UTF8.self)
    }

    /// The librdkafka version kcat reports (`kcat -V`).
    func librdkafkaVersion() throws -> String {
        let text = try shell("\"$KCAT\" -V")
        guard let range = text.range(of: "librdkafka ") else { return "unknown" }
        return String(text[range.upperBound...].prefix { !$0.isWhitespace })
    }
}

// MARK: - Runs

/// `loop-bench kafka`: produce, consume and pass-through of our client next to kcat's.
func runKafkaBench(_ arguments: [String]) async throws {
    let options = try KafkaBenchOptions(arguments)
    var logger = Logger(label: "loop-bench")
    logger.logLevel = .warning
    let kcat = try Kcat.locate()
    let kcatLibrdkafka = try kcat.librdkafkaVersion()
    let ours = Librdkafka.runtimeVersion.1
    print("librdkafka: ours \(ours), kcat \(kcatLibrdkafka)")
    guard kcatLibrdkafka == ours else {
        throw BenchError(description: "kcat uses librdkafka \(kcatLibrdkafka), we use \(ours): the comparison would be unfair")
    }

    var broker: Broker?
    let bootstrap: String
    if let brokers = options.brokers {
        bootstrap = brokers
    } else {
        broker = try await Broker.start()
        bootstrap = broker!.bootstrap
        print("started Tansu at \(bootstrap)")
    }
    defer { broker?.stop() }

    let config = KafkaConfig(brokers: bootstrap, clientID: "loop-bench")
    let admin = try KafkaAdmin(config: config, logger: logger)
    let partitions: Int32 = 4
    let names = ["ours-in", "ours-out", "kcat-in", "kcat-out"].map { Broker.uniqueTopic("bench-\($0)") }
    try await admin.createTopics(names.map { TopicSpec(name: $0, partitions: partitions) })
    let (oursIn, oursOut, kcatIn, kcatOut) = (names[0], names[1], names[2], names[3])
    let count = options.records
    let payload = (0..<options.size).map { UInt8(ascii: "a") + UInt8($0 % 26) }

    // Same producer semantics on both sides: idempotence (our default) for kcat too.
    let kcatProducerFlags = "-X enable.idempotence=true"

    // Ours.
    let producer = try KafkaProducer(config: config, logger: logger)
    let records = (0..<count).map { _ in OutgoingRecord(topic: oursIn, value: payload) }
    let oursProduce = try await measure(count) { _ = try await producer.send(records) }
    print("ours produce: \(Int(oursProduce.rate)) msg/s")

    let topicPartitions = { (topic: String) in (0..<partitions).map { TopicPartition(topic: topic, partition: $0) } }
    let oursConsume = try await measure(count) {
        let reader = try PartitionReader(config: config, partitions: topicPartitions(oursIn), logger: logger)
        var seen = 0
        for try await event in reader.events(maxRecords: 10_000, maxWait: .milliseconds(50)) {
            if case .records(let batch) = event { seen += batch.count }
            if seen >= count { break }
        }
        await reader.close()
    }
    print("ours consume: \(Int(oursConsume.rate)) msg/s")

    let oursPass = try await measure(count) {
        let reader = try PartitionReader(config: config, partitions: topicPartitions(oursIn), logger: logger)
        var seen = 0
        try await withThrowingTaskGroup(of: Void.self) { group in
            var inFlight = 0
            for try await event in reader.events(maxRecords: 10_000, maxWait: .milliseconds(50)) {
                guard case .records(let batch) = event else { continue }
                seen += batch.count
                let outgoing = batch.map { OutgoingRecord(topic: oursOut, key: $0.key, value: $0.value, headers: $0.headers) }
                group.addTask { _ = try await producer.send(outgoing) }
                inFlight += 1
                if inFlight >= 16 {
                    try await group.next()
                    inFlight -= 1
                }
                if seen >= count { break }
            }
            try await group.waitForAll()
        }
        await reader.close()
    }
    print("ours pass-through: \(Int(oursPass.rate)) msg/s")

    // kcat.
    let file = NSTemporaryDirectory() + "loop-bench-\(getpid()).txt"
    defer { try? FileManager.default.removeItem(atPath: file) }
    var line = payload
    line.append(UInt8(ascii: "\n"))
    var contents = [UInt8]()
    contents.reserveCapacity(count * line.count)
    for _ in 0..<count { contents.append(contentsOf: line) }
    _ = FileManager.default.createFile(atPath: file, contents: Data(contents))

    let kcatProduce = try await measure(count) {
        _ = try kcat.shell("\"$KCAT\" -P -b \(bootstrap) -t \(kcatIn) \(kcatProducerFlags) -l \(file)")
    }
    print("kcat produce: \(Int(kcatProduce.rate)) msg/s")
    var consumed = 0
    let kcatConsume = try await measure(count) {
        consumed = Int(try kcat.shell("\"$KCAT\" -C -b \(bootstrap) -t \(kcatIn) -e -o beginning -q | wc -l")
            .trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
    }
    guard consumed == count else { throw BenchError(description: "kcat consumed \(consumed) of \(count) records") }
    print("kcat consume: \(Int(kcatConsume.rate)) msg/s")
    let kcatPass = try await measure(count) {
        _ = try kcat.shell(
            "\"$KCAT\" -C -b \(bootstrap) -t \(kcatIn) -e -o beginning -q | \"$KCAT\" -P -b \(bootstrap) -t \(kcatOut) \(kcatProducerFlags)")
    }
    print("kcat pass-through: \(Int(kcatPass.rate)) msg/s")

    for (topic, expected) in [(oursOut, count), (kcatOut, count)] {
        var total: Int64 = 0
        for partition in 0..<partitions { total += try await admin.watermarks(topic: topic, partition: partition).high }
        guard total == Int64(expected) else { throw BenchError(description: "\(topic) holds \(total) records, expected \(expected)") }
    }

    print("")
    print("Kafka throughput, \(count) records of \(options.size) bytes, \(partitions) partitions, broker \(bootstrap)")
    print(pad("", 14) + pad("ours msg/s", 14) + pad("kcat msg/s", 14) + pad("ours/kcat", 10))
    for (name, mine, theirs) in [("produce", oursProduce, kcatProduce), ("consume", oursConsume, kcatConsume),
                                 ("pass-through", oursPass, kcatPass)] {
        print(pad(name, 14) + pad(String(Int(mine.rate)), 14) + pad(String(Int(theirs.rate)), 14)
            + pad(String(format: "%.2fx", mine.rate / theirs.rate), 10))
    }
}

func pad(_ text: String, _ width: Int) -> String {
    text.count >= width ? text + " " : text + String(repeating: " ", count: width - text.count)
}
