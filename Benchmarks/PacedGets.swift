#if canImport(Glibc)
import Glibc
#endif

// An open-loop HTTP/1.1 load generator for GET latency: requests are due at fixed intervals and go
// out on the first free connection whatever earlier responses did, all from one thread that waits
// in select(2), so the client adds a single thread's wake-ups to the machine the server shares.

/// The timing of one successful GET, in seconds.
struct GetTiming {
    /// Due time → response read: the latency a caller with this schedule saw.
    var fromDue: Double
    /// Request sent → response read.
    var fromSent: Double
    /// Request sent → the response's last bytes arrived in the client's socket (the kernel's
    /// receive timestamp): sent → read without the client's own delay in waking up to read.
    var toArrival: Double
    /// How long after its due time the request waited for a connection to come free, because every
    /// connection still waited for an earlier response: delay the server caused.
    var connectionWait: Double

    /// Due → sent beyond the connection wait: the client's own lateness (its timer and thread
    /// waking late on a busy machine), which no server caused.
    var clientLateness: Double { max(0, fromDue - fromSent - connectionWait) }

    /// The latency without the client's own delays: sent → response arrived, plus the wait for a
    /// connection. Every delay an earlier slow response caused stays in (no coordinated omission).
    var serverLatency: Double { toArrival + connectionWait }
}

/// Sends `total` GETs of `prefix` + `entity-<n>` (`n` random below `entities`) to 127.0.0.1:`port`
/// at `rate` per second over `connections` connections: persistent ones with `keepAlive`, else a
/// new connection per request (`Connection: close`). Returns the timing of every request answered
/// 200; the others count as failed.
func pacedGets(port: Int, prefix: String, total: Int, rate: Int, entities: Int, keepAlive: Bool, connections: Int = 8) -> [GetTiming] {
    var pool = (0..<connections).map { _ in PacedConnection(port: port, keepAlive: keepAlive) }
    var timings: [GetTiming] = []
    timings.reserveCapacity(total)
    let interval = 1 / Double(rate)
    let begin = monotonicSeconds() + 0.05
    var next = 0
    var finished = 0
    while finished < total {
        var now = monotonicSeconds()
        while next < total, begin + Double(next) * interval <= now,
              let free = pool.indices.filter({ !pool[$0].isBusy }).min(by: { pool[$0].freeSince < pool[$1].freeSince }) {
            let due = begin + Double(next) * interval
            if !pool[free].send(path: prefix + "entity-\(Int.random(in: 0..<entities))", due: due, now: now) { finished += 1 }
            next += 1
            now = monotonicSeconds()
        }
        var readable = fd_set()
        var highest: Int32 = -1
        for connection in pool where connection.isBusy {
            readable.insert(connection.descriptor)
            highest = max(highest, connection.descriptor)
        }
        let hasFree = pool.contains { !$0.isBusy }
        let wait = next < total && hasFree ? max(0, begin + Double(next) * interval - now) : 0.1
        var timeout = timeval(tv_sec: Int(wait), tv_usec: Int((wait - wait.rounded(.down)) * 1e6))
        guard select(highest + 1, &readable, nil, nil, &timeout) > 0 else { continue }
        for index in pool.indices where pool[index].isBusy && readable.contains(pool[index].descriptor) {
            switch pool[index].receive() {
            case .waiting: break
            case .failed: finished += 1
            case .answered(let timing):
                finished += 1
                if let timing { timings.append(timing) }
            }
        }
    }
    return timings
}

/// `SO_TIMESTAMPNS` (its 64-bit `time_t` form), which Glibc's Swift module does not export: the
/// kernel stamps each received packet with its arrival time on CLOCK_REALTIME.
private let receiveTimestampOption: Int32 = 35

/// CLOCK_REALTIME in seconds (the clock of the kernel's receive timestamps).
private func wallSeconds() -> Double {
    var time = timeval()
    gettimeofday(&time, nil)
    return Double(time.tv_sec) + Double(time.tv_usec) / 1e6
}

extension fd_set {
    /// Adds `descriptor` (below `FD_SETSIZE`) to the set, as `FD_SET` does.
    mutating func insert(_ descriptor: Int32) {
        withUnsafeMutableBytes(of: &self) { $0.bindMemory(to: UInt.self)[Int(descriptor) / UInt.bitWidth] |= 1 << (UInt(descriptor) % UInt(UInt.bitWidth)) }
    }

    /// Whether `descriptor` is in the set, as `FD_ISSET` says.
    func contains(_ descriptor: Int32) -> Bool {
        withUnsafeBytes(of: self) { $0.bindMemory(to: UInt.self)[Int(descriptor) / UInt.bitWidth] & (1 << (UInt(descriptor) % UInt(UInt.bitWidth))) != 0 }
    }
}

/// One client connection and the request it waits on.
private struct PacedConnection {
    enum Received {
        case waiting
        /// The whole response: its timing if the status was 200.
        case answered(GetTiming?)
        case failed
    }

