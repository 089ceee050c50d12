import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A local Tansu broker for tests and benchmarks: one per process, on a free port, in-memory
/// storage, stopped when the process exits.
public final class Broker: Sendable {
    /// `host:port` to use as `bootstrap.servers`.
    public let bootstrap: String
    /// Process id of the broker.
    public let pid: Int32
    /// Where the broker writes its output.
    public let logFile: String

    /// Why the broker could not be started.
    public struct StartError: Error, CustomStringConvertible {
        /// What went wrong, with the fix.
        public var description: String
    }

    private static let shared = Mutex<Task<Broker, any Error>?>(nil)

    /// The process's broker, started on first use.
    public static func shared() async throws -> Broker {
        let task = Self.shared.withLock { task in
            if let task { return task }
            let started = Task { try await Broker.start() }
            task = started
            return started
        }
        return try await task.value
    }

    private init(bootstrap: String, pid: Int32, logFile: String) {
        self.bootstrap = bootstrap
        self.pid = pid
        self.logFile = logFile
    }

    /// Starts a new broker (normally use ``shared()``); it is killed when the process exits.
    public static func start(timeout: Duration = .seconds(20)) async throws -> Broker {
        guard let binary = ProcessInfo.processInfo.environment["TANSU_BIN"], !binary.isEmpty else {
            throw StartError(description: "TANSU_BIN is not set: run ./loop setup, then export TANSU_BIN=$PWD/.local/tansu/bin/tansu")
        }
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw StartError(description: "TANSU_BIN=\(binary) is not an executable file: run ./loop setup")
        }
        let port = try freePort()
        let url = "tcp://127.0.0.1:\(port)"
        let logFile = NSTemporaryDirectory() + "tansu-\(getpid())-\(port).log"
        FileManager.default.createFile(atPath: logFile, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = [
            "broker", "--listener-url", url, "--advertised-listener-url", url, "--storage-engine", "memory://tansu/",
        ]
        let log = FileHandle(forWritingAtPath: logFile)
        process.standardOutput = log
        process.standardError = log
        try process.run()
        let pid = process.processIdentifier
        registerForExit(pid)

        let deadline = ContinuousClock.now + timeout
        while !canConnect(port: port) {
            guard process.isRunning else {
                let output = (try? String(contentsOfFile: logFile, encoding: .utf8)) ?? ""
                throw StartError(description: "Tansu exited with status \(process.terminationStatus): \(output.suffix(2000))")
            }
            guard ContinuousClock.now < deadline else {
                kill(pid, SIGKILL)
                throw StartError(description: "Tansu did not accept connections on port \(port) within \(timeout); log: \(logFile)")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        return Broker(bootstrap: "127.0.0.1:\(port)", pid: pid, logFile: logFile)
    }

    /// Stops this broker now (the shared one is stopped at exit anyway).
    public func stop() {
        kill(pid, SIGTERM)
    }

    // MARK: - Names

    private static let counter = Atomic<Int>(0)

    /// A topic (or group) name no other test in any run uses: `prefix-<pid>-<n>-<random>`.
    public static func uniqueTopic(_ prefix: String) -> String {
        let n = counter.add(1, ordering: .relaxed).newValue
        return "\(prefix)-\(getpid())-\(n)-\(UInt32.random(in: 0...UInt32.max))"
    }

    /// Same as the static ``uniqueTopic(_:)``.
    public func uniqueTopic(_ prefix: String) -> String { Self.uniqueTopic(prefix) }

    // MARK: - Process plumbing

    private static let children = Mutex<[Int32]>([])

    private static func registerForExit(_ pid: Int32) {
        let first = children.withLock { children in
            children.append(pid)
            return children.count == 1
        }
        if first {
            atexit {
                for pid in Broker.children.withLock({ $0 }) { kill(pid, SIGKILL) }
            }
        }
    }

    /// A port the kernel reports free (bound to port 0, then released).
    public static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw StartError(description: "socket() failed: errno \(errno)") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                bind(fd, socketAddress, length) == 0 && getsockname(fd, socketAddress, &length) == 0
            }
        }
        guard bound else { throw StartError(description: "cannot bind a free port: errno \(errno)") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    private static func canConnect(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }
}
