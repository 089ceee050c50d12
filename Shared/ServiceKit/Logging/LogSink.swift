#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// Where formatted log lines go. Each call writes one whole line; concurrent writers never interleave.
public struct LogSink: Sendable {
    private let writeLine: @Sendable (String) -> Void

    /// A sink that hands each line (without its newline) to `write`, e.g. to capture logs in tests.
    public init(write: @escaping @Sendable (String) -> Void) {
        self.writeLine = write
    }

    /// Writes `line` and a newline.
    public func emit(_ line: String) {
        writeLine(line)
    }

    /// The process's standard output, one `write(2)` per line under a lock.
    public static let standardOutput = LogSink(fileDescriptor: 1)

    /// The process's standard error, one `write(2)` per line under a lock.
    public static let standardError = LogSink(fileDescriptor: 2)

    private static let writeLock = Mutex(())

    private init(fileDescriptor: Int32) {
        self.init { line in
            var bytes = Array(line.utf8)
            bytes.append(UInt8(ascii: "\n"))
            LogSink.writeLock.withLock { _ in
                bytes.withUnsafeBytes { buffer in
                    var offset = 0
                    while offset < buffer.count {
                        let written = write(fileDescriptor, buffer.baseAddress! + offset, buffer.count - offset)
                        if written < 0 {
                            if errno == EINTR { continue }
                            return
                        }
                        offset += written
                    }
                }
            }
        }
    }
}
