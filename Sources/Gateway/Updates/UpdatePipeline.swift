import CertificateKit
import CertificateKitNIO
import Foundation
import Logging
import Synchronization

/// The one way the certificate set and the running configuration change: control-plane
/// updates, and reloads of the configuration file (SIGHUP, `ctl reload`). Each runs alone
/// on the updater's queue (``CertificateUpdater/exclusively(_:)``), is reported by the
/// ``CommitReporter`` — committed or rejected, counted once — and changes everything it
/// changes or nothing.
final class UpdatePipeline: Sendable {
    /// What a reload puts in force besides the set (see ``ReloadPlan/LiveChange``).
    struct LiveTargets: Sendable {
        let listeners: ListenerGroup
        let issued: IssuedCertificateCache
        let maintenance: MaintenanceTimers
        let logLevel: LogLevelSwitch?
        let acme: ACMEManager
        /// Nil where no gateway serves (tests of the pipeline alone).
        var onDemand: OnDemandCertificates? = nil
    }

    let updater: CertificateUpdater
    let reporter: CommitReporter
    let configurationPath: String
    let targets: LiveTargets
    let logger: Logger
    private let running: Mutex<GatewayConfiguration>

    init(
        updater: CertificateUpdater, reporter: CommitReporter, configuration: GatewayConfiguration,
        configurationPath: String, targets: LiveTargets, logger: Logger
    ) {
        self.updater = updater
        self.reporter = reporter
        self.running = Mutex(configuration)
        self.configurationPath = configurationPath
        self.targets = targets
        self.logger = logger
    }

    /// The configuration in force: the one started with, or the last reload applied.
    var configuration: GatewayConfiguration { running.withLock { $0 } }

    /// One update of the set: from the control plane, or a certificate obtained by ACME.
    func update(_ request: CertificateUpdateRequest) async throws(CertificateUpdateFailure) -> CertificateUpdateOutcome {
        let reporter = self.reporter
        let acme = targets.acme
        let result = await updater.exclusively { transaction in
            Result { () throws(CertificateUpdateFailure) -> CertificateUpdateOutcome in
                do throws(CertificateUpdateFailure) {
                    var checked = request
                    let acmeErrors = try Self.withoutInvalidACMEEntries(&checked, issuers: self.configuration.acme, current: transaction.current.set)
                    var materialized = checked
                    materialized.change = Self.materialize(checked.change, acme: acme, current: transaction.current.set)
                    materialized.acmeEntries = checked.change
                    let unservedBefore = acme.materialize(acme.wantedEntries).pending
                    var outcome = try transaction.apply(materialized)
                    Self.count(unservedBefore: unservedBefore, after: acme.materialize(ACMEEntries.applying(checked.change, to: acme.wantedEntries)).pending, in: &outcome)
                    if !request.dryRun { acme.updated(by: checked.change) }
                    outcome.errors = (acmeErrors + outcome.errors).sorted { ($0.entry, $0.field) < ($1.entry, $1.field) }
                    return outcome
                } catch {
                    if !request.dryRun { reporter.rejected(.update(error), source: request.source, reload: false) }
                    throw error
                }
            }
        }
        return try result.get()
    }

    /// Serves what the fleet committed since this node's generation (with `shared_state`);
    /// a database that cannot be reached is the ``FleetMember``'s to report; a set that
    /// cannot be followed is logged here (the node keeps serving what it serves).
    func followFleet() async {
        let logger = self.logger
        let acme = targets.acme
        await updater.exclusively { transaction in
            do throws(CertificateUpdateFailure) {
                guard let followed = try transaction.followFleet() else { return }
                // Every node renews the acme entries the fleet serves (one node at a time per
                // name: the order lock) and serves its on-demand entries (in no set: the fleet's
                // list of acme entries names them). An entry still pending stays with the node
                // that committed it.
                let served = followed.snapshot.set.entries
                acme.updated(
                    by: .replace(followed.acmeEntries.filter { $0.value.isOnDemand || served[$0.key] != nil }), keepingPending: true)
            } catch {
                logger.error("the fleet's latest set cannot be served here; serving the last one followed", metadata: ["reason": "\(error.description)"])
            }
        }
    }

    /// Counts the acme entries that are in no set — pending ones, on-demand ones — as the
    /// set's entries are counted: added, changed (their configuration), removed.
    static func count(unservedBefore before: [String: CertificateConf], after: [String: CertificateConf], in outcome: inout CertificateUpdateOutcome) {
        let counted = Set(outcome.added + outcome.changed + outcome.removed)
        let added = after.keys.filter { before[$0] == nil && !counted.contains($0) }
        let changed = after.keys.filter { name in before[name].map { $0 != after[name] } ?? false && !counted.contains(name) }
        let removed = before.keys.filter { after[$0] == nil && !counted.contains($0) }
        guard !added.isEmpty || !changed.isEmpty || !removed.isEmpty else { return }
        outcome.added = (outcome.added + added).sorted()
        outcome.changed = (outcome.changed + changed).sorted()
        outcome.removed = (outcome.removed + removed).sorted()
    }

