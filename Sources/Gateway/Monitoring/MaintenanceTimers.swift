import CertificateKit
import Foundation
import NIOCore
import Synchronization

/// The gateway's periodic work, on its event loops: every minute, issued leaves that
/// expired, idled out, or belong to a CA no longer in the set are dropped; every
/// `validity.interval`, the validity monitor looks at every entry (a reload reschedules it).
final class MaintenanceTimers: Sendable {
    private let group: any EventLoopGroup
    private let store: CertificateKit.CertificateStore
    private let issued: IssuedCertificateCache
    private let reporter: CommitReporter
    private let sweeper = Mutex<RepeatedTask?>(nil)
    private let validity = Mutex<RepeatedTask?>(nil)

    init(group: any EventLoopGroup, store: CertificateKit.CertificateStore, issued: IssuedCertificateCache, reporter: CommitReporter) {
        self.group = group
        self.store = store
        self.issued = issued
        self.reporter = reporter
    }

    /// Starts both timers (the validity monitor's first run is at start, by the reporter).
    func start(validityInterval: Duration) {
        let (store, issued) = (self.store, self.issued)
        let task = group.next().scheduleRepeatedTask(initialDelay: .minutes(1), delay: .minutes(1)) { _ in
            let authorities = Set(store.current.set.entries.values.filter { $0.kind == .issuer }.map(\.fingerprint))
            issued.sweep(now: Date(), currentAuthorities: authorities)
        }
        sweeper.withLock { $0?.cancel(); $0 = task }
        rescheduleValidity(every: validityInterval)
    }

    /// The validity monitor from now on runs every `interval` (its next run one interval
    /// from now).
    func rescheduleValidity(every interval: Duration) {
        let (store, reporter) = (self.store, self.reporter)
        let task = group.next().scheduleRepeatedTask(initialDelay: TimeAmount(interval), delay: TimeAmount(interval)) { _ in
            reporter.checkValidity(set: store.current.set, now: Date())
        }
        validity.withLock { $0?.cancel(); $0 = task }
    }

    func stop() {
        sweeper.withLock { $0?.cancel(); $0 = nil }
        validity.withLock { $0?.cancel(); $0 = nil }
    }
}
