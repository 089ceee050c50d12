import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A built executable of this package (a service, `loopctl`) run as a child process of a test:
/// started with its own arguments and environment, its standard output and error captured in one log
/// file, waited for on its admin server's `/readyz`, stopped with SIGTERM (then SIGKILL), and killed
/// when the test process exits in any case. Failures carry the tail of the log.
public final class ChildProcess: @unchecked Sendable {
    // `Process` is not Sendable; it is only read (`isRunning`, termination facts) and signalled
    // through its pid after `run()`, which Foundation allows from any thread.

    /// Why a child process could not be found, started, made ready or stopped.
    public struct Failure: Error, CustomStringConvertible {
        /// What went wrong, with the log tail when there is one.
        public var description: String
        public init(description: String) { self.description = description }
    }

    /// How a stopped process ended.
    public enum Termination: Sendable, Equatable, CustomStringConvertible {
        /// It exited with this status.
        case exited(Int32)
        /// A signal ended it.
        case signalled(Int32)

        public var description: String {
            switch self {
            case .exited(let status): "exit status \(status)"
            case .signalled(let signal): "signal \(signal)"
            }
        }
    }

    /// The name the process was started as (used in messages).
    public let name: String
    /// The file holding the process's standard output and error.
    public let logFile: URL
    /// The process id.
    public let pid: Int32
    private let process: Process

    private init(name: String, logFile: URL, process: Process) {
        self.name = name
        self.logFile = logFile
        self.process = process
        self.pid = process.processIdentifier
    }

    // MARK: - Finding executables

    /// The build products directory: where the test bundle (and every executable of the package) is.
    public static func productsDirectory() throws(Failure) -> URL {
        let executable = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var candidates = [Bundle.main.bundleURL.deletingLastPathComponent(), executable.deletingLastPathComponent()]
        for directory in [Bundle.main.bundleURL, executable] where directory.pathExtension == "xctest" {
            candidates.append(directory.deletingLastPathComponent())
        }
        for directory in candidates where FileManager.default.fileExists(atPath: directory.appendingPathComponent("loopctl").path)
            || FileManager.default.fileExists(atPath: directory.appendingPathComponent("ingest").path) {
            return directory
        }
        throw Failure(description: "no built executables next to the tests in \(candidates.map(\.path)); run `swift build --build-tests`")
    }

    /// The built executable `name` (e.g. `scorer`) in the build products directory.
    public static func executable(_ name: String) throws(Failure) -> URL {
        let url = try productsDirectory().appendingPathComponent(name)
        guard FileManager.default.isExecutableFile(atPath: url.path) else {
            throw Failure(description: "\(url.path) is not built; run `swift build --build-tests` (or `swift build --product \(name)`)")
        }
        return url
    }

    // MARK: - Starting

    /// Starts the built executable `executable` with `arguments`, writing its output to
    /// `<logDirectory>/<name>.log`. The environment is the test's minus every `LOOP_*` variable (so a
    /// developer's settings do not leak in), plus `environment`.
    public static func launch(
        _ executable: String, name: String? = nil, arguments: [String] = [], environment: [String: String] = [:],
        logDirectory: URL
    ) throws(Failure) -> ChildProcess {
        let url = try Self.executable(executable)
        let name = name ?? executable
        let logFile = logDirectory.appendingPathComponent("\(name).log")
        do {
            try FileManager.default.createDirectory(at: logDirectory, withIntermediateDirectories: true)
        } catch {
            throw Failure(description: "cannot create \(logDirectory.path): \(error)")
        }
        guard FileManager.default.createFile(atPath: logFile.path, contents: nil),
              let log = FileHandle(forWritingAtPath: logFile.path)
        else { throw Failure(description: "cannot create the log file \(logFile.path)") }
        defer { try? log.close() }

        let process = Process()
        process.executableURL = url
        process.arguments = arguments
        process.environment = Self.environment(adding: environment)
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = log
        process.standardError = log
        do { try process.run() } catch {
            throw Failure(description: "cannot start \(url.path): \(error)")
        }
        Self.register(process.processIdentifier)
        return ChildProcess(name: name, logFile: logFile, process: process)
    }

    /// What a command printed and how it ended.
    public struct Output: Sendable {
        /// Its standard output.
        public var standardOutput: String
        /// Its standard error.
        public var standardError: String
        /// How it ended.
        public var termination: Termination
        /// Whether it exited with status 0.
        public var succeeded: Bool { termination == .exited(0) }
    }

