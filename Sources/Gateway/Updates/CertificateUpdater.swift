import CertificateKit
import CertificateKitNIO
import Foundation
import Dispatch

/// One change to the certificate set, from any source.
public struct CertificateUpdateRequest: Sendable {
    public enum Change: Sendable {
        /// The set becomes exactly these entries.
        case replace([String: CertificateConf])
        /// These entries are upserted and these names deleted, as one batch.
        case batch(upserts: [String: CertificateConf], deletions: [String])
    }

    public enum Policy: Sendable {
        /// Any invalid entry rejects the whole update.
        case reject
        /// Valid entries apply; an invalid entry keeps its previous version (or stays out).
        case keepLastGood
    }

    public var change: Change
    /// Applies only if the current generation is this one (compare-and-swap).
    public var expectedGeneration: UInt64?
    /// Validates and reports, changes nothing.
    public var dryRun: Bool
    public var policy: Policy
    public var source: UpdateSource
    /// The update as sent, before `acme` entries got their obtained certificates (or were
    /// left out, pending): the state stores its `acme` entries with the commit, so a restart
    /// knows every entry that wants a certificate — a pending one too. Nil: no change to them.
    public var acmeEntries: Change?

    public init(change: Change, expectedGeneration: UInt64? = nil, dryRun: Bool = false, policy: Policy = .reject, source: UpdateSource) {
        self.change = change
        self.expectedGeneration = expectedGeneration
        self.dryRun = dryRun
        self.policy = policy
        self.source = source
    }
}

/// What an update did (or, for a dry run, would do).
public struct CertificateUpdateOutcome: Sendable {
    public var generation: UInt64
    public var added: [String]
    public var changed: [String]
    public var removed: [String]
    /// Under `keepLastGood`: the entries that kept their previous version, with why.
    public var errors: [CertificateEntryError]
    /// What the update leaves that clients will feel (see ``UpdateWarnings``).
    public var warnings: [CertificateEntryError]
    public var dryRun: Bool
}

/// Why an update changed nothing.
public enum CertificateUpdateFailure: Error, Sendable, CustomStringConvertible {
    case invalid([CertificateEntryError])
    case generationMismatch(expected: UInt64, current: UInt64)
    case persistence(String)
    /// The fleet's shared state cannot be reached (or cannot be followed): nothing changed.
    case unavailable(String)

    public var description: String {
        switch self {
        case .invalid(let errors): return errors.map(\.description).joined(separator: "\n")
        case .generationMismatch(let expected, let current): return "expected generation \(expected), the current one is \(current)"
        case .persistence(let reason): return "could not persist the update; nothing changed: \(reason)"
        case .unavailable(let reason): return "the update was not applied; nothing changed: \(reason)"
        }
    }
}

/// The update transaction: validate every entry → persist → swap → report. Whatever its
/// source (control plane, SIGHUP, `ctl reload`), every update runs on this updater's one
/// serial queue — the only thing that orders updates — off Swift's cooperative pool; a
/// failure at any step changes nothing. The store it is given must be swapped through it alone.
public final class CertificateUpdater: Sendable {
    /// Makes the update durable before it is swapped in; throwing aborts it.
    /// `acmeEntries`: the request's ``CertificateUpdateRequest/acmeEntries``, stored in the same commit.
    public typealias Persist = @Sendable (
        _ change: CertificateSetChange, _ generation: UInt64, _ source: UpdateSource, _ acmeEntries: CertificateUpdateRequest.Change?
    ) throws -> Void
    /// Runs right after a swap, still alone on the queue, so reports follow generation order.
    /// `committedBy`: with `shared_state`, the node that committed it (this one or another).
    public typealias OnCommit = @Sendable (
        CertificateSnapshot, CertificateSetChange, _ warnings: [CertificateEntryError], UpdateSource, _ committedBy: String?
    ) -> Void

