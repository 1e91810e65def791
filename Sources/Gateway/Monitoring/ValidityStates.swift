import CertificateKit
import Foundation
import Logging
import Synchronization

/// The last known validity state (ok, expiring, expired, not yet valid) of every entry,
/// so that a change is logged — and notified — once, when it happens, not on every check.
final class ValidityStates: Sendable {
    typealias StateChange = (entry: String, from: CertificateValidity.State?, to: CertificateValidity.State)

    private let logger: Logger
    private let states = Mutex<[String: CertificateValidity.State]>([:])

    init(logger: Logger) {
        self.logger = logger
    }

    /// The periodic check: every entry of `set` at `now`; entries no longer in it are
    /// forgotten. Returns the entries whose state changed.
    @discardableResult
    func update(set: CertificateSet, now: Date) -> [StateChange] {
        let changes = states.withLock { current in
            for name in current.keys where set.entries[name] == nil { current[name] = nil }
            // In the set's order; the (few) changes are sorted by name for the log.
            return refresh(set.entries.values, in: &current, now: now).sorted { $0.entry < $1.entry }
        }
        log(changes, set: set, now: now)
        return changes
    }

    /// After an update: only the entries it added or changed (`entries`) and removed, so
    /// an update of one entry costs O(1) here whatever the set's size.
    @discardableResult
    func update(entries: [CertificateEntry], removed: [String], set: CertificateSet, now: Date) -> [StateChange] {
        let changes = states.withLock { current in
            for name in removed { current[name] = nil }
            return refresh(entries.sorted { $0.name < $1.name }, in: &current, now: now)
        }
        log(changes, set: set, now: now)
        return changes
    }

    private func refresh(_ entries: some Sequence<CertificateEntry>, in current: inout [String: CertificateValidity.State], now: Date) -> [StateChange] {
        var changes: [StateChange] = []
        for entry in entries {
            let state = entry.validity(at: now).state
            let previous = current.updateValue(state, forKey: entry.name)
            // A change worth telling: a new state, except a new entry that is simply ok.
            if previous != state && !(previous == nil && state == .ok) {
                changes.append((entry.name, previous, state))
            }
        }
        return changes
    }

    private func log(_ changes: [StateChange], set: CertificateSet, now: Date) {
        for (entry, from, to) in changes {
            let level: Logger.Level = to == .ok ? .notice : .warning
            logger.log(level: level, "certificate validity changed", metadata: [
                "entry": "\(entry)", "from": "\(from?.rawValue ?? "-")", "state": "\(to.rawValue)",
                "days_left": "\(set.entries[entry]?.validity(at: now).daysLeft ?? 0)",
            ])
        }
    }
}
