import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where progress goes: one carriage-return line redrawn on a terminal, or plain lines at an
/// interval when the output is a file or a pipe.
public struct ProgressDisplay: Sendable {
    /// How progress is shown.
    public enum Style: Sendable, Hashable {
        /// Redraws one line with `\r` at most every `interval`.
        case terminal(interval: Duration)
        /// Prints a full line every `interval`.
        case lines(interval: Duration)
        /// Shows nothing.
        case silent
    }

    public let style: Style
    private let write: @Sendable (String) -> Void

    /// A display writing to `write` in `style`.
    public init(style: Style, write: @escaping @Sendable (String) -> Void) {
        self.style = style
        self.write = write
    }

    /// Standard error: a redrawn line on a terminal, a line every 5 s otherwise.
    public static func standardError() -> ProgressDisplay {
        let style: Style = isatty(STDERR_FILENO) == 1 ? .terminal(interval: .milliseconds(200)) : .lines(interval: .seconds(5))
        return ProgressDisplay(style: style) { text in FileHandle.standardError.write(Data(text.utf8)) }
    }

    /// The least time between two updates.
    public var interval: Duration {
        switch style {
        case .terminal(let interval), .lines(let interval): interval
        case .silent: .seconds(3600)
        }
    }

    /// Shows `line` as the current progress.
    public func show(_ line: String) {
        switch style {
        case .terminal: write("\r\u{1B}[2K" + line)
        case .lines: write(line + "\n")
        case .silent: break
        }
    }

    /// Ends the progress display (a newline after the redrawn line).
    public func finish() {
        if case .terminal = style { write("\n") }
    }
}