    private let store: CertificateKit.CertificateStore
    private let context: @Sendable () -> CertificateBuildContext
    private let persist: Persist
    private let onCommit: OnCommit
    /// With `shared_state`: where every commit happens and what this node follows.
    let fleet: FleetMember?
    /// Updates wait in line here, not as blocked threads, however many clients send them.
    private let queue = DispatchQueue(label: "certgate.updates")

    public init(
        store: CertificateKit.CertificateStore,
        context: @escaping @Sendable () -> CertificateBuildContext,
        persist: @escaping Persist = { _, _, _, _ in },
        onCommit: @escaping OnCommit = { _, _, _, _, _ in },
        fleet: FleetMember? = nil
    ) {
        self.store = store
        self.context = context
        self.persist = persist
        self.onCommit = onCommit
        self.fleet = fleet
    }

    /// Runs one update alone, with the usual build context.
    public func apply(_ request: CertificateUpdateRequest) async throws(CertificateUpdateFailure) -> CertificateUpdateOutcome {
        let result = await exclusively { transaction in
            Result { () throws(CertificateUpdateFailure) -> CertificateUpdateOutcome in try transaction.apply(request) }
        }
        return try result.get()
    }

    /// Runs `body` on the update queue: no other update starts before it returns. A reload
    /// holds the queue from reading its file to its last step, so what it compares against
    /// is what it replaces.
    public func exclusively<T: Sendable>(_ body: @escaping @Sendable (Transaction) -> T) async -> T {
        await runBlocking(on: queue) { body(Transaction(updater: self)) }
    }

    /// The updater while one caller holds its queue (see ``exclusively(_:)``); valid only
    /// inside that call.
    public struct Transaction {
        fileprivate let updater: CertificateUpdater

        /// The snapshot being served; no update can replace it while the transaction runs.
        public var current: CertificateSnapshot { updater.store.current }

        /// Runs one update. `context` replaces the usual build context (a reload builds with
        /// the configuration it is applying); `whenCommitted` runs right after the swap,
        /// before the commit is reported (a reload installs its routes there).
        public func apply(
            _ request: CertificateUpdateRequest,
            context: CertificateBuildContext? = nil,
            whenCommitted: (CertificateSnapshot, CertificateSetChange) -> Void = { _, _ in }
        ) throws(CertificateUpdateFailure) -> CertificateUpdateOutcome {
            dispatchPrecondition(condition: .onQueue(updater.queue))
            return try updater.applyAlone(request, context: context ?? updater.context(), whenCommitted: whenCommitted)
        }

        /// Serves what the fleet committed since this node's generation, if anything (see
        /// ``FleetMember``); returns the snapshot installed, nil when there was nothing new
        /// or the database cannot be reached (which the member reports). Throws when the
        /// fleet's set cannot be built here: the node keeps serving what it serves.
        @discardableResult
        public func followFleet() throws(CertificateUpdateFailure) -> FollowedChange? {
            dispatchPrecondition(condition: .onQueue(updater.queue))
            guard let fleet = updater.fleet else { return nil }
            let changes: FleetChanges?
            do {
                changes = try fleet.database.changes(after: fleet.position)
            } catch {
                fleet.unreachable(error)
                return nil
            }
            // No changes: the node is at the fleet's generation.
            fleet.reached(fleetGeneration: changes?.position.generation ?? fleet.position?.generation)
            guard let changes else { return nil }
            return try updater.follow(changes, context: updater.context())
        }
    }

    /// What following the fleet installed: the snapshot, the change against the set it
    /// replaced, and whether the fleet's whole set was loaded (the node was too far behind).
    public struct FollowedChange: Sendable {
        public let snapshot: CertificateSnapshot
        public let change: CertificateSetChange
        public let whole: Bool
        /// Every acme entry of the fleet as sent (pending and on-demand ones included).
        public let acmeEntries: [String: CertificateConf]
    }