    /// Checks the entries that name an ACME CA against the `acme:` section in force (a CA
    /// that exists, DNS names, a wildcard only with dns-01), as `certgate check` does for the
    /// file. Under ``CertificateUpdateRequest/Policy/reject`` any problem rejects the update;
    /// under `keepLastGood` the entry keeps its current version (or stays out) and the
    /// problems are returned for the reply.
    static func withoutInvalidACMEEntries(
        _ request: inout CertificateUpdateRequest, issuers: [String: ACMEIssuerConfiguration], current: CertificateSet
    ) throws(CertificateUpdateFailure) -> [CertificateEntryError] {
        let confs: [String: CertificateConf]
        switch request.change {
        case .replace(let all): confs = all
        case .batch(let upserts, _): confs = upserts
        }
        var errors: [CertificateEntryError] = []
        var invalid: Set<String> = []
        for (name, conf) in confs where conf.acme != nil {
            // A pending entry is in no set, so the set's own name check never sees it.
            if let reason = CertificateSet.invalidNameReason(name) {
                errors.append(CertificateEntryError(entry: QuotedValue.shown(name, limit: 253), field: "name", reason: reason))
                invalid.insert(name)
                continue
            }
            for problem in ACMERules.entryProblems(conf, issuers: issuers) {
                errors.append(CertificateEntryError(entry: name, field: problem.path.joined(separator: "."), reason: problem.reason))
                invalid.insert(name)
            }
        }
        guard !errors.isEmpty else { return [] }
        errors.sort { ($0.entry, $0.field) < ($1.entry, $1.field) }
        guard request.policy == .keepLastGood else { throw .invalid(errors) }
        switch request.change {
        case .replace(var all):
            for name in invalid { all[name] = current.entries[name]?.conf }
            request.change = .replace(all)
        case .batch(var upserts, let deletions):
            for name in invalid { upserts[name] = nil }
            request.change = .batch(upserts: upserts, deletions: deletions)
        }
        return errors
    }

    /// The change with ACME entries given their obtained certificates; one with none yet is
    /// left out (a batch that upserts it removes what held its name).
    static func materialize(_ change: CertificateUpdateRequest.Change, acme: ACMEManager, current: CertificateSet) -> CertificateUpdateRequest.Change {
        switch change {
        case .replace(let confs):
            return .replace(acme.materialize(confs).servable)
        case .batch(let upserts, let deletions):
            let (servable, pending) = acme.materialize(upserts)
            return .batch(upserts: servable, deletions: deletions + pending.keys.filter { current.entries[$0] != nil }.sorted())
        }
    }

    /// Re-reads the configuration file and applies it whole — certificates (validated
    /// whole, unchanged entries reused) and every section the ``ReloadPlan`` replaces live —
    /// or applies nothing and reports every reason. Open connections are not touched.
    func reload(source: UpdateSource) async -> Result<CertificateUpdateOutcome, ReloadFailure> {
        await updater.exclusively { [self] transaction in
            let result = reloadAlone(source: source, transaction: transaction)
            switch result {
            case .success(let outcome):
                logger.notice("configuration reloaded", metadata: [
                    "generation": "\(outcome.generation)", "added": "\(outcome.added.count)",
                    "changed": "\(outcome.changed.count)", "removed": "\(outcome.removed.count)",
                ])
            case .failure(let failure):
                reporter.rejected(failure, source: source, reload: true)
            }
            // The file's text, its YAML nodes and every re-read certificate are garbage now.
            FreedMemory.release()
            return result
        }
    }

