import AsyncHTTPClient
import CertificateKit
import CertificateKitNIO
import Foundation
import Logging
import NIOCore
import Prometheus
import Synchronization

/// The running gateway's lifecycle: ``init`` wires the parts — the first set
/// (``InitialSet``), the store, the issued-leaf cache, the listeners
/// (``ListenerGroup``), the update pipeline (``UpdatePipeline``) and the periodic work
/// (``MaintenanceTimers``) — ``start()`` binds and starts them, ``shutdown(timeout:)``
/// drains and stops them.
public final class GatewayServer: Sendable {
    public let store: CertificateKit.CertificateStore
    private let group: any EventLoopGroup
    private let logger: Logger
    private let registry: PrometheusCollectorRegistry
    private let issued: IssuedCertificateCache
    private let listeners: ListenerGroup
    private let maintenance: MaintenanceTimers
    private let metricsChannel = Mutex<(any Channel)?>(nil)
    private let httpClient: HTTPClient
    /// Asks on-demand entries' `ask` endpoints (redirects are not followed: only a 2xx allows).
    private let askClient: HTTPClient
    private let onDemand: OnDemandCertificates
    /// `certgate_event_loop_lag_seconds`.
    private let lag = EventLoopLag()
    private let leafWriter: IssuedLeafWriter?
    private let state: StateStore?
    private let acme: ACMEManager
    /// With `shared_state`: this node's membership of the fleet, and what follows it.
    private let fleet: FleetMember?
    private let follower: FleetFollower?
    /// Every change of the set and of the running configuration.
    let pipeline: UpdatePipeline
    /// The clock of validity checks.
    private let now: @Sendable () -> Date

