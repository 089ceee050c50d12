#if canImport(Glibc)
import Glibc
#endif
import Contracts
import Foundation
import Ingest
import Kafka
import ServiceKit
import Testing

/// A response read by ``HTTPPost``.
struct HTTPReply {
    var status: Int
    var headers: [String: String]
    var body: String
    var json: JSONValue? { try? JSONValue.parse(body) }
}

/// A tiny HTTP/1.1 POST over a raw socket to 127.0.0.1, on a thread of its own.
enum HTTPPost {
    static func send(port: Int, headers: [String: String], body: [UInt8]) async throws -> HTTPReply {
        try await withCheckedThrowingContinuation { continuation in
            Thread { continuation.resume(with: Result { try sendBlocking(port: port, headers: headers, body: body) }) }.start()
        }
    }

    private static func sendBlocking(port: Int, headers: [String: String], body: [UInt8]) throws -> HTTPReply {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket() failed") }
        defer { close(fd) }
        // Generous: ingest answers once the broker acknowledged, which takes seconds on a loaded CI machine.
        var timeout = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw TestFailure("cannot connect to 127.0.0.1:\(port)") }
        var head = "POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: \(body.count)\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        let request = Array((head + "\r\n").utf8) + body
        var sent = 0
        while sent < request.count {
            let count = request[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if count <= 0 { break }  // the server may answer 413 and close before reading everything
            sent += count
        }
        var received = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 8192)
        while true {
            let count = recv(fd, &buffer, buffer.count, 0)
            if count <= 0 { break }
            received.append(contentsOf: buffer[0..<count])
        }
        let text = String(decoding: received, as: UTF8.self)
        guard let split = text.range(of: "\r\n\r\n") else { throw TestFailure("no response: \(text)") }
        let lines = text[..<split.lowerBound].split(separator: "\r\n")
        guard let status = lines.first.flatMap({ Int($0.split(separator: " ")[1]) }) else { throw TestFailure("bad status line: \(text)") }
        var replyHeaders: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            replyHeaders[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return HTTPReply(status: status, headers: replyHeaders, body: String(text[split.upperBound...]))
    }
}

