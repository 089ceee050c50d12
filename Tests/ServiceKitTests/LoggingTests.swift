import Foundation
import Logging
import ServiceKit
import Testing

@Suite("Logging")
struct LoggingTests {
    @Test("JSON lines: one object per line with ts, level, label, message and dotted metadata")
    func jsonLine() throws {
        let lines = Recorder()
        var logger = Logger(label: "ingest") { JSONLogHandler(label: $0, level: .debug, sink: LogSink(write: lines.record)) }
        logger[metadataKey: "service.name"] = "ingest"
        logger[metadataKey: "kafka"] = ["topic": "handler-level"]
        logger.trace("not logged below the level")
        logger.info(
            "consumer \"started\"\nnext line",
            metadata: [
                "kafka": ["topic": "loop.events", "partition": "3"],
                "request.id": "r-1",
                "tags": ["a", "b"],
                "message": "clashes with the message key",
            ])

        #expect(lines.all.count == 1)
        let line = try #require(lines.all.first)
        #expect(!line.contains("\n"))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(object["level"] as? String == "info")
        #expect(object["label"] as? String == "ingest")
        #expect(object["message"] as? String == "consumer \"started\"\nnext line")
        #expect(object["service.name"] as? String == "ingest")
        #expect(object["kafka.topic"] as? String == "loop.events")
        #expect(object["kafka.partition"] as? String == "3")
        #expect(object["request.id"] as? String == "r-1")
        #expect(object["tags"] as? [String] == ["a", "b"])
        #expect(object["metadata.message"] as? String == "clashes with the message key")
        let timestamp = try #require(object["ts"] as? String)
        #expect(timestamp.wholeMatch(of: /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z/) != nil)
        #expect(line.hasPrefix("{\"ts\":"))
    }

    @Test("JSON lines escape control characters")
    func jsonEscaping() throws {
        let lines = Recorder()
        let logger = Logger(label: "t") { JSONLogHandler(label: $0, sink: LogSink(write: lines.record)) }
        logger.warning("tab\there \u{01} back\\slash")
        let line = try #require(lines.all.first)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(object["message"] as? String == "tab\there \u{01} back\\slash")
        #expect(object["level"] as? String == "warning")
    }

    @Test("text lines are readable and carry metadata")
    func textLine() throws {
        let lines = Recorder()
        let logger = Logger(label: "scorer") { TextLogHandler(label: $0, sink: LogSink(write: lines.record)) }
        logger.error("model swap failed", metadata: ["model.version": "7", "reason": "bad artifact"])
        let line = try #require(lines.all.first)
        #expect(line.contains(" error scorer: model swap failed"))
        #expect(line.contains("model.version=7"))
        #expect(line.contains("reason=\"bad artifact\""))
    }
}
