#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Logging

// MARK: - JSON lines

/// A `LogHandler` writing one JSON object per line:
/// `{"ts":"2025-01-31T12:00:00.123Z","level":"info","label":"ingest","message":"…","kafka.topic":"loop.events"}`.
///
/// Nested metadata dictionaries are flattened into dotted keys (`kafka` → `topic` becomes
/// `kafka.topic`); arrays become JSON arrays of strings. Metadata keys that would clash with
/// `ts`, `level`, `label`, `message` or `error` get the prefix `metadata.`.
public struct JSONLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    private let label: String
    private let sink: LogSink

    public init(label: String, level: Logger.Level = .info, sink: LogSink = .standardOutput,
                metadataProvider: Logger.MetadataProvider? = nil) {
        self.label = label
        self.logLevel = level
        self.sink = sink
        self.metadataProvider = metadataProvider
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var line = "{\"ts\":\""
        line += LogTimestamp.now()
        line += "\",\"level\":\""
        line += event.level.rawValue
        line += "\",\"label\":"
        line += JSONText.quote(label)
        line += ",\"message\":"
        line += JSONText.quote(event.message.description)
        if let error = event.error {
            line += ",\"error\":"
            line += JSONText.quote(String(describing: error))
        }
        for (key, value) in LogMetadata.flattened(metadata, provider: metadataProvider, event: event.metadata) {
            line += ","
            line += JSONText.quote(Self.reservedKeys.contains(key) ? "metadata." + key : key)
            line += ":"
            switch value {
            case .text(let text): line += JSONText.quote(text)
            case .list(let items): line += "[" + items.map(JSONText.quote).joined(separator: ",") + "]"
            }
        }
        line += "}"
        sink.emit(line)
    }

    private static let reservedKeys: Set<String> = ["ts", "level", "label", "message", "error"]
}

// MARK: - Text

/// A `LogHandler` writing human-readable lines:
/// `2025-01-31T12:00:00.123Z info ingest: consumer started kafka.topic=loop.events`.
public struct TextLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    private let label: String
    private let sink: LogSink

    public init(label: String, level: Logger.Level = .info, sink: LogSink = .standardOutput,
                metadataProvider: Logger.MetadataProvider? = nil) {
        self.label = label
        self.logLevel = level
        self.sink = sink
        self.metadataProvider = metadataProvider
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var line = LogTimestamp.now() + " " + event.level.rawValue + " " + label + ": " + event.message.description
        if let error = event.error {
            line += " error=" + Self.quoted(String(describing: error))
        }
        for (key, value) in LogMetadata.flattened(metadata, provider: metadataProvider, event: event.metadata) {
            switch value {
            case .text(let text): line += " " + key + "=" + Self.quoted(text)
            case .list(let items): line += " " + key + "=[" + items.map(Self.quoted).joined(separator: ",") + "]"
            }
        }
        sink.emit(line)
    }

    private static func quoted(_ text: String) -> String {
        text.isEmpty || text.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" || $0.isNewline })
            ? JSONText.quote(text) : text
    }
}

// MARK: - Bootstrap

/// The one logging bootstrap of a process; call it once, first thing in `main`.
public enum LoggingBootstrap {
    /// Makes every `Logger` write `format` lines at `level` or above to `sink`.
    public static func bootstrap(format: LogFormat, level: Logger.Level, sink: LogSink = .standardOutput) {
        LoggingSystem.bootstrap { label in
            switch format {
            case .json: JSONLogHandler(label: label, level: level, sink: sink)
            case .text: TextLogHandler(label: label, level: level, sink: sink)
            }
        }
    }
}

// MARK: - Helpers

/// Metadata merged (handler < provider < event) and flattened to dotted keys, sorted by key.
enum LogMetadata {
    enum Value: Equatable {
        case text(String)
        case list([String])
    }

    static func flattened(
        _ handler: Logger.Metadata, provider: Logger.MetadataProvider?, event: Logger.Metadata?
    ) -> [(String, Value)] {
        var merged = handler
        if let provided = provider?.get() { merged.merge(provided) { $1 } }
        if let event { merged.merge(event) { $1 } }
        guard !merged.isEmpty else { return [] }
        var output = [(String, Value)]()
        flatten(merged, prefix: "", into: &output)
        return output.sorted { $0.0 < $1.0 }
    }

    private static func flatten(_ metadata: Logger.Metadata, prefix: String, into output: inout [(String, Value)]) {
        for (key, value) in metadata {
            let path = prefix.isEmpty ? key : prefix + "." + key
            switch value {
            case .dictionary(let nested): flatten(nested, prefix: path, into: &output)
            case .array(let items): output.append((path, .list(items.map(text))))
            case .string, .stringConvertible: output.append((path, .text(text(value))))
            }
        }
    }

    private static func text(_ value: Logger.Metadata.Value) -> String {
        switch value {
        case .string(let text): text
        case .stringConvertible(let convertible): convertible.description
        case .dictionary, .array: value.description
        }
    }
}

/// UTC timestamps with milliseconds, `2025-01-31T12:00:00.123Z`, without Foundation formatters.
enum LogTimestamp {
    static func now() -> String {
        // Not `clock_gettime`: in release builds with NIO linked, `timespec` resolves to CNIOLinux's copy.
        let now = Date().timeIntervalSince1970
        var seconds = time_t(now.rounded(.down))
        var parts = tm()
        gmtime_r(&seconds, &parts)
        let milliseconds = min(999, Int((now - now.rounded(.down)) * 1000))
        return pad(Int(parts.tm_year) + 1900, 4) + "-" + pad(Int(parts.tm_mon) + 1, 2) + "-" + pad(Int(parts.tm_mday), 2)
            + "T" + pad(Int(parts.tm_hour), 2) + ":" + pad(Int(parts.tm_min), 2) + ":" + pad(Int(parts.tm_sec), 2)
            + "." + pad(milliseconds, 3) + "Z"
    }

    private static func pad(_ value: Int, _ width: Int) -> String {
        let digits = String(value)
        return digits.count >= width ? digits : String(repeating: "0", count: width - digits.count) + digits
    }
}