    /// Installs what other nodes of the fleet committed: the stored rows (never files),
    /// as one snapshot at the fleet's generation; reported like any commit.
    private func follow(_ changes: FleetChanges, context: CertificateBuildContext) throws(CertificateUpdateFailure) -> FollowedChange {
        let current = store.current
        var stored: [String: StoredCertificateEntry] = [:]
        stored.reserveCapacity(changes.rows.count)
        do {
            for row in changes.rows { stored[row.name] = try row.stored() }
        } catch {
            throw .unavailable("cannot follow \(changes.position): \(error.description)")
        }
        let deletions = changes.whole ? current.set.entries.keys.filter { stored[$0] == nil } : changes.removed
        let change: CertificateSetChange
        do {
            change = try current.set.applyingStored(upserting: stored, deleting: deletions, context: context)
        } catch {
            throw .unavailable("cannot follow \(changes.position): " + error.errors.map(\.description).joined(separator: "; "))
        }
        let snapshot = store.install(change.set, generation: changes.position.generation, committedAt: changes.committedAt)
        fleet?.followed(changes)
        onCommit(snapshot, change, UpdateWarnings.of(change, previous: current.set), changes.source, changes.node)
        return FollowedChange(snapshot: snapshot, change: change, whole: changes.whole, acmeEntries: changes.acmeEntries)
    }

    /// The transaction itself; runs on `queue`.
    private func applyAlone(
        _ request: CertificateUpdateRequest, context: CertificateBuildContext,
        whenCommitted: (CertificateSnapshot, CertificateSetChange) -> Void
    ) throws(CertificateUpdateFailure) -> CertificateUpdateOutcome {
        if let fleet, !request.dryRun {
            return try applyInFleet(request, fleet: fleet, context: context, whenCommitted: whenCommitted)
        }
        let current = store.current
        let prepared = try prepare(request, current: current, context: context)
        if request.dryRun {
            return CertificateUpdateOutcome(
                generation: current.generation, added: prepared.change.added, changed: prepared.change.changed,
                removed: prepared.change.removed, errors: prepared.kept, warnings: prepared.warnings, dryRun: true)
        }
        let generation = current.generation + 1
        do {
            try persist(prepared.change, generation, request.source, request.acmeEntries)
        } catch let error as StateStoreError {
            throw .persistence(error.description)
        } catch {
            throw .persistence("the state refused the commit")
        }
        // Every swap of this store goes through here, one at a time: the compare cannot fail
        // unless something swaps the store behind the updater's back, which would leave the
        // state one generation ahead of what is served — a defect, not an input error.
        guard let snapshot = store.swap(to: prepared.change.set, expectedGeneration: current.generation) else {
            preconditionFailure("the certificate store was swapped outside CertificateUpdater (expected generation \(current.generation), found \(store.current.generation))")
        }
        return finish(request, prepared, snapshot: snapshot, whenCommitted: whenCommitted)
    }