    let port: Int
    let keepAlive: Bool
    private(set) var descriptor: Int32 = -1
    /// When the last response on this connection was read (the client's start before any).
    private(set) var freeSince = 0.0
    private var request: (due: Double, sent: Double, sentWall: Double, wait: Double)?
    private var received: [UInt8] = []
    private var buffer = [UInt8](repeating: 0, count: 16_384)
    /// Room for the receive timestamp's control message.
    private var control = [UInt8](repeating: 0, count: 64)
    /// When the bytes of the last read arrived, by the kernel's clock (CLOCK_REALTIME seconds).
    private var arrived = 0.0

    init(port: Int, keepAlive: Bool) {
        self.port = port
        self.keepAlive = keepAlive
    }

    var isBusy: Bool { request != nil }

    /// Sends `GET path` (connecting first if needed); false if that failed.
    mutating func send(path: String, due: Double, now: Double) -> Bool {
        // Before connecting and sending: the server may run (and answer) before send(2) returns.
        let sentWall = wallSeconds()
        let wait = max(0, freeSince - due)
        if descriptor < 0 {
            descriptor = connectedSocket(port: port)
            var on: Int32 = 1
            setsockopt(descriptor, SOL_SOCKET, receiveTimestampOption, &on, socklen_t(MemoryLayout<Int32>.size))
        }
        let bytes = Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\n\(keepAlive ? "" : "Connection: close\r\n")\r\n".utf8)
        guard descriptor >= 0, Glibc.send(descriptor, bytes, bytes.count, Int32(MSG_NOSIGNAL)) == bytes.count else {
            reset()
            return false
        }
        request = (due, now, sentWall, wait)
        received.removeAll(keepingCapacity: true)
        return true
    }

    /// Reads what arrived; the response once it is complete.
    mutating func receive() -> Received {
        guard let request else { return .waiting }
        let count = readWithTimestamp()
        if count < 0, errno == EAGAIN || errno == EINTR { return .waiting }
        guard count > 0 else {
            reset()
            return .failed
        }
        received.append(contentsOf: buffer[0..<count])
        guard let (status, length) = Self.head(received) else { return .waiting }
        guard received.count >= length else { return .waiting }
        let done = monotonicSeconds()
        freeSince = done
        self.request = nil
        if !keepAlive {
            close(descriptor)
            descriptor = -1
        }
        guard status == 200 else { return .answered(nil) }
        return .answered(GetTiming(
            fromDue: done - request.due, fromSent: done - request.sent, toArrival: arrived - request.sentWall, connectionWait: request.wait))
    }

    /// `recvmsg` into `buffer`, noting in `arrived` when the bytes reached the socket (the time of
    /// the read itself if the kernel gave no timestamp).
    private mutating func readWithTimestamp() -> Int {
        let descriptor = descriptor
        var timestamp: Double?
        let count = buffer.withUnsafeMutableBytes { bytes in
            control.withUnsafeMutableBytes { control in
                var vector = iovec(iov_base: bytes.baseAddress, iov_len: bytes.count)
                return withUnsafeMutablePointer(to: &vector) { vector in
                    var message = msghdr()
                    message.msg_iov = vector
                    message.msg_iovlen = 1
                    message.msg_control = control.baseAddress
                    message.msg_controllen = control.count
                    let count = recvmsg(descriptor, &message, Int32(MSG_DONTWAIT))
                    // One control message: length (8 bytes), level, type (4 each), then a timespec.
                    if count > 0, message.msg_controllen >= 32,
                       control.load(fromByteOffset: 8, as: Int32.self) == SOL_SOCKET,
                       control.load(fromByteOffset: 12, as: Int32.self) == receiveTimestampOption {
                        timestamp = Double(control.load(fromByteOffset: 16, as: Int64.self))
                            + Double(control.load(fromByteOffset: 24, as: Int64.self)) / 1e9
                    }
                    return count
                }
            }
        }
        if count > 0 { arrived = timestamp ?? wallSeconds() }
        return count
    }

    private mutating func reset() {
        if descriptor >= 0 { close(descriptor) }
        descriptor = -1
        request = nil
        freeSince = monotonicSeconds()
    }

    /// The status code and the whole response's length in bytes, once the head is complete.
    private static func head(_ bytes: [UInt8]) -> (status: Int, length: Int)? {
        guard bytes.count >= 4 else { return nil }
        guard let end = (3..<bytes.count).first(where: {
            bytes[$0] == 10 && bytes[$0 - 1] == 13 && bytes[$0 - 2] == 10 && bytes[$0 - 3] == 13
        }) else { return nil }
        let head = String(decoding: bytes[0...end], as: UTF8.self).lowercased()
        let parts = head.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, let status = Int(parts[1]),
              let line = head.split(separator: "\r\n").first(where: { $0.hasPrefix("content-length:") }),
              let length = Int(String(line.dropFirst("content-length:".count).filter { $0 != " " }))
        else { return nil }
        return (status, end + 1 + length)
    }
}

/// A blocking TCP socket connected to 127.0.0.1:`port` with Nagle's delay off, or -1.
func connectedSocket(port: Int) -> Int32 {
    let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard descriptor >= 0 else { return -1 }
    var noDelay: Int32 = 1
    setsockopt(descriptor, Int32(IPPROTO_TCP), TCP_NODELAY, &noDelay, socklen_t(MemoryLayout<Int32>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else {
        close(descriptor)
        return -1
    }
    return descriptor
}
