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
        case applied(CertificateUpdateOutcome)
        /// The configuration is invalid (or does not fit the running gateway).
        case rejected(reasons: [String])
        /// Valid, but the state store could not commit it; nothing changed.
        case notPersisted(reason: String)
    }

    public let configurationPath: String
    public let store: CertificateKit.CertificateStore
    private let group: any EventLoopGroup
    private let logger: Logger
    private let metrics: GatewayMetrics
    private let selector: CertificateSelector
    private let tracker = ConnectionTracker()
    /// Per event loop of `group`: the deadlines of the handshakes in progress.
    private let handshakeDeadlines: [ObjectIdentifier: HandshakeDeadlines]
    private let upstreamLog: UpstreamFailureLog
    private let configuration: Mutex<GatewayConfiguration>
    private let routes: Mutex<RouteTable>
    private let listeners: Mutex<[ListenerRuntime]>
    private let reloading = Mutex(())
    private let issued: IssuedCertificateCache
    private let sweeper = Mutex<RepeatedTask?>(nil)
    private let registry: PrometheusCollectorRegistry
    private let validityTimer = Mutex<RepeatedTask?>(nil)
    private let metricsChannel = Mutex<(any Channel)?>(nil)
    private let httpClient: HTTPClient
    private let reporter: CommitReporter
    /// The one update transaction: control plane, SIGHUP and `ctl reload` all go through it.
    let updater: CertificateUpdater
    /// The serial queue updates and reloads run on.
    let updates = DispatchQueue(label: "certgate.updates")
    private let leafWriter: IssuedLeafWriter?
    private let state: StateStore?
    private let logLevel: LogLevelSwitch?

    /// Validates `configuration` whole (certificates, listeners' TLS settings) and
    /// prepares the gateway; ``start()`` binds the listeners. With a `state`, the stored
    /// set is served when there is one (the configuration's `certificates:` wait for the
    /// next reload), otherwise the configuration's set is stored as generation 0; every
    /// update is committed to it before it is served.
    public init(
        configuration: GatewayConfiguration, configurationPath: String, group: any EventLoopGroup,
        logger: Logger, metrics: GatewayMetrics = GatewayMetrics(),
        issuing: IssuedCertificateCache.Policy = IssuedCertificateCache.Policy(),
        registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry(),
        state: StateStore? = nil,
        logLevel: LogLevelSwitch? = nil,
        now: @escaping @Sendable () -> Date = { Date() }
    ) throws(GatewayStartupError) {
        self.configurationPath = configurationPath
        self.group = group
        self.handshakeDeadlines = HandshakeDeadlines.perLoop(of: group)
        self.logger = logger
        self.metrics = metrics
        self.upstreamLog = UpstreamFailureLog(logger: logger)
        self.registry = registry
        do {
            try MissingCertificateFiles.create(for: configuration, logger: logger)
        } catch {
            throw GatewayStartupError(reasons: [error.description])
        }
        let (set, generation, committed) = try Self.initialSet(configuration: configuration, state: state, logger: logger)
        // Made once the set is known to be good: an HTTPClient must be shut down before it
        // goes away, also when a later step of this init throws.
        let httpClient = HTTPClient(eventLoopGroup: group)
        self.httpClient = httpClient
        func failing(_ reasons: [String]) -> GatewayStartupError {
            try? httpClient.syncShutdown()
            return GatewayStartupError(reasons: reasons)
        }
        let reporter = CommitReporter(
            metrics: metrics, notifiers: configuration.validity.notify, httpClient: httpClient, logger: logger)
        self.reporter = reporter
        if let committed { reporter.startedFrom(committedAt: committed.time, source: committed.source) }
        let store = CertificateKit.CertificateStore(initial: set, generation: generation, now: committed?.time ?? Date())
        self.store = store
        let leafWriter = state.map { IssuedLeafWriter(state: $0, logger: logger) }
        self.leafWriter = leafWriter
        self.state = state
        self.logLevel = logLevel
        let cacheHolder = CacheCountHolder()
        let issued = IssuedCertificateCache(
            policy: issuing, servingMaterialFactory: NIOServingMaterial.eagerFactory, persistence: leafWriter
        ) { event in
            metrics.record(event, cached: cacheHolder.count)
            if case .failed(let name, let error) = event {
                logger.error("signing a leaf failed", metadata: ["name": "\(name)", "error": "\(error)"])
            }
        }
        cacheHolder.cache = issued
        self.issued = issued
        if let state, let leafWriter {
            do {
                try Self.restoreIssuedLeaves(from: state, into: issued, writer: leafWriter, set: set, now: now(), logger: logger)
            } catch {
                throw failing(error.reasons)
            }
        }
        // Paths in control-plane entries are relative to the configuration's folder.
        let baseDirectory = configuration.baseDirectory
        self.updater = CertificateUpdater(
            store: store,
            context: { CertificateBuildContext(baseDirectory: baseDirectory, servingMaterialFactory: NIOServingMaterial.factory) },
            persist: { change, generation, source in
                try state?.commit(change, generation: generation, source: source.rawValue)
            },
            onCommit: { snapshot, change, warnings, source in reporter.committed(snapshot, change: change, warnings: warnings, source: source) },
            onReject: { failure, source in reporter.rejected(failure, source: source) })
        self.selector = CertificateSelector(store: store, issued: issued, now: now)
        var runtimes: [ListenerRuntime] = []
        for listener in configuration.listeners {
            let counters = metrics.handshakes(listener: listener.name)
            do {
                let context = try ListenerTLS.makeContext(for: listener, selector: selector, counters: counters)
                runtimes.append(ListenerRuntime(configuration: listener, context: context, counters: counters))
            } catch {
                throw failing(["listener \(listener.name): the TLS library (BoringSSL) refused its settings (\(ListenerTLS.describe(error)))"])
            }
        }
        self.configuration = Mutex(configuration)
        self.routes = Mutex(RouteTable(configuration.routes))
        self.listeners = Mutex(runtimes)
        metrics.recordSet(generation: generation, count: set.count)
        metrics.recordUpdate(source: .config, applied: true)
        reporter.checkValidity(set: set, now: now())
        for entry in set.sortedEntries where !entry.warnings.isEmpty {
            for warning in entry.warnings { logger.warning("\(warning)", metadata: ["entry": "\(entry.name)"]) }
        }
        // What building the first set read and decoded is garbage now.
        FreedMemory.release()
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
                // Closes what is bound and shuts the HTTP client down (it must be, before it goes away).
                await shutdown(timeout: .zero)
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
            reporter.checkValidity(set: store.current.set, now: Date())
        }
        validityTimer.withLock { $0 = validity }
        if let metricsAddress {
            do {
                let channel = try await MetricsEndpoint.bind(address: metricsAddress, registry: registry, group: group) { output in
                    ValiditySeries.render(store.current.set, now: Date(), into: &output)
                }
                metricsChannel.withLock { $0 = channel }
                logger.notice("metrics endpoint listening", metadata: ["address": "\(metricsAddress)", "path": "/metrics"])
            } catch {
                await shutdown(timeout: .zero)
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
            let outcome = prepareAndCommitReload(source: source)
            switch outcome {
            case .applied(let outcome):
                logger.notice("configuration reloaded", metadata: [
                    "generation": "\(outcome.generation)", "added": "\(outcome.added.count)",
                    "changed": "\(outcome.changed.count)", "removed": "\(outcome.removed.count)",
                ])
            case .rejected(let reasons):
                logger.error("configuration reload rejected; the previous configuration keeps serving", metadata: ["errors": "\(reasons.count)"])
                for reason in reasons { logger.error("\(reason)") }
            case .notPersisted(let reason):
                logger.error("configuration reload not applied; the previous configuration keeps serving", metadata: ["reason": "\(reason)"])
            }
            // The file's text, its YAML nodes and every re-read certificate are garbage now.
            FreedMemory.release()
            return outcome
        }
    }

    /// Validates the file's routes and listeners, then applies its `certificates:` through
    /// the update transaction (a new generation, committed to the state) and, only once
    /// that has committed, the rest.
    private func prepareAndCommitReload(source: GatewayMetrics.UpdateSource) -> ReloadOutcome {
        let next: GatewayConfiguration
        do {
            next = try GatewayConfiguration.load(path: configurationPath)
        } catch {
            metrics.recordUpdate(source: source, applied: false)
            return .rejected(reasons: error.errors.map(\.description))
        }
        do {
            try MissingCertificateFiles.create(for: next, logger: logger)
        } catch {
            metrics.recordUpdate(source: source, applied: false)
            return .rejected(reasons: [error.description])
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
                metrics.recordUpdate(source: source, applied: false)
                return .rejected(reasons: ["listener \(runtime.name): the TLS library (BoringSSL) refused its settings (\(ListenerTLS.describe(error)))"])
            }
        }
        for added in next.listeners where !runtimes.contains(where: { $0.name == added.name }) {
            restartNeeded.append("listener \(added.name) (\(added.listen)) is new")
        }
        let running = configuration.withLock { $0 }
        if next.resolvedStateDirectory != running.resolvedStateDirectory {
            restartNeeded.append("state_dir moves from \(running.resolvedStateDirectory) to \(next.resolvedStateDirectory)")
        }
        if next.control != running.control {
            restartNeeded.append("the control socket settings changed")
        }
        if next.metrics?.listen != running.metrics?.listen {
            restartNeeded.append("metrics.listen changed")
        }

        // Nothing above changed anything. The set commits (durably) first; the rest follows it.
        let outcome: CertificateUpdateOutcome
        do {
            outcome = try updater.apply(
                CertificateUpdateRequest(change: .replace(next.certificates), source: source),
                context: next.buildContext(servingMaterialFactory: NIOServingMaterial.factory)
            ) { _, _ in
                routes.withLock { $0 = RouteTable(next.routes) }
                for (runtime, listener, context) in replacements { runtime.replace(configuration: listener, context: context) }
                configuration.withLock { $0 = next }
                reporter.replaceNotifiers(next.validity.notify)
                if let logLevel, logLevel.level != next.logLevel {
                    // Told at whichever of the two levels is the more verbose.
                    let previous = logLevel.level
                    if next.logLevel < previous { logLevel.level = next.logLevel }
                    logger.notice("log level changed", metadata: ["from": "\(previous)", "to": "\(next.logLevel)"])
                    logLevel.level = next.logLevel
                }
            }
        } catch {
            switch error {
            case .invalid(let errors): return .rejected(reasons: errors.map(\.description))
            case .generationMismatch: return .rejected(reasons: [error.description])
            case .persistence: return .notPersisted(reason: error.description)
            }
        }
        for reason in restartNeeded {
            logger.warning("change needs a restart; the running listeners, state and control socket are unchanged", metadata: ["change": "\(reason)"])
        }
        return .applied(outcome)
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
        // Pending issued leaves, then the write-ahead log folded into the database file.
        leafWriter?.flush()
        do {
            try state?.checkpoint()
        } catch {
            logger.warning("the state's write-ahead log was not folded in; it is replayed at the next start", metadata: ["error": "\(error)"])
        }
    }

    /// The set served at start and its generation: the stored one when the state holds a
    /// set, else the configuration's (then stored as generation 0).
    private static func initialSet(
        configuration: GatewayConfiguration, state: StateStore?, logger: Logger
    ) throws(GatewayStartupError) -> (CertificateSet, UInt64, (time: Date, source: GatewayMetrics.UpdateSource)?) {
        let context = configuration.buildContext(servingMaterialFactory: NIOServingMaterial.factory)
        let stored: StateStore.StoredSet?
        do {
            stored = try state?.load()
        } catch {
            throw GatewayStartupError(reasons: [error.description, "start with --reset-state to discard the stored state"])
        }
        if let state, let stored {
            do {
                let set = try CertificateSet.restore(from: stored.entries, context: context)
                logger.notice("serving the stored certificate set; the configuration's certificates: apply on the next reload (SIGHUP or certgate ctl reload)", metadata: [
                    "state": "\(state.path)", "generation": "\(stored.generation)", "certificates": "\(set.count)",
                    "committed_at": "\(stored.committedAt)", "source": "\(stored.source)",
                ])
                return (set, stored.generation, (stored.committedAt, GatewayMetrics.UpdateSource(rawValue: stored.source) ?? .config))
            } catch {
                throw GatewayStartupError(reasons: error.errors.map { "stored set (\(state.path)): \($0)" }
                    + ["start with --reset-state to discard the stored state and serve the configuration's certificates:"])
            }
        }
        let change: CertificateSetChange
        do {
            change = try CertificateSet.build(from: configuration.certificates, context: context)
        } catch {
            throw GatewayStartupError(reasons: error.errors.map(\.description))
        }
        if let state {
            do {
                try state.commit(change, generation: 0, source: GatewayMetrics.UpdateSource.config.rawValue)
            } catch {
                throw GatewayStartupError(reasons: [error.description])
            }
        }
        logger.notice("serving the configuration's certificates", metadata: [
            "certificates": "\(change.set.count)", "state": "\(state.map { "stored as generation 0 in \($0.path)" } ?? "none (not durable)")",
        ])
        return (change.set, 0, nil)
    }

    /// Puts the stored issued leaves of the set's CAs back into the cache; forgets the rest.
    private static func restoreIssuedLeaves(
        from state: StateStore, into cache: IssuedCertificateCache, writer: IssuedLeafWriter,
        set: CertificateSet, now: Date, logger: Logger
    ) throws(GatewayStartupError) {
        let records: [IssuedLeafRecord]
        do {
            records = try state.loadIssuedLeaves()
        } catch {
            throw GatewayStartupError(reasons: [error.description, "start with --reset-state to discard the stored state"])
        }
        guard !records.isEmpty else { return }
        let authorities = set.entries.values.filter { $0.kind == .issuer }.map(LocalAuthority.init(entry:))
        let (restored, discarded) = cache.restore(records, authorities: authorities, now: now)
        if !discarded.isEmpty { writer.dropped(discarded) }
        logger.info("issued leaves restored from the state", metadata: ["restored": "\(restored)", "discarded": "\(discarded.count)"])
    }

    /// The control service over the update transaction (for the gRPC server).
    func makeControlService(maxMessageBytes: Int) -> ControlService {
        ControlService(
            updater: updater, store: store, events: reporter.events,
            status: { [self] in statusMessage() },
            reload: { [self] in reload(source: .control) },
            now: { Date() },
            maxMessageBytes: maxMessageBytes,
            updates: updates)
    }

    private func statusMessage() -> Certgate_Control_V1_Status {
        let snapshot = store.current
        let (time, source) = reporter.lastCommit
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
        guard let deadlines = handshakeDeadlines[ObjectIdentifier(channel.eventLoop)] else {
            preconditionFailure("a connection on an event loop outside the gateway's group")
        }
        try operations.addHandler(HandshakeTimeoutHandler(timeout: TimeAmount(listener.handshakeTimeout.duration), deadlines: deadlines) { _ in
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
