import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization

/// The TLS listeners while the gateway runs: their TLS contexts (made at start, replaced
/// by a reload), the route table their connections follow, binding, and the open
/// connections a shutdown drains. Each new connection gets the pipeline of
/// ``ConnectionPipeline``.
final class ListenerGroup: Sendable {
    /// Listeners' new TLS contexts, made before a reload commits (making one can fail),
    /// put in force after.
    struct PreparedSettings: @unchecked Sendable {
        // NIOSSLContext is thread-safe (an immutable SSL_CTX), though not marked Sendable.
        fileprivate var replacements: [(ListenerRuntime, ListenerConfiguration, NIOSSLContext)] = []
    }

    private let runtimes: [ListenerRuntime]
    private let group: any EventLoopGroup
    private let selector: CertificateSelector
    private let logger: Logger
    private let pipeline: ConnectionPipeline
    let tracker = ConnectionTracker()

    /// Makes every listener's TLS context.
    /// - Throws: the listener whose settings BoringSSL refused.
    init(
        configuration: [ListenerConfiguration], routes: RouteTable, group: any EventLoopGroup,
        selector: CertificateSelector, challenges: ChallengeResponses, metrics: GatewayMetrics, logger: Logger
    ) throws(GatewayStartupError) {
        var runtimes: [ListenerRuntime] = []
        for listener in configuration {
            let counters = metrics.handshakes(listener: listener.name)
            guard listener.protocol == .tls else {
                runtimes.append(ListenerRuntime(configuration: listener, context: nil, counters: counters))
                continue
            }
            do {
                let context = try ListenerTLS.makeContext(for: listener, selector: selector, counters: counters)
                runtimes.append(ListenerRuntime(configuration: listener, context: context, counters: counters))
            } catch {
                throw GatewayStartupError(reasons: [Self.refusal(listener: listener.name, error)])
            }
        }
        self.runtimes = runtimes
        self.group = group
        self.selector = selector
        self.logger = logger
        self.pipeline = ConnectionPipeline(
            routes: routes, selector: selector, deadlines: HandshakeDeadlines.perLoop(of: group),
            upstreamLog: UpstreamFailureLog(logger: logger), tracker: tracker, challenges: challenges,
            httpsPort: configuration.first { $0.protocol == .tls }?.listen.port ?? 443, logger: logger)
    }

    /// Binds every listener.
    /// - Throws: the first listener that cannot be bound (those bound stay bound; the
    ///   caller closes them with ``close()``).
    func bind() async throws(GatewayStartupError) {
        for runtime in runtimes {
            let address = runtime.configuration.listen
            do {
                let channel = try await bootstrap(for: runtime).bind(host: address.host, port: address.port).get()
                runtime.channel = channel
                logger.notice("listening", metadata: [
                    "listener": "\(runtime.name)", "address": "\(channel.localAddress.map { "\($0)" } ?? "\(address)")",
                ])
            } catch {
                throw GatewayStartupError(reasons: ["listener \(runtime.name): cannot listen on \(address): \(SocketFailure.describe(error))"])
            }
        }
    }

    /// New TLS contexts for the listeners named (a reload's ``ReloadPlan/LiveChange/listener(name:)``),
    /// from `configurations`; their addresses stay as bound.
    /// - Throws: the first listener whose settings BoringSSL refused, as a configuration error.
    func prepare(_ names: [String], from configurations: [ListenerConfiguration], file: String) throws(ConfigurationError) -> PreparedSettings {
        var prepared = PreparedSettings()
        for name in names {
            guard let runtime = runtimes.first(where: { $0.name == name }),
                  var updated = configurations.first(where: { $0.name == name }) else { continue }
            // An http listener has no TLS context; a change of protocol waits for a restart.
            guard updated.protocol == .tls, runtime.configuration.protocol == .tls else { continue }
            updated.listen = runtime.configuration.listen
            do {
                let context = try ListenerTLS.makeContext(for: updated, selector: selector, counters: runtime.counters)
                prepared.replacements.append((runtime, updated, context))
            } catch {
                throw ConfigurationError(file: file, key: "listeners", reason: Self.refusal(listener: name, error))
            }
        }
        return prepared
    }

    /// Puts prepared contexts in force: new connections take them, open ones keep theirs.
    func install(_ prepared: PreparedSettings) {
        for (runtime, configuration, context) in prepared.replacements {
            runtime.replace(configuration: configuration, context: context)
        }
    }

    /// The route table new connections follow.
    func replaceRoutes(_ routes: RouteTable) {
        pipeline.routes.withLock { $0 = routes }
    }

    /// Name and address of each listener, for the status.
    var status: [GatewayStatus.Listener] {
        runtimes.map { runtime in
            GatewayStatus.Listener(
                name: runtime.name,
                address: runtime.channel?.localAddress.map { "\($0)" } ?? "\(runtime.configuration.listen)")
        }
    }

    /// Stops accepting (open connections stay).
    func close() async {
        for runtime in runtimes {
            try? await runtime.channel?.close()
        }
    }

    /// Tells open connections the gateway is stopping, waits up to `timeout` for them to
    /// finish, then closes what is left.
    func drain(timeout: Duration) async {
        logger.notice("stopped accepting; draining open connections", metadata: ["open": "\(tracker.count)", "timeout": "\(timeout)"])
        tracker.drain()
        let deadline = ContinuousClock.now + timeout
        while tracker.count > 0 && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(50))
        }
        let left = tracker.count
        if left > 0 {
            logger.warning("drain timeout; closing the remaining connections", metadata: ["open": "\(left)"])
            tracker.closeAll()
        }
    }

    private func bootstrap(for runtime: ListenerRuntime) -> ServerBootstrap {
        let pipeline = self.pipeline
        return ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try pipeline.install(on: channel, runtime: runtime)
                }
            }
    }

    private static func refusal(listener: String, _ error: any Error) -> String {
        "listener \(listener): the TLS library (BoringSSL) refused its settings (\(ListenerTLS.describe(error)))"
    }
}
