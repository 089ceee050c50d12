#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Contracts
import Foundation
import Kafka
import Logging
import Prometheus
import ServiceLifecycle
import UnixSignals

/// The whole `main` of a service:
/// ```swift
/// import Ingest
/// import ServiceKit
///
/// await ServiceRunner.main(IngestService.self)
/// ```
/// It parses the settings (printing `--help`), bootstraps logging, loads `loop.yaml`, checks
/// librdkafka, loads the API keys, builds the service and runs the admin server and the service's
/// parts in a `ServiceGroup` until SIGTERM or SIGINT, which stop them gracefully in reverse order.
///
/// Exit codes: 0 after a clean shutdown or `--help`; 2 for bad flags, env vars, `loop.yaml` or API
/// keys; 1 when the environment cannot run the service, building it fails or a part fails.
public enum ServiceRunner {
    /// Exit code of a clean run.
    public static let success: Int32 = 0
    /// Exit code when the service failed at run time or could not be built.
    public static let failure: Int32 = 1
    /// Exit code for bad settings, configuration or API keys.
    public static let usage: Int32 = 2

    /// Every setting `service` reads, common ones first: the list `--help` prints and a deployment
    /// check compares env vars (e.g. docker-compose's) against.
    public static func declaredSettings<S: LoopService>(of service: S.Type) -> [SettingSpec] {
        (CommonSettings(service: S.name, defaultAdminPort: S.defaultAdminPort).all + S.settings).map(\.spec)
    }

    /// Runs `service` and exits the process with its exit code.
    public static func main<S: LoopService>(_ service: S.Type) async -> Never {
        Allocator.keepFreedMemory()
        let code = await run(service, arguments: Array(CommandLine.arguments.dropFirst()),
                             environment: ProcessInfo.processInfo.environment)
        exit(code)
    }

    /// Runs `service` with command-line `arguments` (without the program name) and `environment`;
    /// returns the exit code. Bootstraps logging, so a process calls it at most once.
    public static func run<S: LoopService>(
        _ service: S.Type, arguments: [String], environment: [String: String]
    ) async -> Int32 {
        let common = CommonSettings(service: S.name, defaultAdminPort: S.defaultAdminPort)
        let declarations = common.all + S.settings
        let settings: Settings
        do {
            switch try Settings.parse(declarations, arguments: arguments, environment: environment) {
            case .help:
                print(Settings.helpText(program: S.name, summary: S.summary, declarations: declarations), terminator: "")
                return success
            case .run(let parsed):
                settings = parsed
            }
        } catch {
            LogSink.standardError.emit("\(S.name): \(error.message)")
            return usage
        }

        LoggingBootstrap.bootstrap(format: settings[common.logFormat], level: settings[common.logLevel])
        let logger = Logger(label: S.name)
        var settingsMetadata = Logger.Metadata()
        for (name, value, source) in settings.redactedValues {
            settingsMetadata[name] = "\(value) (\(source.rawValue))"
        }
        logger.info("starting", metadata: ["service.name": "\(S.name)", "settings": .dictionary(settingsMetadata)])

        func refuse(_ message: String, exitCode: Int32) -> Int32 {
            logger.critical("refusing to start", metadata: ["error.message": "\(message)"])
            LogSink.standardError.emit("\(S.name): \(message)")
            return exitCode
        }

        let configPath = settings[common.config]
        let config: LoopConfig
        do {
            config = try LoopConfig.load(path: configPath)
        } catch {
            return refuse("invalid configuration \(configPath): \(error)", exitCode: usage)
        }
        logger.info("configuration loaded", metadata: ["config.path": "\(configPath)", "config.name": "\(config.name)"])

        let (_, librdkafkaVersion) = Librdkafka.runtimeVersion
        logger.info("librdkafka loaded", metadata: ["kafka.librdkafka.version": "\(librdkafkaVersion)"])
        do {
            try Librdkafka.checkVersion()
        } catch {
            return refuse("unsupported librdkafka: \(error)", exitCode: failure)
        }

        let apiKeys: APIKeys
        do {
            apiKeys = try APIKeys.load(path: settings[common.apiKeysFile], inline: settings[common.apiKeys])
        } catch {
            return refuse(error.message, exitCode: usage)
        }
        if apiKeys.count > 0 { logger.info("API keys loaded", metadata: ["auth.keys": "\(apiKeys.count)"]) }

        let environment = ServiceEnvironment(
            name: S.name, settings: settings, common: common, config: config, logger: logger, apiKeys: apiKeys)
        let instance: S
        do {
            instance = try await S(environment: environment)
        } catch {
            return refuse("cannot build the service: \(error)", exitCode: failure)
        }

        let admin = AdminServer(router: environment.router, host: settings[common.adminHost],
                                port: settings[common.adminPort], threading: S.httpThreading, logger: logger)
        let parts: [(name: String, service: any Service)] =
            [("admin-server", admin)] + instance.parts.map { ("\(type(of: $0))", $0) }
        let group = serviceGroup(
            parts: parts, readiness: environment.readiness,
            shutdownTimeout: .seconds(settings[common.shutdownTimeout]), signals: [.sigterm, .sigint], logger: logger)
        environment.metrics.makeGauge(
            descriptor: MetricNameDescriptor(
                namespace: "process", metricName: "start_time", unitName: "seconds",
                helpText: "When the process started, in seconds since the Unix epoch."))
            .set(Date().timeIntervalSince1970)

        do {
            try await group.run()
        } catch {
            logger.error("stopped after a failure", metadata: ["error.message": "\(error)"])
            return failure
        }
        logger.info("stopped")
        return success
    }

