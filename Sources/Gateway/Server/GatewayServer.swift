import AsyncHTTPClient
import CertificateKit
import CertificateKitNIO
import ControlProtocol
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import SwiftProtobuf
import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import Prometheus
import Synchronization

/// The running gateway: TLS listeners choosing certificates from the store, routes,
/// reload without restart, and a graceful shutdown.
public final class GatewayServer: Sendable {
    public enum ReloadOutcome: Sendable {
        case applied(generation: UInt64, change: CertificateSetChange)
        case rejected(reasons: [String])
    }

    public let configurationPath: String
    public let store: CertificateKit.CertificateStore
    private let group: any EventLoopGroup
    private let logger: Logger
    private let metrics: GatewayMetrics
    private let selector: CertificateSelector
    private let tracker = ConnectionTracker()
    private let upstreamLog: UpstreamFailureLog
    private let configuration: Mutex<GatewayConfiguration>
    private let routes: Mutex<RouteTable>
    private let listeners: Mutex<[ListenerRuntime]>
    private let reloading = Mutex(())
    private let issued: IssuedCertificateCache
    private let sweeper = Mutex<RepeatedTask?>(nil)
    private let registry: PrometheusCollectorRegistry
    private let validityGauges: ValidityGauges
    private let validityTimer = Mutex<RepeatedTask?>(nil)
    private let metricsChannel = Mutex<(any Channel)?>(nil)
    private let httpClient: HTTPClient
    /// Control-plane events (set changes, validity changes) for `WatchEvents`.
    let events = EventHub()
    private let lastUpdate = Mutex<(time: Date, source: GatewayMetrics.UpdateSource)>((Date(), .config))
    private let notifier: Mutex<ValidityNotifier>

    /// Validates `configuration` whole (certificates, listeners' TLS settings) and
    /// prepares the gateway; ``start()`` binds the listeners.
    public init(
        configuration: GatewayConfiguration, configurationPath: String, group: any EventLoopGroup,
        logger: Logger, metrics: GatewayMetrics = GatewayMetrics(),
        issuing: IssuedCertificateCache.Policy = IssuedCertificateCache.Policy(),
        registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry(),
        now: @escaping @Sendable () -> Date = { Date() }
    ) throws(GatewayStartupError) {
        self.configurationPath = configurationPath
        self.group = group
        self.logger = logger
        self.metrics = metrics
        self.upstreamLog = UpstreamFailureLog(logger: logger)
        self.registry = registry
        self.validityGauges = ValidityGauges(registry: registry, logger: logger)
        let httpClient = HTTPClient(eventLoopGroup: group)
        self.httpClient = httpClient
        self.notifier = Mutex(ValidityNotifier(notifiers: configuration.validity.notify, client: httpClient, logger: logger))
        do {
            try MissingCertificateFiles.create(for: configuration, logger: logger)
        } catch {
            throw GatewayStartupError(reasons: [error.description])
        }
        let set: CertificateSet
        do {
            set = try CertificateSet.build(
                from: configuration.certificates,
                context: configuration.buildContext(servingMaterialFactory: NIOServingMaterial.factory)).set
        } catch {
            throw GatewayStartupError(reasons: error.errors.map(\.description))
        }
        self.store = CertificateKit.CertificateStore(initial: set)
        let cacheHolder = CacheCountHolder()
        let issued = IssuedCertificateCache(policy: issuing, servingMaterialFactory: NIOServingMaterial.factory) { event in
            metrics.record(event, cached: cacheHolder.count)
            if case .failed(let name, let error) = event {
                logger.error("signing a leaf failed", metadata: ["name": "\(name)", "error": "\(error)"])
            }
        }
        cacheHolder.cache = issued
        self.issued = issued
        self.selector = CertificateSelector(store: store, issued: issued, now: now)
        var runtimes: [ListenerRuntime] = []
        for listener in configuration.listeners {
            let counters = metrics.handshakes(listener: listener.name)
            do {
                let context = try ListenerTLS.makeContext(for: listener, selector: selector, counters: counters)
                runtimes.append(ListenerRuntime(configuration: listener, context: context, counters: counters))
            } catch {
                throw GatewayStartupError(reasons: ["listener \(listener.name): TLS settings refused: \(error)"])
            }
        }
        self.configuration = Mutex(configuration)
        self.routes = Mutex(RouteTable(configuration.routes))
        self.listeners = Mutex(runtimes)
        metrics.recordSet(generation: 0, count: set.count)
        metrics.recordUpdate(source: .config, applied: true)
        checkValidity(set: set, now: now())
        for entry in set.sortedEntries where !entry.warnings.isEmpty {
            for warning in entry.warnings { logger.warning("\(warning)", metadata: ["entry": "\(entry.name)"]) }
        }
    }