@Suite("ingest: POST /v1/events against the real broker")
struct HTTPTests {
    @Test("structured, binary and batch mode; per-event results; 400 for a bad body; 401/403 audited; 413 over the limits")
    func everyMode() async throws {
        let deployment = try await Deployment()
        let producerKey = APIKeys.generate(name: "writer", roles: [.producer])
        let viewerKey = APIKeys.generate(name: "looker", roles: [.viewer])
        let keys = try APIKeys(parsing: producerKey.hashLine + "\n" + viewerKey.hashLine, origin: "test")
        let logs = LogCapture()
        let service = try await RunningService.start(
            try deployment.environment(logger: logs.logger(), arguments: ["--http-max-batch", "3", "--http-max-body", "4096"], apiKeys: keys),
            http: true)
        let port = try await service.port
        let auth = ["Authorization": "Bearer \(producerKey.key)"]
        let pii = "bob.private@example.com"

        // Structured mode, then the same event again.
        let event = CloudEvent(
            id: "h-1", source: "/http", type: "loop.observation.v1", subject: "NSW", time: try Timestamp(rfc3339: "2024-05-01T10:00:00Z"),
            data: .json(.object(observationData(operator: pii))))
        let structured = auth.merging(["Content-Type": "application/cloudevents+json"]) { $1 }
        let accepted = try await HTTPPost.send(port: port, headers: structured, body: JSONFormat.encode(event))
        #expect(accepted.status == 202)
        #expect(accepted.json?["status"] == "accepted")
        let again = try await HTTPPost.send(port: port, headers: structured, body: JSONFormat.encode(event))
        #expect(again.status == 202)
        #expect(again.json?["status"] == "duplicate")

        // Binary mode.
        var binaryEvent = event
        binaryEvent.id = "h-2"
        let message = HTTPBinding.encode(binaryEvent, mode: .binary)
        var binaryHeaders = auth
        for header in message.headers { binaryHeaders[header.name] = header.value }
        let binary = try await HTTPPost.send(port: port, headers: binaryHeaders, body: message.body)
        #expect(binary.status == 202)
        #expect(binary.json?["status"] == "accepted")

        // A single event that fails validation: 400 with its reason, and a dead letter.
        var invalid = event
        invalid.id = "h-bad"
        invalid.data = .json(.object(observationData(operator: pii).merging(["dow": 12])))
        let rejected = try await HTTPPost.send(port: port, headers: structured, body: JSONFormat.encode(invalid))
        #expect(rejected.status == 400)
        #expect(rejected.json?["reason"] == "out_of_range")
        #expect(rejected.json?["field"] == "data.dow")

        // Batch: accepted, duplicate within the batch, rejected.
        var third = event
        third.id = "h-3"
        var unknown = event
        unknown.id = "h-4"
        unknown.data = .json(.object(observationData().merging(["colour": "red"])))
        let batchHeaders = auth.merging(["Content-Type": "application/cloudevents-batch+json"]) { $1 }
        let batch = try await HTTPPost.send(port: port, headers: batchHeaders, body: JSONFormat.encodeBatch([third, third, unknown]))
        #expect(batch.status == 202)
        let results = batch.json?["results"]?.arrayValue ?? []
        #expect(results.map { $0["status"] } == ["accepted", "duplicate", "rejected"])
        #expect(results.map { $0["id"] } == ["h-3", "h-3", "h-4"])
        #expect(results.last?["reason"] == "unknown_field")
        #expect(results.last?["field"] == "data.colour")
        #expect(batch.json?["accepted"] == 1)

        // Not what the content type says: 400, dead-lettered with the peer.
        let malformed = try await HTTPPost.send(port: port, headers: batchHeaders, body: Array("{\"not\": \"an array\"}".utf8))
        #expect(malformed.status == 400)
        #expect(malformed.json?["reason"] == "malformed")
        let garbage = try await HTTPPost.send(port: port, headers: structured, body: Array("<xml/>".utf8))
        #expect(garbage.status == 400)

        // Limits: batch count and body size.
        let tooMany = try await HTTPPost.send(port: port, headers: batchHeaders, body: JSONFormat.encodeBatch([third, third, third, third]))
        #expect(tooMany.status == 413)
        let tooBig = try await HTTPPost.send(port: port, headers: structured, body: [UInt8](repeating: UInt8(ascii: " "), count: 8192))
        #expect(tooBig.status == 413)

        // Auth: no key, unknown key, a key without the producer role.
        let none = try await HTTPPost.send(port: port, headers: ["Content-Type": "application/cloudevents+json"], body: JSONFormat.encode(event))
        #expect(none.status == 401)
        let wrong = try await HTTPPost.send(port: port, headers: structured.merging(["Authorization": "Bearer loop_nope"]) { $1 }, body: [])
        #expect(wrong.status == 401)
        let viewer = try await HTTPPost.send(
            port: port, headers: structured.merging(["Authorization": "Bearer \(viewerKey.key)"]) { $1 }, body: JSONFormat.encode(event))
        #expect(viewer.status == 403)

        let events = try await deployment.waitForRecords(deployment.names.events, count: 3)
        let letters = try await deployment.waitForRecords(deployment.names.deadLetters, count: 4)
        let audit = try await deployment.waitForRecords(deployment.names.audit, count: 3)
        try await service.stop()

        #expect(Set(events.compactMap { $0.text("ce_id") }) == ["h-1", "h-2", "h-3"])
        #expect(events.count == 3)
        let deadLetters = try letters.map { try DeadLetter(bytes: $0.value ?? []) }
        #expect(deadLetters.map(\.reason).sorted() == ["malformed", "malformed", "out_of_range", "unknown_field"])
        #expect(deadLetters.allSatisfy { $0.origin == "http" && $0.peer?.hasPrefix("127.0.0.1:") == true })
        let entries = try audit.map { try AuditEntry(bytes: $0.value ?? []) }
        #expect(entries.count == 3)
        #expect(entries.allSatisfy { $0.action == "auth.failed" && $0.service == "ingest" })
        #expect(Set(entries.compactMap(\.reason)) == ["missing_key", "unknown_key", "missing_role"])
        for record in events + letters { #expect(!record.allText.contains(pii)) }
        #expect(!logs.text.contains(pii))
        #expect(!logs.text.contains(producerKey.key))
    }
}
