import ArgumentParser
import Contracts
import Foundation

/// `loopctl models`: the model registry through the retrainer's admin API.
public struct ModelsCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "models",
        abstract: "List model versions, show a model card, promote a version or roll back.",
        discussion: "Calls the retrainer's admin API (--retrainer-url) with the operator key from LOOP_API_KEY.",
        subcommands: [List.self, Show.self, Promote.self, Rollback.self])

    public init() {}

    /// `models list`
    public struct List: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(abstract: "List every model version (GET /v1/models); * marks the champion.")
        @OptionGroup(title: "Connection") public var connection: ConnectionOptions
        @Flag(name: .long, help: "Print the answer as JSON.") public var json = false
        public init() {}
        public func run() async throws {
            let api = try ModelsCommand.api(connection)
            let answer = try await api.call(api.listModels(), client: HTTPClient())
            print(json ? String(decoding: answer.canonicalBytes(), as: UTF8.self) : RetrainerAPI.listText(answer))
        }
    }

    /// `models show`
    public struct Show: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(abstract: "Show a version's model card (GET /v1/models/{version}).")
        @OptionGroup(title: "Connection") public var connection: ConnectionOptions
        @Argument(help: "The model version.") public var version: Int64
        @Flag(name: .long, help: "Print the answer as JSON.") public var json = false
        public init() {}
        public func run() async throws {
            let api = try ModelsCommand.api(connection)
            let answer = try await api.call(api.showModel(version), client: HTTPClient())
            print(json ? String(decoding: answer.canonicalBytes(), as: UTF8.self) : RetrainerAPI.showText(answer))
        }
    }

    /// `models promote`
    public struct Promote: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(
            abstract: "Make a version the champion (POST /v1/models/{version}/promote); audited.")
        @OptionGroup(title: "Connection") public var connection: ConnectionOptions
        @Argument(help: "The model version.") public var version: Int64
        @Option(name: .long, help: "Why, for the audit log.") public var reason: String?
        public init() {}
        public func run() async throws {
            let api = try ModelsCommand.api(connection)
            let answer = try await api.call(api.promote(version, reason: reason), client: HTTPClient())
            print(RetrainerAPI.actionText(answer, fallback: "version \(version) promoted"))
        }
    }

    /// `models rollback`
    public struct Rollback: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(
            abstract: "Restore the previous champion (POST /v1/rollback); audited.")
        @OptionGroup(title: "Connection") public var connection: ConnectionOptions
        @Option(name: .long, help: "Why, for the audit log.") public var reason: String?
        public init() {}
        public func run() async throws {
            let api = try ModelsCommand.api(connection)
            let answer = try await api.call(api.rollback(reason: reason), client: HTTPClient())
            print(RetrainerAPI.actionText(answer, fallback: "rolled back"))
        }
    }

    static func api(_ options: ConnectionOptions) throws(LoopctlError) -> RetrainerAPI {
        let resolved = try options.resolve()
        return RetrainerAPI(baseURL: resolved.url(.retrainer), apiKey: resolved.apiKey)
    }
}

/// `loopctl retrain`
public struct RetrainCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "retrain",
        abstract: "Start a training run now (POST /v1/retrain); the candidate still has to pass the gate.")
    @OptionGroup(title: "Connection") public var connection: ConnectionOptions
    @Option(name: .long, help: "Why, for the audit log and the version's lineage.") public var reason: String?
    public init() {}
    public func run() async throws {
        let api = try ModelsCommand.api(connection)
        let answer = try await api.call(api.retrain(reason: reason), client: HTTPClient())
        print(RetrainerAPI.actionText(answer, fallback: "retraining started"))
    }
}