    /// The group that runs `parts` in order and, on one of `signals` (or when a part finishes or
    /// fails), shuts them down gracefully in reverse order, escalating to cancellation after
    /// `shutdownTimeout`. A last part flips `readiness` to not ready as soon as shutdown begins.
    static func serviceGroup(
        parts: [(name: String, service: any Service)], readiness: Readiness, shutdownTimeout: Duration,
        signals: [UnixSignal], logger: Logger
    ) -> ServiceGroup {
        let all = parts + [("readiness-drain", ReadinessDrain(readiness: readiness, logger: logger))]
        var configuration = ServiceGroupConfiguration(
            services: all.map { part in
                .init(service: LoggedService(name: part.name, base: part.service, logger: logger),
                      successTerminationBehavior: .gracefullyShutdownGroup,
                      failureTerminationBehavior: .gracefullyShutdownGroup,
                      serviceName: part.name)
            },
            gracefulShutdownSignals: signals,
            logger: logger)
        configuration.maximumGracefulShutdownDuration = shutdownTimeout
        configuration.logging.keys.signalKey = "lifecycle.signal"
        configuration.logging.keys.gracefulShutdownSignalsKey = "lifecycle.graceful_shutdown_signals"
        configuration.logging.keys.cancellationSignalsKey = "lifecycle.cancellation_signals"
        configuration.logging.keys.serviceKey = "lifecycle.service"
        configuration.logging.keys.servicesKey = "lifecycle.services"
        configuration.logging.keys.errorKey = "error.message"
        return ServiceGroup(configuration: configuration)
    }
}

// MARK: - Parts the runner adds

/// Logs when a part starts and stops.
struct LoggedService: Service {
    let name: String
    let base: any Service
    let logger: Logger

    func run() async throws {
        logger.info("part starting", metadata: ["service.part": "\(name)"])
        do {
            try await base.run()
        } catch {
            logger.error("part failed", metadata: ["service.part": "\(name)", "error.message": "\(error)"])
            throw error
        }
        logger.info("part stopped", metadata: ["service.part": "\(name)"])
    }
}

/// Runs last, so it is the first to hear of graceful shutdown: it flips `/readyz` to 503 so traffic
/// drains while the other parts finish their in-flight work.
struct ReadinessDrain: Service {
    let readiness: Readiness
    let logger: Logger

    func run() async throws {
        try? await gracefulShutdown()
        readiness.beginShutdown()
        logger.info("shutting down: not ready, finishing in-flight work")
    }
}