    /// Validates `configuration` whole (certificates, listeners' TLS settings) and
    /// prepares the gateway; ``start()`` binds the listeners. With a `state`, the stored
    /// set is served when there is one (the configuration's `certificates:` wait for the
    /// next reload), otherwise the configuration's set is stored as generation 0; every
    /// update is committed to it before it is served.
    public init(
        configuration: GatewayConfiguration, configurationPath: String, group: any EventLoopGroup,
        logger: Logger, metrics: GatewayMetrics = GatewayMetrics(),
        registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry(),
        state: StateStore? = nil,
        logLevel: LogLevelSwitch? = nil,
        now: @escaping @Sendable () -> Date = { Date() }
    ) throws(GatewayStartupError) {
        self.group = group
        self.logger = logger
        self.registry = registry
        self.state = state
        do {
            try MissingCertificateFiles.create(for: configuration, logger: logger)
        } catch {
            throw GatewayStartupError(reasons: [error.description])
        }
        let responses = ChallengeResponses()
        let fleet = try Self.fleetMember(configuration: configuration, state: state, group: group, metrics: metrics, logger: logger)
        self.fleet = fleet
        // In a fleet the ACME state is the fleet's (its own connection); else the node's.
        let acmeStore: (any ACMEStore)? = fleet.map { FleetACMEStore(database: $0.database.sibling()) } ?? state
        let sharedChallenges = fleet.map { FleetChallenges(database: $0.database.sibling(), responses: responses, node: $0.node, logger: logger) }
        let acme: ACMEManager
        // Every connection opened from here on is closed when a later step fails.
        func closingFleet() {
            acmeStore?.closeConnections()
            sharedChallenges?.close()
            fleet?.database.close()
        }
        do {
            acme = try ACMEManager(configuration: configuration, store: acmeStore, responses: responses, sharedChallenges: sharedChallenges, logger: logger)
        } catch {
            closingFleet()
            throw error
        }
        self.acme = acme
        let initial: InitialSet.Loaded
        if let fleet, let state {
            do {
                initial = try InitialSet.join(fleet: fleet, configuration: configuration, state: state, acme: acme, logger: logger)
            } catch {
                closingFleet()
                throw error
            }
        } else {
            initial = try InitialSet.load(configuration: configuration, state: state, acme: acme, logger: logger)
        }
        // Made once the set is known to be good: an HTTPClient must be shut down before it
        // goes away, also when a later step of this init throws.
        let httpClient = HTTPClient(eventLoopGroup: group)
        self.httpClient = httpClient
        let askClient = OnDemandAsk.makeClient(group: group)
        self.askClient = askClient
        func failing(_ error: GatewayStartupError) -> GatewayStartupError {
            try? httpClient.syncShutdown()
            try? askClient.syncShutdown()
            closingFleet()
            return error
        }
        let reporter = CommitReporter(
            metrics: metrics, notifiers: configuration.validity.notify, httpClient: httpClient, logger: logger)
        let store = CertificateKit.CertificateStore(initial: initial.set, generation: initial.generation, now: initial.committedAt)
        self.store = store
        let leafWriter = state.map { IssuedLeafWriter(state: $0, logger: logger) }
        self.leafWriter = leafWriter
        let issued = IssuedCertificateCache.forGateway(policy: configuration.issuing.policy, persistence: leafWriter, metrics: metrics, logger: logger)
        self.issued = issued
        if let state, let leafWriter {
            do {
                try InitialSet.restoreIssuedLeaves(from: state, into: issued, writer: leafWriter, set: initial.set, now: now(), logger: logger)
            } catch {
                throw failing(error)
            }
        }
        let onDemand = OnDemandCertificates(
            configuration: configuration.onDemand, store: acmeStore, acme: acme, ask: OnDemandAsk(client: askClient), logger: logger)
        self.onDemand = onDemand
        acme.observeOnDemandEntries { onDemand.replaceEntries($0) }
        let selector = CertificateSelector(store: store, issued: issued, onDemand: onDemand, now: now)
        do {
            self.listeners = try ListenerGroup(
                configuration: configuration.listeners, routes: RouteTable(configuration.routes), group: group,
                selector: selector, challenges: responses, metrics: metrics, logger: logger)
        } catch {
            throw failing(error)
        }
        let maintenance = MaintenanceTimers(group: group, store: store, issued: issued, reporter: reporter)
        self.maintenance = maintenance
        // Paths in control-plane entries are relative to the configuration's folder.
        let baseDirectory = configuration.baseDirectory
        let updater = CertificateUpdater(
            store: store,
            context: { CertificateBuildContext(baseDirectory: baseDirectory, servingMaterialFactory: NIOServingMaterial.factory, factoryChecksKeyPairs: true) },
            persist: { change, generation, source, acmeEntries in
                try state?.commit(change, generation: generation, source: source, acmeEntries: acmeEntries)
            },
            onCommit: { snapshot, change, warnings, source, node in
                reporter.committed(snapshot, change: change, warnings: warnings, source: source, committedBy: node)
                selector.releasePreviousSnapshots(on: group)
            },
            fleet: fleet)
        self.pipeline = UpdatePipeline(
            updater: updater, reporter: reporter, configuration: configuration, configurationPath: configurationPath,
            targets: .init(listeners: listeners, issued: issued, maintenance: maintenance, logLevel: logLevel, acme: acme, onDemand: onDemand),
            logger: logger)
        let pipeline = self.pipeline
        follower = fleet.map { fleet in
            FleetFollower(member: fleet, pollInterval: fleet.database.configuration.pollInterval.duration, challenges: sharedChallenges) {
                await pipeline.followFleet()
            }
        }
        reporter.serving(store.current, committedAt: initial.committedAt, source: initial.source, now: now())
        self.now = now
    }

    /// Binds every listener and the metrics endpoint, and starts the periodic work.
    /// Throws if one cannot be bound (then everything is stopped).
    public func start() async throws(GatewayStartupError) {
        do {
            try await listeners.bind()
        } catch {
            // Closes what is bound and shuts the HTTP client down (it must be, before it goes away).
            await shutdown(timeout: .zero)
            throw error
        }
        logger.notice("serving", metadata: ["certificates": "\(store.current.set.count)", "generation": "\(store.current.generation)"])
        // Not on the way to the first handshake: the first validity check (every entry's
        // state is recorded, changes logged and notified) and handing back to the system
        // what building the first set read and decoded.
        pipeline.reporter.checkValidity(set: store.current.set, now: now())
        FreedMemory.release()
        let configuration = pipeline.configuration
        maintenance.start(validityInterval: configuration.validity.interval.duration)
        follower?.start()
        let pipeline = self.pipeline
        let store = self.store
        acme.start(events: pipeline.reporter.events) { name, conf in
            // Already served (another node of the fleet committed it): nothing to commit.
            if store.current.set.entries[name]?.conf == conf { return nil }
            do throws(CertificateUpdateFailure) {
                _ = try await pipeline.update(CertificateUpdateRequest(change: .batch(upserts: [name: conf], deletions: []), source: .acme))
                return nil
            } catch {
                return error.description
            }
        }
        onDemand.start()
        lag.start(on: group)
        if let address = configuration.metrics?.listen {
            let store = self.store
            do {
                let acme = self.acme
                let channel = try await MetricsEndpoint.bind(address: address, registry: registry, group: group) { output in
                    ValiditySeries.render(store.current.set, now: Date(), into: &output)
                    ValiditySeries.renderRenewalTimes(acme.renewalTimes, into: &output)
                }
                metricsChannel.withLock { $0 = channel }
                // The port bound: the one configured, or the kernel's choice for port 0.
                let bound = HostAndPort(host: address.host, port: channel.localAddress?.port ?? address.port)
                logger.notice("metrics endpoint listening", metadata: ["address": "\(bound)", "path": "/metrics"])
            } catch {
                await shutdown(timeout: .zero)
                throw GatewayStartupError(reasons: ["metrics: cannot listen on \(address): \(SocketFailure.describe(error))"])
            }
        }
    }