    /// The same transaction on the fleet's database: the fleet's write lock first; what other
    /// nodes committed meanwhile is followed; the update is checked against that (its
    /// expected generation too, fleet-wide) and committed there before it is served here.
    private func applyInFleet(
        _ request: CertificateUpdateRequest, fleet: FleetMember, context: CertificateBuildContext,
        whenCommitted: (CertificateSnapshot, CertificateSetChange) -> Void
    ) throws(CertificateUpdateFailure) -> CertificateUpdateOutcome {
        let committedAt = Date()
        let result: Result<(Prepared, FleetCommit)?, CertificateUpdateFailure>
        do {
            result = try fleet.database.write(after: fleet.position) { behind, writer in
                do {
                    if let behind { _ = try follow(behind, context: context) }
                    let current = store.current
                    let prepared = try prepare(request, current: current, context: context)
                    // A certificate obtained by ACME that another node committed meanwhile
                    // (this node adopted it before following that commit): nothing to commit,
                    // and no generation spent on it.
                    if request.source == .acme, prepared.change.added.isEmpty, prepared.change.changed.isEmpty, prepared.change.removed.isEmpty {
                        return .success(nil)
                    }
                    let generation = current.generation + 1
                    let rows = try FleetCommit.rows(of: prepared.change)
                    let position = try writer.commit(
                        rows: rows, removed: prepared.change.removed, generation: generation, source: request.source, committedAt: committedAt,
                        acmeEntries: request.acmeEntries)
                    return .success((prepared, FleetCommit(position: position, rows: rows)))
                } catch let failure as CertificateUpdateFailure {
                    return .failure(failure)
                }
            }
        } catch {
            fleet.unreachable(error)
            throw .unavailable(error.description)
        }
        guard let (prepared, commit) = try result.get() else {
            let current = store.current
            return CertificateUpdateOutcome(
                generation: current.generation, added: [], changed: [], removed: [], errors: [], warnings: [], dryRun: false)
        }
        fleet.reached(fleetGeneration: commit.position.generation)
        let snapshot = store.install(prepared.change.set, generation: commit.position.generation, committedAt: committedAt)
        fleet.committed(commit, change: prepared.change, source: request.source, committedAt: committedAt, acmeEntries: request.acmeEntries)
        return finish(request, prepared, snapshot: snapshot, whenCommitted: whenCommitted)
    }

    /// A validated update, not yet committed.
    private struct Prepared {
        var change: CertificateSetChange
        var kept: [CertificateEntryError]
        var warnings: [CertificateEntryError]
    }

    /// Checks the expected generation and validates the update against `current`.
    private func prepare(
        _ request: CertificateUpdateRequest, current: CertificateSnapshot, context: CertificateBuildContext
    ) throws(CertificateUpdateFailure) -> Prepared {
        if let expected = request.expectedGeneration, expected != current.generation {
            throw .generationMismatch(expected: expected, current: current.generation)
        }
        var (upserts, deletions) = Self.batch(for: request.change, current: current.set)
        var kept: [CertificateEntryError] = []
        var change: CertificateSetChange
        do {
            change = try current.set.updating(upserting: upserts, deleting: deletions, context: context)
        } catch {
            guard request.policy == .keepLastGood else { throw .invalid(error.errors) }
            // Leave every entry that failed as it was, and try the rest once more.
            let failed = Set(error.errors.map(\.entry))
            kept = error.errors
            upserts = upserts.filter { !failed.contains($0.key) }
            deletions = deletions.filter { !failed.contains($0) }
            do {
                change = try current.set.updating(upserting: upserts, deleting: deletions, context: context)
            } catch {
                throw .invalid(kept + error.errors)
            }
        }
        return Prepared(change: change, kept: kept, warnings: UpdateWarnings.of(change, previous: current.set))
    }

    private func finish(
        _ request: CertificateUpdateRequest, _ prepared: Prepared, snapshot: CertificateSnapshot,
        whenCommitted: (CertificateSnapshot, CertificateSetChange) -> Void
    ) -> CertificateUpdateOutcome {
        whenCommitted(snapshot, prepared.change)
        onCommit(snapshot, prepared.change, prepared.warnings, request.source, fleet?.node)
        return CertificateUpdateOutcome(
            generation: snapshot.generation, added: prepared.change.added, changed: prepared.change.changed,
            removed: prepared.change.removed, errors: prepared.kept, warnings: prepared.warnings, dryRun: false)
    }

    /// A replacement as a batch against the current set: upsert everything given, delete the rest.
    private static func batch(for change: CertificateUpdateRequest.Change, current: CertificateSet) -> ([String: CertificateConf], [String]) {
        switch change {
        case .replace(let confs):
            return (confs, current.entries.keys.filter { confs[$0] == nil })
        case .batch(let upserts, let deletions):
            return (upserts, deletions)
        }
    }
}