    /// Binds every listener. Throws if one cannot be bound (those bound are closed).
    public func start() async throws {
        for runtime in listeners.withLock({ $0 }) {
            let address = runtime.configuration.listen
            do {
                let channel = try await makeBootstrap(for: runtime).bind(host: address.host, port: address.port).get()
                runtime.channel = channel
                logger.notice("listening", metadata: [
                    "listener": "\(runtime.name)", "address": "\(channel.localAddress.map { "\($0)" } ?? "\(address)")",
                ])
            } catch {
                for bound in listeners.withLock({ $0 }) { try? await bound.channel?.close() }
                throw GatewayStartupError(reasons: ["listener \(runtime.name): cannot listen on \(address): \(error)"])
            }
        }
        logger.notice("serving", metadata: ["certificates": "\(store.current.set.count)", "generation": "\(store.current.generation)"])
        // Drop issued leaves that expired, idled out, or belong to a CA no longer configured.
        let store = self.store
        let issued = self.issued
        let task = group.next().scheduleRepeatedTask(initialDelay: .minutes(1), delay: .minutes(1)) { _ in
            let authorities = Set(store.current.set.entries.values.filter { $0.kind == .issuer }.map(\.fingerprint))
            issued.sweep(now: Date(), currentAuthorities: authorities)
        }
        sweeper.withLock { $0 = task }

        // The validity monitor: at start (above) and every `validity.interval`.
        let (interval, metricsAddress) = configuration.withLock { ($0.validity.interval.duration, $0.metrics?.listen) }
        let validity = group.next().scheduleRepeatedTask(initialDelay: TimeAmount(interval), delay: TimeAmount(interval)) { [self] _ in
            checkValidity(set: store.current.set, now: Date())
        }
        validityTimer.withLock { $0 = validity }
        if let metricsAddress {
            do {
                let channel = try await MetricsEndpoint.bind(address: metricsAddress, registry: registry, group: group)
                metricsChannel.withLock { $0 = channel }
                logger.notice("metrics endpoint listening", metadata: ["address": "\(metricsAddress)", "path": "/metrics"])
            } catch {
                throw GatewayStartupError(reasons: ["metrics: cannot listen on \(metricsAddress): \(error)"])
            }
        }
    }

    /// Re-reads the configuration file and applies it whole — certificates (validated
    /// whole, unchanged entries reused), routes and listeners' TLS settings — or applies
    /// nothing and logs every reason. Open connections are not touched.
    @discardableResult
    public func reload(source: GatewayMetrics.UpdateSource) -> ReloadOutcome {
        reloading.withLock { _ in
            let outcome = prepareAndCommitReload()
            switch outcome {
            case .applied(let generation, let change):
                recordCommit(generation: generation, change: change, source: source)
                metrics.recordUpdate(source: source, applied: true)
                checkValidity(set: change.set, now: Date())
                metrics.recordSet(generation: generation, count: change.set.count)
                logger.notice("configuration reloaded", metadata: [
                    "generation": "\(generation)", "added": "\(change.added.count)",
                    "changed": "\(change.changed.count)", "removed": "\(change.removed.count)",
                ])
            case .rejected(let reasons):
                metrics.recordUpdate(source: source, applied: false)
                logger.error("configuration reload rejected; the previous configuration keeps serving", metadata: ["errors": "\(reasons.count)"])
                for reason in reasons { logger.error("\(reason)") }
            }
            return outcome
        }
    }

