import Logging

/// The logger loopctl hands to the Kafka clients: warnings and errors to standard error.
enum CLILogging {
    static func logger(verbose: Bool = false) -> Logger {
        var logger = Logger(label: "loopctl") { label in StreamLogHandler.standardError(label: label) }
        logger.logLevel = verbose ? .debug : .warning
        return logger
    }
}
