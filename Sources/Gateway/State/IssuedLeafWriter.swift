import CertificateKit
import Dispatch
import Logging
import Synchronization

/// Writes the local CA's issued leaves to the state store behind the signing threads:
/// saves and drops are collected and written in one transaction per batch on a serial
/// queue, so a burst of thousands of signings costs a few commits, not one fsync each.
/// A leaf is a cache entry — it serves before it is stored; a failed write is logged and
/// the leaf is simply signed again after a restart.
final class IssuedLeafWriter: IssuedLeafPersistence {
    private struct Pending {
        var saved: [IssuedLeafKey: IssuedLeafRecord] = [:]
        var dropped: Set<IssuedLeafKey> = []
        var scheduled = false
    }

    private let state: StateStore
    private let logger: Logger
    private let pending = Mutex(Pending())
    private let queue = DispatchQueue(label: "certgate.state.issued-leaves")

    init(state: StateStore, logger: Logger) {
        self.state = state
        self.logger = logger
    }

    func saved(_ record: IssuedLeafRecord) {
        enqueue { pending in
            pending.dropped.remove(record.key)
            pending.saved[record.key] = record
        }
    }

    func dropped(_ keys: [IssuedLeafKey]) {
        enqueue { pending in
            for key in keys {
                pending.saved.removeValue(forKey: key)
                pending.dropped.insert(key)
            }
        }
    }

    /// Writes whatever is pending now and waits for it (at shutdown).
    func flush() {
        queue.sync { writePending() }
    }

    private func enqueue(_ change: (inout Pending) -> Void) {
        let schedule = pending.withLock { pending in
            change(&pending)
            defer { pending.scheduled = true }
            return !pending.scheduled
        }
        if schedule { queue.async { [self] in writePending() } }
    }

    private func writePending() {
        let batch = pending.withLock { pending in
            defer { pending = Pending() }
            return pending
        }
        do {
            try state.writeIssuedLeaves(saving: Array(batch.saved.values), dropping: Array(batch.dropped))
        } catch {
            logger.warning("issued leaves not stored; they are signed again after a restart", metadata: [
                "leaves": "\(batch.saved.count)", "error": "\(error)",
            ])
        }
    }
}
