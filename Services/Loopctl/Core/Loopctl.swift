import ArgumentParser

/// loopctl: the operator CLI of FeedbackLoop.
public struct Loopctl: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "loopctl",
        abstract: "Operate a FeedbackLoop deployment.",
        discussion: """
            Every command takes the connection options (--brokers, --config, --topic-prefix, the service URLs, \
            --api-key); each also reads an environment variable (LOOP_BROKERS, LOOP_CONFIG, LOOP_TOPIC_PREFIX, \
            LOOP_<SERVICE>_URL, LOOP_API_KEY), and a flag wins over its variable.
            """,
        subcommands: [
            ReplayCommand.self, StatusCommand.self, TailCommand.self, DLQCommand.self, ModelsCommand.self,
            RetrainCommand.self, ReadinessCommand.self, ReportCommand.self,
        ])
    public init() {}
}
