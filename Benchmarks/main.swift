import Foundation
import ServiceKit

// loop-bench: the project's benchmark command. Each benchmark lives in its own file and registers
// here; `./loop bench` builds in release and runs them.

/// The benchmarks by name, with a one-line usage each.
let benchmarks: [(name: String, usage: String, run: ([String]) async throws -> Void)] = [
    ("kafka", "kafka [--records 1000000] [--size 100] [--brokers host:port]", runKafkaBench),
    ("feature-store", "feature-store [--events 1000000] [--entities 100000] [--read-entities 1000000] [--rate 1000] [--seconds 10] [--state-cache 50000] [--write-lanes 0] [--connection-per-request] [--bare-endpoint] [--http-on-pool] [--brokers host:port]", runFeatureStoreBench),
    ("retrainer", "retrainer [--examples 100000] [--features 20]", runRetrainerBench),
    ("feedback", "feedback [--pairs 200000] [--batch 2000] [--features 16]", runFeedbackBench),
    ("ingest", "ingest [--events 300000] [--http-events 200000] [--connections 4] [--ceiling-events 200000] [--brokers host:port]", runIngestBench),
    ("scorer", "scorer [--requests 200000] [--entities 1000] [--rate 5000] [--seconds 5] [--fetch-wait-ms 5] [--lanes N] [--brokers host:port]", runScorerBench),
]

// As every service does at start (ServiceRunner.main), so the in-process services allocate alike.
Allocator.keepFreedMemory()
let arguments = Array(CommandLine.arguments.dropFirst())
guard let name = arguments.first, let benchmark = benchmarks.first(where: { $0.name == name }) else {
    print("usage: loop-bench <benchmark> [options]\n" + benchmarks.map { "  loop-bench \($0.usage)" }.joined(separator: "\n"))
    exit(arguments.isEmpty ? 0 : 2)
}
do {
    try await benchmark.run(Array(arguments.dropFirst()))
} catch {
    FileHandle.standardError.write(Data("loop-bench: \(error)\n".utf8))
    exit(1)
}