    /// Re-reads the configuration file and applies it (see ``UpdatePipeline/reload(source:)``).
    @discardableResult
    public func reload(source: UpdateSource) async -> Result<CertificateUpdateOutcome, ReloadFailure> {
        await pipeline.reload(source: source)
    }

    /// The control plane of `control:`, ready to serve; nil without one.
    func makeControlPlane() throws(GatewayStartupError) -> ControlPlane? {
        let configuration = pipeline.configuration
        guard let control = configuration.control else { return nil }
        let service = ControlService(
            pipeline: pipeline, acme: acme, onDemand: onDemand, store: store, events: pipeline.reporter.events,
            status: { [self] in status }, now: { Date() }, maxMessageBytes: control.maxMessageBytes)
        return try ControlPlane(
            path: MaterialSource.resolve(path: control.socket, baseDirectory: configuration.baseDirectory),
            mode: control.mode, maxMessageBytes: control.maxMessageBytes, service: service, logger: logger)
    }

    /// What `GetStatus` reports.
    var status: GatewayStatus {
        let snapshot = store.current
        let (time, source) = pipeline.reporter.lastCommit
        return GatewayStatus(
            generation: snapshot.generation, certificates: snapshot.set.count, issuedCached: issued.count,
            listeners: listeners.status, lastUpdate: time, lastUpdateSource: source, sharedState: fleet?.status,
            onDemand: onDemand.status.inUse ? onDemand.status : nil)
    }

    /// The fleet membership `shared_state:` asks for (nil without it).
    private static func fleetMember(
        configuration: GatewayConfiguration, state: StateStore?, group: any EventLoopGroup, metrics: GatewayMetrics, logger: Logger
    ) throws(GatewayStartupError) -> FleetMember? {
        guard let shared = configuration.sharedState else { return nil }
        guard let state else {
            throw GatewayStartupError(reasons: ["shared_state: a node of a fleet keeps its local snapshot in state_dir, and this gateway runs without one"])
        }
        let password: String?
        switch shared.password(baseDirectory: configuration.baseDirectory) {
        case .success(let value): password = value
        case .failure(let error): throw GatewayStartupError(reasons: [error.description])
        }
        let database = FleetDatabase(configuration: shared, password: password, group: group)
        // The tables first (the ACME state is read next): a database away is the start's
        // to handle (it serves the local snapshot); one that refuses stops it here.
        do {
            try database.migrate()
        } catch where !error.unreachable {
            database.close()
            throw GatewayStartupError(reasons: [error.description])
        } catch {}
        return FleetMember(database: database, snapshot: state, metrics: metrics, logger: logger)
    }

    /// How long a shutdown waits for open connections (`shutdown_timeout`, as last reloaded).
    public var shutdownTimeout: Duration { pipeline.configuration.shutdownTimeout.duration }

    /// Stops accepting, lets open connections finish for up to `timeout`, then closes
    /// what is left; then makes what is pending durable.
    public func shutdown(timeout: Duration) async {
        maintenance.stop()
        lag.stop()
        await follower?.stop()
        await onDemand.stop()
        await acme.stop()
        if let channel = metricsChannel.withLock({ $0 }) { try? await channel.close() }
        await listeners.close()
        await listeners.drain(timeout: timeout)
        // Pending issued leaves, then the write-ahead log folded into the database file.
        leafWriter?.flush()
        // After the last update (the listeners are closed; the control plane stopped before).
        await runBlocking(on: .global()) { [fleet] in fleet?.database.close() }
        do {
            try state?.checkpoint()
        } catch {
            logger.warning("the state's write-ahead log was not folded in; it is replayed at the next start", metadata: ["reason": "\(error.description)"])
        }
        // Awaited, not left to a detached task: the caller shuts the event loop group down
        // next, and the client must be shut down on a group that still runs.
        try? await httpClient.shutdown()
        try? await askClient.shutdown()
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