    /// Runs the built executable `executable` to completion (e.g. a `loopctl` command) with the same
    /// environment rules as ``launch(_:name:arguments:environment:logDirectory:)``; killed after
    /// `timeout`, which is an error.
    public static func run(
        _ executable: String, arguments: [String], environment: [String: String] = [:], timeout: Duration = .seconds(60)
    ) async throws -> Output {
        let url = try Self.executable(executable)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("run-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let outURL = directory.appendingPathComponent("stdout")
        let errURL = directory.appendingPathComponent("stderr")
        guard FileManager.default.createFile(atPath: outURL.path, contents: nil),
              FileManager.default.createFile(atPath: errURL.path, contents: nil)
        else { throw Failure(description: "cannot create output files in \(directory.path)") }
        let out = try FileHandle(forWritingTo: outURL)
        let err = try FileHandle(forWritingTo: errURL)

        let process = Process()
        process.executableURL = url
        process.arguments = arguments
        process.environment = Self.environment(adding: environment)
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = out
        process.standardError = err
        try process.run()
        try? out.close()
        try? err.close()
        Self.register(process.processIdentifier)
        let child = ChildProcess(name: executable, logFile: errURL, process: process)
        let ended = await child.waitForExit(timeout: timeout)
        if !ended { child.kill() }
        let output = Output(
            standardOutput: (try? String(contentsOf: outURL, encoding: .utf8)) ?? "",
            standardError: (try? String(contentsOf: errURL, encoding: .utf8)) ?? "",
            termination: child.termination ?? .signalled(SIGKILL))
        guard ended else {
            throw Failure(description: "`\(executable) \(arguments.joined(separator: " "))` did not finish within \(timeout); stdout:\n\(output.standardOutput.suffix(2000))\nstderr:\n\(output.standardError.suffix(2000))")
        }
        return output
    }

    // MARK: - Watching

    /// Whether the process still runs.
    public var isRunning: Bool { process.isRunning }

    /// How the process ended, or `nil` while it runs.
    public var termination: Termination? {
        guard !process.isRunning else { return nil }
        return process.terminationReason == .uncaughtSignal ? .signalled(process.terminationStatus) : .exited(process.terminationStatus)
    }

    /// Waits until `GET <path>` on `127.0.0.1:<port>` answers 200; fails with the log tail when the
    /// process exits first or `timeout` passes.
    public func waitUntilReady(port: Int, path: String = "/readyz", timeout: Duration = .seconds(60)) async throws(Failure) {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let reply = try? await HTTPGet.fetch(port: port, path: path), reply.status == 200 { return }
            if let termination {
                throw Failure(description: "\(name) ended (\(termination)) before \(path) on :\(port) answered 200; log \(logFile.path):\n\(logTail())")
            }
            guard ContinuousClock.now < deadline else {
                throw Failure(description: "\(name) did not answer 200 on :\(port)\(path) within \(timeout); log \(logFile.path):\n\(logTail())")
            }
            try? await Task.sleep(for: .milliseconds(100))
        }
    }

    /// Waits up to `timeout` for the process to end; returns whether it did.
    public func waitForExit(timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning {
            guard ContinuousClock.now < deadline else { return false }
            try? await Task.sleep(for: .milliseconds(20))
        }
        process.waitUntilExit()
        return true
    }

    // MARK: - Stopping

    /// Sends SIGTERM and waits up to `grace` for a graceful exit, then SIGKILLs. Returns how it ended.
    @discardableResult
    public func stop(grace: Duration = .seconds(15)) async -> Termination {
        if process.isRunning {
            send(SIGTERM, to: pid)
            if !(await waitForExit(timeout: grace)) {
                kill()
                _ = await waitForExit(timeout: .seconds(5))
            }
        }
        return termination ?? .signalled(SIGKILL)
    }

    /// Sends SIGKILL now.
    public func kill() {
        if process.isRunning { send(SIGKILL, to: pid) }
    }

    /// The last `lines` lines of the log.
    public func logTail(lines: Int = 40) -> String {
        let text = (try? String(contentsOf: logFile, encoding: .utf8)) ?? "(no log at \(logFile.path))"
        return text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
    }

    // MARK: - Plumbing

    private static func environment(adding extra: [String: String]) -> [String: String] {
        ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("LOOP_") }.merging(extra) { _, new in new }
    }

    private static let children = Mutex<[Int32]>([])

    /// Every child is SIGKILLed when the test process exits, whatever happened to the test.
    private static func register(_ pid: Int32) {
        let first = children.withLock { children in
            children.append(pid)
            return children.count == 1
        }
        if first {
            atexit {
                for pid in ChildProcess.children.withLock({ $0 }) { send(SIGKILL, to: pid) }
            }
        }
    }
}

/// `kill(2)` under a name that the method ``ChildProcess/kill()`` does not shadow.
private func send(_ signal: Int32, to pid: Int32) {
    _ = kill(pid, signal)
}