    private func prepareAndCommitReload() -> ReloadOutcome {
        let next: GatewayConfiguration
        do {
            next = try GatewayConfiguration.load(path: configurationPath)
        } catch {
            return .rejected(reasons: error.errors.map(\.description))
        }
        do {
            try MissingCertificateFiles.create(for: next, logger: logger)
        } catch {
            return .rejected(reasons: [error.description])
        }
        let change: CertificateSetChange
        let base = store.current
        do {
            change = try CertificateSet.build(
                from: next.certificates,
                context: next.buildContext(servingMaterialFactory: NIOServingMaterial.factory),
                reusing: base.set)
        } catch {
            return .rejected(reasons: error.errors.map(\.description))
        }
        // New TLS contexts for listeners whose settings changed; a changed address needs a restart.
        let runtimes = listeners.withLock { $0 }
        var replacements: [(ListenerRuntime, ListenerConfiguration, NIOSSLContext)] = []
        var restartNeeded: [String] = []
        for runtime in runtimes {
            guard let updated = next.listeners.first(where: { $0.name == runtime.name }) else {
                restartNeeded.append("listener \(runtime.name) was removed")
                continue
            }
            let current = runtime.configuration
            if updated.listen != current.listen {
                restartNeeded.append("listener \(runtime.name) moves from \(current.listen) to \(updated.listen)")
            }
            var comparable = updated
            comparable.listen = current.listen
            guard comparable != current else { continue }
            do {
                let context = try ListenerTLS.makeContext(for: comparable, selector: selector, counters: runtime.counters)
                replacements.append((runtime, comparable, context))
            } catch {
                return .rejected(reasons: ["listener \(runtime.name): TLS settings refused: \(error)"])
            }
        }
        for added in next.listeners where !runtimes.contains(where: { $0.name == added.name }) {
            restartNeeded.append("listener \(added.name) (\(added.listen)) is new")
        }

        // Commit: nothing above changed anything.
        // Compare-and-swap: a control-plane update that landed meanwhile is not overwritten.
        guard let snapshot = store.swap(to: change.set, expectedGeneration: base.generation) else {
            return .rejected(reasons: ["the certificate set changed during the reload; try again"])
        }
        routes.withLock { $0 = RouteTable(next.routes) }
        for (runtime, listener, context) in replacements { runtime.replace(configuration: listener, context: context) }
        configuration.withLock { $0 = next }
        notifier.withLock { $0 = ValidityNotifier(notifiers: next.validity.notify, client: httpClient, logger: logger) }
        for reason in restartNeeded {
            logger.warning("listener change needs a restart; the running listeners are unchanged", metadata: ["change": "\(reason)"])
        }
        for entry in change.added + change.changed {
            for warning in change.set.entries[entry]?.warnings ?? [] { logger.warning("\(warning)", metadata: ["entry": "\(entry)"]) }
        }
        return .applied(generation: snapshot.generation, change: change)
    }

