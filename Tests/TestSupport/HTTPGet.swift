#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// A response read by ``HTTPGet``.
public struct HTTPReply {
    public var status: Int
    public var headers: [String: String]
    public var body: String
}

/// A tiny HTTP/1.1 GET over a raw socket to 127.0.0.1 (HummingbirdTesting and
/// FoundationNetworking are not used: the testing module is unavailable with traits off).
public enum HTTPGet {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
        public init(description: String) { self.description = description }
    }

    /// Fetches on a thread of its own, so the blocking socket never holds one of the few threads of
    /// Swift's cooperative pool, which the in-process server needs to answer.
    public static func fetch(port: Int, path: String, headers: [String: String] = [:]) async throws -> HTTPReply {
        try await withCheckedThrowingContinuation { continuation in
            Thread {
                continuation.resume(with: Result { try fetchBlocking(port: port, path: path, headers: headers) })
            }.start()
        }
    }

    /// Sends any method with a body (`Content-Length` set) on a thread of its own, like ``fetch(port:path:headers:)``;
    /// a chunked response body is de-chunked.
    public static func request(
        port: Int, method: String = "GET", path: String, headers: [String: String] = [:], body: String = ""
    ) async throws -> HTTPReply {
        try await withCheckedThrowingContinuation { continuation in
            Thread {
                continuation.resume(with: Result {
                    var reply = try fetchBlocking(port: port, path: path, headers: headers, method: method, body: body)
                    if reply.headers["transfer-encoding"]?.lowercased() == "chunked" { reply.body = dechunk(reply.body) }
                    return reply
                })
            }.start()
        }
    }

    /// The value of the Prometheus sample `series` (`name{labels}` exactly as exposed) in `text`.
    public static func sample(_ text: String, _ series: String) -> Double? {
        for line in text.split(separator: "\n") where line.hasPrefix(series + " ") {
            return Double(line.dropFirst(series.count + 1).trimmingCharacters(in: .whitespaces))
        }
        return nil
    }

    private static func fetchBlocking(
        port: Int, path: String, headers: [String: String], method: String = "GET", body: String? = nil
    ) throws -> HTTPReply {
        let socketDescriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard socketDescriptor >= 0 else { throw Failure(description: "socket() failed") }
        defer { close(socketDescriptor) }
        // Generous: on a loaded 2-core CI machine an in-process server can take seconds to answer.
        var timeout = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(socketDescriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(socketDescriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else { throw Failure(description: "cannot connect to 127.0.0.1:\(port)") }

        var request = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n"
        if let body { request += "Content-Length: \(body.utf8.count)\r\n" }
        for (name, value) in headers { request += "\(name): \(value)\r\n" }
        request += "\r\n" + (body ?? "")
        let bytes = Array(request.utf8)
        guard send(socketDescriptor, bytes, bytes.count, 0) == bytes.count else {
            throw Failure(description: "send failed")
        }

        var received = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = recv(socketDescriptor, &buffer, buffer.count, 0)
            if count <= 0 { break }
            received.append(contentsOf: buffer[0..<count])
        }
        let text = String(decoding: received, as: UTF8.self)
        guard let split = text.range(of: "\r\n\r\n") else { throw Failure(description: "no response: \(text)") }
        let headLines = text[..<split.lowerBound].split(separator: "\r\n")
        guard let statusLine = headLines.first, statusLine.split(separator: " ").count >= 2,
              let status = Int(statusLine.split(separator: " ")[1])
        else { throw Failure(description: "bad status line in \(text)") }
        var replyHeaders = [String: String]()
        for line in headLines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            replyHeaders[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return HTTPReply(status: status, headers: replyHeaders, body: String(text[split.upperBound...]))
    }

    private static func dechunk(_ text: String) -> String {
        var output: [UInt8] = []
        var rest = Array(text.utf8)[...]
        while let lineEnd = rest.firstIndex(of: UInt8(ascii: "\r")), lineEnd + 1 < rest.endIndex,
              let size = Int(String(decoding: rest[rest.startIndex..<lineEnd], as: UTF8.self), radix: 16), size > 0 {
            let start = lineEnd + 2
            let end = min(rest.endIndex, start + size)
            output += rest[start..<end]
            rest = rest[min(rest.endIndex, end + 2)...]
        }
        return String(decoding: output, as: UTF8.self)
    }
}