    /// Loads and checks the file, plans the reload, prepares what can fail (listeners' TLS
    /// contexts), commits the set through the transaction and, only once it has committed,
    /// puts the plan's live changes in force.
    private func reloadAlone(source: UpdateSource, transaction: CertificateUpdater.Transaction) -> Result<CertificateUpdateOutcome, ReloadFailure> {
        let next: GatewayConfiguration
        do {
            next = try GatewayConfiguration.load(path: configurationPath)
        } catch {
            return .failure(.configuration(error.errors))
        }
        do {
            try MissingCertificateFiles.create(for: next, logger: logger)
        } catch {
            return .failure(.update(.invalid([CertificateEntryError(entry: error.entry, field: "create_if_missing", reason: error.reason)])))
        }
        let plan = ReloadPlan(running: configuration, next: next)
        let prepared: ListenerGroup.PreparedSettings
        do {
            prepared = try targets.listeners.prepare(plan.live.compactMap { change in
                if case .listener(let name) = change { return name }
                return nil
            }, from: next.listeners, file: configurationPath)
        } catch {
            return .failure(.configuration([error]))
        }
        // Nothing above changed anything. The set commits (durably) first; the rest follows it.
        var outcome: CertificateUpdateOutcome
        let unservedBefore = targets.acme.materialize(targets.acme.wantedEntries).pending
        do {
            outcome = try transaction.apply(
                {
                    var request = CertificateUpdateRequest(change: .replace(targets.acme.materialize(next.certificates).servable), source: source)
                    request.acmeEntries = .replace(next.certificates)
                    return request
                }(),
                context: next.servingBuildContext()
            ) { snapshot, _ in
                apply(plan, next: Self.sharingEntries(next, of: snapshot.set), prepared: prepared)
            }
            Self.count(unservedBefore: unservedBefore, after: targets.acme.materialize(next.certificates).pending, in: &outcome)
            targets.acme.updated(by: .replace(next.certificates))
        } catch {
            return .failure(.update(error))
        }
        for restart in plan.restartNeeded {
            logger.warning("change needs a restart; the running value stays until then", metadata: [
                "section": "\(restart.section.rawValue)", "change": "\(restart.change)",
            ])
        }
        return .success(outcome)
    }

    /// `configuration` with each entry the set serves unchanged given the set's own copy of
    /// it: the set keeps the entries a reload did not change (and their configurations, as
    /// first read), so without this the running configuration would hold a second copy of
    /// every entry's text — at 100,000 entries 70 MB more after the first reload.
    static func sharingEntries(_ configuration: GatewayConfiguration, of set: CertificateSet) -> GatewayConfiguration {
        var shared = configuration
        for (name, conf) in configuration.certificates {
            if let kept = set.entries[name]?.conf, kept == conf { shared.certificates[name] = kept }
        }
        return shared
    }

    /// The plan's live changes, in its order; runs inside the transaction, right after the
    /// swap (so the set's commit report already sees the new notifiers).
    private func apply(_ plan: ReloadPlan, next: GatewayConfiguration, prepared: ListenerGroup.PreparedSettings) {
        for change in plan.live {
            switch change {
            case .routes:
                targets.listeners.replaceRoutes(RouteTable(next.routes))
            case .listener:
                break  // all prepared listeners at once, below
            case .logLevel(let from, let to):
                guard let logLevel = targets.logLevel else { continue }
                // Told at whichever of the two levels is the more verbose.
                if to < from { logLevel.level = to }
                logger.notice("log level changed", metadata: ["from": "\(from)", "to": "\(to)"])
                logLevel.level = to
            case .shutdownTimeout:
                break  // read from the running configuration when the gateway stops
            case .issuing:
                let evicted = targets.issued.replacePolicy(next.issuing.policy)
                logger.notice("issuing limits changed", metadata: [
                    "cache_size": "\(next.issuing.cacheSize)", "max_concurrent": "\(next.issuing.maxConcurrent)", "max_queued": "\(next.issuing.maxQueued)",
                    "rate_per_second": "\(next.issuing.ratePerSecond)", "burst": "\(next.issuing.burst)",
                    "idle_timeout": "\(next.issuing.idleTimeout)", "evicted": "\(evicted.count)",
                ])
            case .validityInterval:
                targets.maintenance.rescheduleValidity(every: next.validity.interval.duration)
                logger.notice("validity interval changed", metadata: ["interval": "\(next.validity.interval)"])
            case .validityNotifiers:
                reporter.replaceNotifiers(next.validity.notify)
            case .acmeIssuers:
                targets.acme.replaceIssuers(next.acme)
            case .onDemand:
                targets.onDemand?.replaceConfiguration(next.onDemand)
                logger.notice("on-demand limits changed", metadata: [
                    "handshake_wait": "\(next.onDemand.handshakeWait)", "max_concurrent": "\(next.onDemand.maxConcurrent)",
                    "orders_per_minute": "\(next.onDemand.ordersPerMinute)", "burst": "\(next.onDemand.burst)",
                    "per_client_per_hour": "\(next.onDemand.perClientPerHour)", "max_certificates": "\(next.onDemand.maxCertificates)",
                ])
            }
        }
        targets.listeners.install(prepared)
        // Sections that need a restart keep their running value; the rest is the new file's.
        running.withLock { running in
            var kept = next
            kept.listeners = running.listeners.map { current in
                guard var updated = next.listeners.first(where: { $0.name == current.name }) else { return current }
                updated.listen = current.listen
                return updated
            }
            kept.stateDirectory = running.stateDirectory
            kept.control = running.control
            kept.sharedState = running.sharedState
            if kept.metrics?.listen != running.metrics?.listen { kept.metrics = running.metrics }
            running = kept
        }
    }
}