    /// Stops accepting, lets open connections finish for up to `timeout`, then closes
    /// what is left.
    public func shutdown(timeout: Duration) async {
        sweeper.withLock { $0?.cancel(); $0 = nil }
        validityTimer.withLock { $0?.cancel(); $0 = nil }
        if let channel = metricsChannel.withLock({ $0 }) { try? await channel.close() }
        defer { Task { [httpClient] in try? await httpClient.shutdown() } }
        for runtime in listeners.withLock({ $0 }) {
            try? await runtime.channel?.close()
        }
        let open = tracker.count
        logger.notice("stopped accepting; draining open connections", metadata: ["open": "\(open)", "timeout": "\(timeout)"])
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

    /// The validity monitor's one step: gauges, a log line and a notification for each
    /// entry whose state changed.
    private func checkValidity(set: CertificateSet, now: Date) {
        let changes = validityGauges.update(set: set, now: now)
        let host = ProcessInfo.processInfo.hostName
        let notifications = changes.compactMap { change -> ValidityNotification? in
            guard let entry = set.entries[change.entry] else { return nil }
            let validity = entry.validity(at: now)
            return ValidityNotification(
                entry: entry.name, names: entry.patterns.map(\.description), notAfter: validity.notAfter,
                daysLeft: validity.daysLeft, state: change.to, previousState: change.from, host: host)
        }
        notifier.withLock { $0 }.notify(notifications)
        for notification in notifications {
            events.publish(.with { event in
                event.time = Google_Protobuf_Timestamp(date: now)
                event.validityChanged = .with {
                    $0.entry = notification.entry
                    $0.previousState = notification.previousState?.rawValue ?? ""
                    $0.state = notification.state.rawValue
                    $0.daysLeft = Int32(clamping: notification.daysLeft)
                    $0.notAfter = Google_Protobuf_Timestamp(date: notification.notAfter)
                }
            })
        }
    }

    /// After any committed change: the last-update facts and a `WatchEvents` event.
    private func recordCommit(generation: UInt64, change: CertificateSetChange, source: GatewayMetrics.UpdateSource) {
        let now = Date()
        lastUpdate.withLock { $0 = (now, source) }
        events.publish(.with { event in
            event.time = Google_Protobuf_Timestamp(date: now)
            event.setChanged = .with {
                $0.generation = generation
                $0.source = source.rawValue
                $0.added = change.added
                $0.changed = change.changed
                $0.removed = change.removed
            }
        })
    }

    /// The control service over the update transaction (for the gRPC server).
    func makeControlService(maxMessageBytes: Int) -> ControlService {
        let store = self.store
        let configuration = self.configurationSnapshot
        let updater = CertificateUpdater(
            store: store,
            context: { configuration().buildContext(servingMaterialFactory: NIOServingMaterial.factory) },
            onCommit: { [self] snapshot, change, source in
                recordCommit(generation: snapshot.generation, change: change, source: source)
                metrics.recordUpdate(source: source, applied: true)
                metrics.recordSet(generation: snapshot.generation, count: change.set.count)
                checkValidity(set: change.set, now: Date())
                logger.notice("certificate set updated", metadata: [
                    "source": "\(source.rawValue)", "generation": "\(snapshot.generation)", "added": "\(change.added.count)",
                    "changed": "\(change.changed.count)", "removed": "\(change.removed.count)",
                ])
            })
        return ControlService(
            updater: updater, store: store, events: events,
            status: { [self] in statusMessage() },
            reload: { [self] in reload(source: .control) },
            now: { Date() },
            maxMessageBytes: maxMessageBytes)
    }

    private var configurationSnapshot: @Sendable () -> GatewayConfiguration {
        { [self] in configuration.withLock { $0 } }
    }

    private func statusMessage() -> Certgate_Control_V1_Status {
        let snapshot = store.current
        let (time, source) = lastUpdate.withLock { $0 }
        let runtimes = listeners.withLock { $0 }
        return .with { status in
            status.generation = snapshot.generation
            status.certificates = UInt32(clamping: snapshot.set.count)
            status.issuedCached = UInt32(clamping: issued.count)
            status.listeners = runtimes.map { runtime in
                .with {
                    $0.name = runtime.name
                    $0.address = runtime.channel?.localAddress.map { "\($0)" } ?? "\(runtime.configuration.listen)"
                }
            }
            status.lastUpdate = Google_Protobuf_Timestamp(date: time)
            status.lastUpdateSource = source.rawValue
        }
    }

    /// The control socket's settings, resolved against the config folder.
    var controlSocket: (path: String, mode: Int, maxMessageBytes: Int)? {
        configuration.withLock { configuration in
            configuration.control.map {
                (MaterialSource.resolve(path: $0.socket, baseDirectory: configuration.baseDirectory), $0.mode, $0.maxMessageBytes)
            }
        }
    }

    func logControlListening(path: String) {
        logger.notice("control socket listening", metadata: ["socket": "\(path)"])
    }

    func logControlFailure(_ error: any Error) {
        logger.error("control socket failed", metadata: ["error": "\(error)"])
    }

    public var shutdownTimeout: Duration { configuration.withLock { $0.shutdownTimeout.duration } }

    private func makeBootstrap(for runtime: ListenerRuntime) -> ServerBootstrap {
        ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try initializeConnection(channel, runtime: runtime)
                }
            }
    }

    /// The pipeline of a new client connection: facts publisher → TLS → handshake timeout → router.
    private func initializeConnection(_ channel: any Channel, runtime: ListenerRuntime) throws {
        tracker.register(channel)
        let (listener, context) = runtime.current
        let facts = HandshakeFacts(listener: runtime.name, localAddress: channel.localAddress, remoteAddress: channel.remoteAddress)
        let publisher = HandshakeFactsPublisher(facts: facts, slot: selector.currentFacts)
        let operations = channel.pipeline.syncOperations
        let logger = self.logger
        try operations.addHandler(publisher)
        try operations.addHandler(NIOSSLServerHandler(context: context))
        try operations.addHandler(HandshakeTimeoutHandler(timeout: TimeAmount(listener.handshakeTimeout.duration)) { _ in
            logger.info("TLS handshake timed out; closing", metadata: [
                "listener": "\(facts.listener)", "client": "\(facts.remoteAddress.map { "\($0)" } ?? "-")",
                "timeout": "\(listener.handshakeTimeout)",
            ])
        })
        try operations.addHandler(ConnectionRouter(
            facts: facts, publisher: publisher, routes: routes.withLock { $0 },
            upstreamLog: upstreamLog, logger: logger))
    }
}

/// Lets the cache's event hook read the cache's size (the hook is made before the cache).
private final class CacheCountHolder: @unchecked Sendable {
    // Written once, before the cache can emit an event.
    var cache: IssuedCertificateCache?
    var count: Int { cache?.count ?? 0 }
}

/// Why the gateway could not start: every reason, each naming its place.
public struct GatewayStartupError: Error, CustomStringConvertible {
    public let reasons: [String]
    public var description: String { reasons.joined(separator: "\n") }
}

extension TimeAmount {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
