import CertificateKit
import Foundation
import Logging
import Synchronization

/// This node's membership of a fleet (`shared_state:`): where its served set stands in the
/// fleet's history, whether the database is reachable, and the local snapshot in
/// `state_dir` it keeps of every generation it serves (so it restarts and serves through a
/// database outage). The update transaction commits through ``database``
/// (``CertificateUpdater``); the ``FleetFollower`` makes the node follow others' commits.
public final class FleetMember: Sendable {
    /// What `ctl status` and the metrics say about the fleet.
    public struct Status: Sendable, Equatable {
        public var node: String
        /// The fleet's latest generation this node knows of (what it serves, while unknown).
        public var fleetGeneration: UInt64
        /// Whether the node has reached the database since it started.
        public var fleetGenerationKnown: Bool
        /// Whether the node is in touch with the database now.
        public var connected: Bool
        /// Why not, when it is not.
        public var reason: String?
    }

    let database: FleetDatabase
    let node: String
    private let snapshot: StateStore
    private let logger: Logger
    private let metrics: GatewayMetrics
    private let served = Mutex<FleetPosition?>(nil)
    private let health: Mutex<(connected: Bool, fleetGeneration: UInt64?, reason: String?)>

    init(database: FleetDatabase, snapshot: StateStore, metrics: GatewayMetrics, logger: Logger) {
        self.database = database
        self.node = database.configuration.node
        self.snapshot = snapshot
        self.metrics = metrics
        self.logger = logger
        health = Mutex((connected: false, fleetGeneration: nil, reason: "not connected yet"))
    }

    /// The fleet position of the set this node serves (nil: it serves a set the fleet never
    /// had — it started while the database was away, with no snapshot).
    var position: FleetPosition? { served.withLock { $0 } }

    /// The node serves `position` (at start).
    func serving(_ position: FleetPosition?) {
        served.withLock { $0 = position }
        publishHealth()
    }

    /// The node now serves the generation `changes` lead to; its snapshot follows.
    func followed(_ changes: FleetChanges) {
        served.withLock { $0 = changes.position }
        keep(rows: changes.rows, removed: changes.removed, whole: changes.whole, position: changes.position,
             committedAt: changes.committedAt, source: changes.source, acmeEntries: .replace(changes.acmeEntries))
        logger.debug("followed the fleet", metadata: [
            "generation": "\(changes.position.generation)", "by": "\(changes.node)", "source": "\(changes.source.rawValue)",
            "upserted": "\(changes.rows.count)", "removed": "\(changes.removed.count)", "whole": "\(changes.whole)",
        ])
        reached(fleetGeneration: changes.position.generation)
    }

    /// This node committed `commit` to the fleet and serves it.
    func committed(_ commit: FleetCommit, change: CertificateSetChange, source: UpdateSource, committedAt: Date, acmeEntries: CertificateUpdateRequest.Change?) {
        served.withLock { $0 = commit.position }
        keep(rows: commit.rows, removed: change.removed, whole: false, position: commit.position,
             committedAt: committedAt, source: source, acmeEntries: acmeEntries)
        publishHealth()
    }

    /// The snapshot write. A failure leaves the snapshot behind what is served (the fleet
    /// holds the set; a restart with the database reachable loads it whole): said loudly, not fatal.
    func keep(
        rows: [StoredRow], removed: [String], whole: Bool, position: FleetPosition, committedAt: Date, source: UpdateSource,
        acmeEntries: CertificateUpdateRequest.Change?
    ) {
        do {
            try snapshot.keepFleetSnapshot(
                rows: rows, removed: removed, whole: whole, position: position, committedAt: committedAt, source: source, acmeEntries: acmeEntries)
        } catch {
            logger.error("the local snapshot of the fleet's set was not kept; a restart during a database outage would serve an older set", metadata: [
                "generation": "\(position.generation)", "reason": "\(error.description)",
            ])
        }
    }

    /// The database answered; `fleetGeneration` is its generation (nil: the one served).
    func reached(fleetGeneration: UInt64?) {
        let wasConnected = health.withLock { health in
            defer {
                health.connected = true
                health.reason = nil
                if let fleetGeneration { health.fleetGeneration = max(fleetGeneration, health.fleetGeneration ?? 0) }
            }
            return health.connected
        }
        if !wasConnected {
            logger.notice("shared state reachable", metadata: ["node": "\(node)", "database": "\(database.location)"])
        }
        publishHealth()
    }

    /// A commit was announced (a notification's generation).
    func announced(generation: UInt64) {
        health.withLock { $0.fleetGeneration = max(generation, $0.fleetGeneration ?? 0) }
        publishHealth()
    }

    /// The database could not be used.
    func unreachable(_ error: SharedStateError) {
        let wasConnected = health.withLock { health in
            defer {
                health.connected = false
                health.reason = error.reason
            }
            return health.connected
        }
        if wasConnected {
            logger.warning("shared state unreachable: serving the last set followed; updates answer UNAVAILABLE until it returns", metadata: [
                "node": "\(node)", "generation": "\(position?.generation.description ?? "-")", "reason": "\(error.description)",
            ])
        }
        publishHealth()
    }

    var status: Status {
        let served = position?.generation ?? 0
        return health.withLock { health in
            Status(
                node: node, fleetGeneration: max(health.fleetGeneration ?? served, served), fleetGenerationKnown: health.fleetGeneration != nil,
                connected: health.connected, reason: health.reason)
        }
    }

    private func publishHealth() {
        let status = self.status
        let served = position?.generation ?? 0
        metrics.recordSharedState(connected: status.connected, lag: status.fleetGeneration - min(served, status.fleetGeneration))
    }
}

/// A generation this node committed to the fleet: where it stands and the rows it wrote.
struct FleetCommit: Sendable {
    var position: FleetPosition
    var rows: [StoredRow]

    /// The rows of a change's added and changed entries.
    static func rows(of change: CertificateSetChange) throws(CertificateUpdateFailure) -> [StoredRow] {
        do throws(StoredRow.Problem) {
            return try StoredRow.rows(of: change.added + change.changed, builtBy: change)
        } catch {
            switch error {
            case .noContent(let name):
                throw .persistence("entry \(QuotedValue.quote(name)) comes without the PEM text it was built from")
            case .unencodable(let name):
                throw .persistence("entry \(QuotedValue.quote(name)): its configuration cannot be encoded")
            }
        }
    }
}
