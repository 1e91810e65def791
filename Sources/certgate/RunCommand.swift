import ArgumentParser
import Foundation
import Gateway
import Logging
import Metrics
import Prometheus
import NIOCore
import NIOPosix
import ServiceLifecycle

/// `certgate run`: serve until SIGTERM/SIGINT, reloading on SIGHUP.
struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Serve TLS with the configuration's listeners, routes and certificates (the default command)."
    )

    @Option(name: .long, help: "The configuration file.")
    var config: String = "config/certgate.yaml"

    @Flag(name: .long, help: "Discard the stored certificate set and issued leaves (state_dir) and serve the configuration's certificates:.")
    var resetState = false

    func run() async throws {
        // The configuration read here lives only inside `prepare()`: the server keeps the
        // running one, and after a reload the file's first version must not stay behind (at
        // 100,000 entries its dictionary is some 40 MB).
        let (server, group, logger) = try await prepare()
        let services = ServiceGroup(configuration: .init(
            services: [.init(service: GatewayService(server: server))],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        do {
            try await services.run()
        } catch let error as GatewayStartupError {
            for reason in error.reasons { logger.error("\(reason)") }
            try? await group.shutdownGracefully()
            throw ExitCode(1)
        } catch {
            // Only the lifecycle's own errors are left here; its text is not ours to print.
            logger.error("stopped: the service lifecycle failed", metadata: ["error_type": "\(type(of: error))"])
            try? await group.shutdownGracefully()
            throw ExitCode(1)
        }
        try await group.shutdownGracefully()
        logger.notice("stopped")
    }

    /// Reads the configuration, sets up logging, metrics and the state, and makes the server.
    private func prepare() async throws -> (GatewayServer, MultiThreadedEventLoopGroup, Logger) {
        let configuration: GatewayConfiguration
        do {
            configuration = try GatewayConfiguration.load(path: config)
        } catch {
            for problem in error.errors { printError("config: \(problem)") }
            throw ExitCode(1)
        }
        // One level for the process, which a reload may change.
        let levels = LogLevelSwitch(configuration.logLevel)
        LoggingSystem.bootstrap { label in
            var output = StreamLogHandler.standardError(label: label)
            output.logLevel = .trace  // the switch decides
            return SwitchableLogHandler(output: output, levels: levels)
        }
        let logger = Logger(label: "certgate")
        // One registry behind swift-metrics (counters of the gateway) and the per-entry gauges.
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets = GatewayMetrics.durationHistogramBuckets
        MetricsSystem.bootstrap(factory)
        let servingProblems = configuration.problemsForServing(file: config)
        guard servingProblems.isEmpty else {
            for problem in servingProblems { logger.error("\(problem)") }
            throw ExitCode(1)
        }
        let state: StateStore
        do {
            state = try StateStore(directory: configuration.resolvedStateDirectory)
            if resetState {
                let discarded = try state.reset()
                logger.warning("state reset: the stored set and issued leaves are discarded", metadata: [
                    "state": "\(state.path)", "generation": "\(discarded.generation.map { "\($0)" } ?? "none")",
                    "certificates": "\(discarded.entries)", "issued_leaves": "\(discarded.issuedLeaves)",
                ])
            }
        } catch {
            logger.error("\(error)")
            throw ExitCode(1)
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
        let server: GatewayServer
        do {
            server = try GatewayServer(
                configuration: configuration, configurationPath: config, group: group, logger: logger,
                registry: registry, state: state, logLevel: levels)
        } catch {
            for reason in error.reasons { logger.error("\(reason)") }
            try? await group.shutdownGracefully()
            throw ExitCode(1)
        }
        return (server, group, logger)
    }
}
