import AsyncHTTPClient
import CertificateKit
import ControlProtocol
import Foundation
import Logging
import SwiftProtobuf
import Synchronization

/// What follows a committed certificate set, whatever its source, and each run of the
/// validity monitor: the last-update facts, `WatchEvents` events, the set metrics, and a
/// log line, a notification and an event per validity change.
final class CommitReporter: Sendable {
    /// Control-plane events (set changes, validity changes) for `WatchEvents`.
    let events = EventHub()
    private let metrics: GatewayMetrics
    private let logger: Logger
    private let validityStates: ValidityStates
    private let httpClient: HTTPClient
    private let notifier: Mutex<ValidityNotifier>
    private let lastUpdate: Mutex<(time: Date, source: GatewayMetrics.UpdateSource)>

    init(metrics: GatewayMetrics, notifiers: [NotifierConfiguration], httpClient: HTTPClient, logger: Logger) {
        self.lastUpdate = Mutex((Date(), .config))
        self.metrics = metrics
        self.logger = logger
        self.validityStates = ValidityStates(logger: logger)
        self.httpClient = httpClient
        self.notifier = Mutex(ValidityNotifier(notifiers: notifiers, client: httpClient, logger: logger))
    }

    /// When and by what the set last changed.
    var lastCommit: (time: Date, source: GatewayMetrics.UpdateSource) { lastUpdate.withLock { $0 } }

    /// The set served at start was committed earlier (a stored set): its time and source.
    func startedFrom(committedAt time: Date, source: GatewayMetrics.UpdateSource) {
        lastUpdate.withLock { $0 = (time, source) }
    }

    /// A reload's notifier list takes effect for the set it commits.
    func replaceNotifiers(_ notifiers: [NotifierConfiguration]) {
        notifier.withLock { $0 = ValidityNotifier(notifiers: notifiers, client: httpClient, logger: logger) }
    }

    /// After a commit: facts, event, metrics, validity, and the update's warnings logged
    /// (see ``UpdateWarnings``).
    func committed(_ snapshot: CertificateSnapshot, change: CertificateSetChange, warnings: [CertificateEntryError], source: GatewayMetrics.UpdateSource) {
        let now = Date()
        lastUpdate.withLock { $0 = (now, source) }
        events.publish(.with { event in
            event.time = Google_Protobuf_Timestamp(date: now)
            event.setChanged = .with {
                $0.generation = snapshot.generation
                $0.source = source.rawValue
                $0.added = change.added
                $0.changed = change.changed
                $0.removed = change.removed
            }
        })
        metrics.recordUpdate(source: source, applied: true)
        metrics.recordSet(generation: snapshot.generation, count: change.set.count)
        let touched = (change.added + change.changed).compactMap { change.set.entries[$0] }
        for warning in warnings {
            var metadata: Logger.Metadata = ["entry": "\(warning.entry)", "source": "\(source.rawValue)"]
            if !warning.field.isEmpty { metadata["field"] = "\(warning.field)" }
            logger.warning("\(warning.reason)", metadata: metadata)
        }
        report(validityStates.update(entries: touched, removed: change.removed, set: change.set, now: now), set: change.set, now: now)
        logger.notice("certificate set committed", metadata: [
            "source": "\(source.rawValue)", "generation": "\(snapshot.generation)", "added": "\(change.added.count)",
            "changed": "\(change.changed.count)", "removed": "\(change.removed.count)",
        ])
    }

    /// An update that changed nothing: counted; a state that cannot commit is logged as the
    /// server's own failure, a refused control update with its reasons (a reload logs its own).
    func rejected(_ failure: CertificateUpdateFailure, source: GatewayMetrics.UpdateSource) {
        metrics.recordUpdate(source: source, applied: false)
        if case .persistence = failure {
            logger.error("certificate update not committed; nothing changed", metadata: [
                "source": "\(source.rawValue)", "reason": "\(failure)",
            ])
        } else if source == .control {
            logger.notice("certificate update refused; nothing changed", metadata: ["reason": "\(failure)"])
        }
    }

    /// The validity monitor's one step: gauges, a log line and a notification for each
    /// entry whose state changed.
    func checkValidity(set: CertificateSet, now: Date) {
        report(validityStates.update(set: set, now: now), set: set, now: now)
    }

    /// A notification and a `WatchEvents` event per validity change.
    private func report(_ changes: [ValidityStates.StateChange], set: CertificateSet, now: Date) {
        let host = ProcessInfo.processInfo.hostName
        let notifications = changes.compactMap { change -> ValidityNotification? in
            guard let entry = set.entries[change.entry] else { return nil }
            let validity = entry.validity(at: now)
            return ValidityNotification(
                entry: entry.name, names: entry.patterns.map(\.description), notAfter: validity.notAfter,
                daysLeft: validity.daysLeft, state: change.to, previousState: change.from, host: host)
        }
        notifier.withLock { $0 }.notify(notifications)
        for notification in notifications {
            events.publish(.with { event in
                event.time = Google_Protobuf_Timestamp(date: now)
                event.validityChanged = .with {
                    $0.entry = notification.entry
                    $0.previousState = notification.previousState?.rawValue ?? ""
                    $0.state = notification.state.rawValue
                    $0.daysLeft = Int32(clamping: notification.daysLeft)
                    $0.notAfter = Google_Protobuf_Timestamp(date: notification.notAfter)
                }
            })
        }
    }
}
