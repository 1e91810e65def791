import CertificateKit
import CertificateKitNIO
import Foundation
import Logging

extension InitialSet {
    /// What a node of a fleet serves when it starts: the fleet's set when the fleet holds
    /// one (the node's snapshot and the configuration's `certificates:` wait); when the
    /// fleet is empty, the node's own set — its snapshot, else the configuration's — becomes
    /// the fleet's first. When the database cannot be reached, the node serves its snapshot
    /// (else the configuration's set) and catches up once the database returns. A database
    /// that answers and refuses (a password, a newer schema) stops the start.
    static func join(
        fleet: FleetMember, configuration: GatewayConfiguration, state: StateStore, acme: ACMEManager, logger: Logger
    ) throws(GatewayStartupError) -> Loaded {
        let context = configuration.servingBuildContext()
        let local: StateStore.StoredSet?
        let committedACMEEntries: [String: CertificateConf]
        do {
            local = try state.load()
            committedACMEEntries = try state.acmeEntries()
        } catch {
            throw GatewayStartupError(reasons: [error.description, "start with --reset-state to discard the local snapshot"])
        }
        // The set this node would serve on its own, and how it would seed an empty fleet.
        let own: Loaded
        let seed: FleetDatabase.Seed
        var wanted: [String: CertificateConf]
        do {
            if let local {
                own = Loaded(
                    set: try CertificateSet.restore(from: local.entries, context: context), generation: local.generation,
                    committedAt: local.committedAt, source: local.source)
                wanted = local.entries.mapValues(\.conf).filter { $0.value.acme != nil }
                wanted.merge(committedACMEEntries) { _, committed in committed }
                seed = FleetDatabase.Seed(
                    rows: try state.loadRows(), generation: local.generation, source: local.source, committedAt: local.committedAt, acmeEntries: wanted)
            } else {
                let change = try CertificateSet.build(from: acme.materialize(configuration.certificates).servable, context: context)
                let now = Date()
                own = Loaded(set: change.set, generation: 0, committedAt: now, source: .config)
                wanted = configuration.certificates.filter { $0.value.acme != nil }
                seed = FleetDatabase.Seed(rows: try FleetCommit.rows(of: change), generation: 0, source: .config, committedAt: now, acmeEntries: wanted)
            }
        } catch let error as CertificateSetError {
            throw GatewayStartupError(reasons: error.errors.map { local == nil ? $0.description : "local snapshot (\(state.path)): \($0)" })
        } catch let error as StateStoreError {
            throw GatewayStartupError(reasons: [error.description])
        } catch let error as CertificateUpdateFailure {
            throw GatewayStartupError(reasons: [error.description])
        } catch {
            throw GatewayStartupError(reasons: ["the starting set cannot be made ready for the fleet"])
        }

        let joined: FleetDatabase.Joined
        do {
            try fleet.database.migrate()
            let position = local.flatMap { local in local.fleet.map { FleetPosition(fleet: $0, generation: local.generation) } }
            joined = try fleet.database.join(after: position) { seed }
        } catch where error.unreachable {
            fleet.unreachable(error)
            fleet.serving(local?.fleet.map { FleetPosition(fleet: $0, generation: local?.generation ?? 0) })
            acme.updated(by: .replace(wanted))
            logger.warning("shared state unreachable at start: serving \(local == nil ? "the configuration's certificates" : "the local snapshot") until it returns; updates answer UNAVAILABLE meanwhile", metadata: [
                "node": "\(fleet.node)", "database": "\(fleet.database.location)", "generation": "\(own.generation)",
                "certificates": "\(own.set.count)", "reason": "\(error.description)",
            ])
            return own
        } catch {
            throw GatewayStartupError(reasons: [error.description])
        }

        switch joined {
        case .seeded(let position):
            fleet.keep(rows: seed.rows, removed: [], whole: true, position: position, committedAt: seed.committedAt, source: seed.source,
                       acmeEntries: local == nil ? .replace(configuration.certificates) : nil)
            fleet.serving(position)
            fleet.reached(fleetGeneration: position.generation)
            acme.updated(by: .replace(wanted))
            logger.notice("the fleet held no set: this node's is its first", metadata: [
                "node": "\(fleet.node)", "database": "\(fleet.database.location)", "generation": "\(position.generation)",
                "certificates": "\(own.set.count)", "from": "\(local == nil ? "configuration" : "local snapshot")",
            ])
            return own
        case .existing(let changes):
            // Only what changed since the snapshot, unless the fleet sent all of it.
            let set: CertificateSet
            do {
                var stored: [String: StoredCertificateEntry] = [:]
                for row in changes.rows { stored[row.name] = try row.stored() }
                if changes.whole {
                    set = try CertificateSet.restore(from: stored, context: context)
                } else {
                    set = try own.set.applyingStored(upserting: stored, deleting: changes.removed, context: context).set
                    for name in changes.removed { wanted[name] = nil }
                }
                for (name, entry) in stored { wanted[name] = entry.conf.acme == nil ? nil : entry.conf }
                // On-demand entries are in no set: the fleet's list of acme entries names them.
                for (name, conf) in changes.acmeEntries where conf.isOnDemand { wanted[name] = conf }
            } catch let error as CertificateSetError {
                throw GatewayStartupError(reasons: error.errors.map { "the fleet's set (\(fleet.database.location)): \($0)" })
            } catch let error as StoredRowUnreadable {
                throw GatewayStartupError(reasons: ["the fleet's set (\(fleet.database.location)): \(error.description)"])
            } catch {
                throw GatewayStartupError(reasons: ["the fleet's set (\(fleet.database.location)) cannot be read"])
            }
            fleet.keep(rows: changes.rows, removed: changes.removed, whole: changes.whole, position: changes.position,
                       committedAt: changes.committedAt, source: changes.source, acmeEntries: .replace(changes.acmeEntries))
            fleet.serving(changes.position)
            fleet.reached(fleetGeneration: changes.position.generation)
            acme.updated(by: .replace(wanted))
            logger.notice("serving the fleet's certificate set; the configuration's certificates: apply on the next reload", metadata: [
                "node": "\(fleet.node)", "database": "\(fleet.database.location)", "generation": "\(changes.position.generation)",
                "certificates": "\(set.count)", "committed_by": "\(changes.node)", "source": "\(changes.source.rawValue)",
                "loaded": "\(changes.whole ? "whole set" : "\(changes.rows.count) changed, \(changes.removed.count) removed since the local snapshot")",
            ])
            return Loaded(set: set, generation: changes.position.generation, committedAt: changes.committedAt, source: changes.source)
        }
    }
}
