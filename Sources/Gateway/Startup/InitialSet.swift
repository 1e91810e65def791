import CertificateKit
import CertificateKitNIO
import Foundation
import Logging

/// What the gateway serves when it starts: the stored set when the state holds one (the
/// configuration's `certificates:` then wait for the next reload), else the
/// configuration's, stored as generation 0; and the stored issued leaves of its CAs.
enum InitialSet {
    struct Loaded {
        var set: CertificateSet
        var generation: UInt64
        /// When and by what the set was committed; now and `config` for the configuration's.
        var committedAt: Date
        var source: UpdateSource
    }

    /// - Parameter acme: gives `acme` entries their stored certificates and learns which
    ///   entries want one.
    static func load(configuration: GatewayConfiguration, state: StateStore?, acme: ACMEManager, logger: Logger) throws(GatewayStartupError) -> Loaded {
        let context = configuration.servingBuildContext()
        let stored: StateStore.StoredSet?
        do {
            stored = try state?.load()
        } catch {
            throw GatewayStartupError(reasons: [error.description, "start with --reset-state to discard the stored state"])
        }
        if let state, let stored {
            let committedACMEEntries: [String: CertificateConf]
            do {
                committedACMEEntries = try state.acmeEntries()
            } catch {
                throw GatewayStartupError(reasons: [error.description, "start with --reset-state to discard the stored state"])
            }
            do {
                let set = try CertificateSet.restore(from: stored.entries, context: context)
                // The committed acme entries (pending ones included), the stored set's (a state
                // from before they were kept), and the file's that never got a certificate.
                var wanted = stored.entries.mapValues(\.conf).filter { $0.value.acme != nil }
                wanted.merge(committedACMEEntries) { _, committed in committed }
                for (name, conf) in configuration.certificates where ACMEEntries.isUnmaterialized(conf) && wanted[name] == nil {
                    wanted[name] = conf
                }
                acme.updated(by: .replace(wanted))
                logger.notice("serving the stored certificate set; the configuration's certificates: apply on the next reload (SIGHUP or certgate ctl reload)", metadata: [
                    "state": "\(state.path)", "generation": "\(stored.generation)", "certificates": "\(set.count)",
                    "committed_at": "\(stored.committedAt)", "source": "\(stored.source.rawValue)",
                ])
                return Loaded(set: set, generation: stored.generation, committedAt: stored.committedAt, source: stored.source)
            } catch {
                throw GatewayStartupError(reasons: error.errors.map { "stored set (\(state.path)): \($0)" }
                    + ["start with --reset-state to discard the stored state and serve the configuration's certificates:"])
            }
        }
        let change: CertificateSetChange
        do {
            change = try CertificateSet.build(from: acme.materialize(configuration.certificates).servable, context: context)
        } catch {
            throw GatewayStartupError(reasons: error.errors.map(\.description))
        }
        if let state {
            do {
                try state.commit(change, generation: 0, source: .config, acmeEntries: .replace(configuration.certificates))
            } catch {
                throw GatewayStartupError(reasons: [error.description])
            }
        }
        acme.updated(by: .replace(configuration.certificates))
        logger.notice("serving the configuration's certificates", metadata: [
            "certificates": "\(change.set.count)", "state": "\(state.map { "stored as generation 0 in \($0.path)" } ?? "none (not durable)")",
        ])
        return Loaded(set: change.set, generation: 0, committedAt: Date(), source: .config)
    }

    /// Puts the stored issued leaves of the set's CAs back into the cache; forgets the rest.
    static func restoreIssuedLeaves(
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
}

/// Why the gateway could not start: every reason, each naming its place.
public struct GatewayStartupError: Error, CustomStringConvertible {
    public let reasons: [String]
    public var description: String { reasons.joined(separator: "\n") }
}
