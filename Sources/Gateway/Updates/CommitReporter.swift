import AsyncHTTPClient
import CertificateKit
import Foundation
import Logging
import Synchronization

/// What follows every certificate set the gateway serves — the first one, each committed
/// update whatever its source — and each run of the validity monitor: the last-update
/// facts, ``GatewayEvent``s, the set metrics, and a log line, a notification and an event
/// per validity change. Rejected updates and reloads are counted and logged here too, so
/// each outcome is reported in one place.
final class CommitReporter: Sendable {
    /// Events for `WatchEvents`.
    let events = EventHub()
    private let metrics: GatewayMetrics
    private let logger: Logger
    private let validityStates: ValidityStates
    private let httpClient: HTTPClient
    private let notifier: Mutex<ValidityNotifier>
    private let lastUpdate: Mutex<(time: Date, source: UpdateSource)>

    init(metrics: GatewayMetrics, notifiers: [NotifierConfiguration], httpClient: HTTPClient, logger: Logger) {
        self.lastUpdate = Mutex((Date(), .config))
        self.metrics = metrics
        self.logger = logger
        self.validityStates = ValidityStates(logger: logger)
        self.httpClient = httpClient
        self.notifier = Mutex(ValidityNotifier(notifiers: notifiers, client: httpClient, logger: logger))
    }

    /// When and by what the set last changed.
    var lastCommit: (time: Date, source: UpdateSource) { lastUpdate.withLock { $0 } }

    /// The set served at start: committed earlier (a stored set, with its time and source)
    /// or just now from the configuration. Metrics and entry warnings; its validity is
    /// checked once the listeners are bound (``checkValidity(set:now:)``).
    func serving(_ snapshot: CertificateSnapshot, committedAt time: Date, source: UpdateSource, now: Date) {
        lastUpdate.withLock { $0 = (time, source) }
        metrics.recordUpdate(source: .config, applied: true)
        metrics.recordSet(generation: snapshot.generation, count: snapshot.set.count)
        // Sorted are only the entries with warnings (sorting 100,000 names took a tenth of a second).
        for entry in snapshot.set.entries.values.filter({ !$0.warnings.isEmpty }).sorted(by: { $0.name < $1.name }) {
            for warning in entry.warnings { log(warning: CertificateEntryError(entry: entry.name, field: "", reason: warning), source: source) }
        }
    }

    /// A reload's notifier list takes effect for the set it commits.
    func replaceNotifiers(_ notifiers: [NotifierConfiguration]) {
        notifier.withLock { $0 = ValidityNotifier(notifiers: notifiers, client: httpClient, logger: logger) }
    }

    /// After a commit: facts, event, metrics, validity, and the update's warnings logged
    /// (see ``UpdateWarnings``).
    /// - Parameter committedBy: with `shared_state`, the node that committed it.
    func committed(
        _ snapshot: CertificateSnapshot, change: CertificateSetChange, warnings: [CertificateEntryError], source: UpdateSource,
        committedBy: String? = nil
    ) {
        let now = Date()
        lastUpdate.withLock { $0 = (now, source) }
        events.publish(.setChanged(.init(
            time: now, generation: snapshot.generation, source: source,
            added: change.added, changed: change.changed, removed: change.removed, node: committedBy)))
        metrics.recordUpdate(source: source, applied: true)
        metrics.recordSet(generation: snapshot.generation, count: change.set.count)
        let touched = (change.added + change.changed).compactMap { change.set.entries[$0] }
        for warning in warnings { log(warning: warning, source: source) }
        report(validityStates.update(entries: touched, removed: change.removed, set: change.set, now: now), set: change.set, now: now)
        var metadata: Logger.Metadata = [
            "source": "\(source.rawValue)", "generation": "\(snapshot.generation)", "added": "\(change.added.count)",
            "changed": "\(change.changed.count)", "removed": "\(change.removed.count)",
        ]
        if let committedBy { metadata["committed_by"] = "\(committedBy)" }
        logger.notice("certificate set committed", metadata: metadata)
    }

    /// An update or a reload that changed nothing (dry runs are not reported): counted
    /// once, and logged with every reason — one line per entry error or configuration
    /// error, its text as `certgate check` prints it and its place (entry and field, or
    /// file, key and line) as metadata, whatever the source. A state that cannot
    /// commit is logged as the server's own failure.
    func rejected(_ failure: ReloadFailure, source: UpdateSource, reload: Bool) {
        metrics.recordUpdate(source: source, applied: false)
        // A refused control update is the client's business (it has the reasons), so notice;
        // a refused reload is the operator's, who reads them here.
        let level: Logger.Level = reload ? .error : .notice
        let sourceLabel: Logger.Metadata.Value = "\(source.rawValue)"
        switch failure {
        case .update(.unavailable):
            logger.warning(reload
                ? "configuration reload not applied (shared state unreachable); the previous configuration keeps serving"
                : "certificate update not applied (shared state unreachable); nothing changed",
                metadata: ["source": sourceLabel, "reason": "\(failure)"])
        case .update(.persistence):
            logger.error(reload
                ? "configuration reload not applied; the previous configuration keeps serving"
                : "certificate update not committed; nothing changed",
                metadata: ["source": sourceLabel, "reason": "\(failure)"])
        case .update(.generationMismatch):
            logger.log(level: level, reload ? "configuration reload rejected; the previous configuration keeps serving" : "certificate update refused; nothing changed",
                       metadata: ["source": sourceLabel, "reason": "\(failure)"])
        case .update(.invalid(let errors)):
            logger.log(level: level, reload ? "configuration reload rejected; the previous configuration keeps serving" : "certificate update refused; nothing changed",
                       metadata: ["source": sourceLabel, "errors": "\(errors.count)"])
            for error in errors {
                var metadata: Logger.Metadata = ["source": sourceLabel, "entry": "\(error.entry)"]
                if !error.field.isEmpty { metadata["field"] = "\(error.field)" }
                logger.log(level: level, "\(error.description)", metadata: metadata)
            }
        case .configuration(let errors):
            logger.log(level: level, "configuration reload rejected; the previous configuration keeps serving",
                       metadata: ["source": sourceLabel, "errors": "\(errors.count)"])
            for error in errors {
                var metadata: Logger.Metadata = ["source": sourceLabel, "file": "\(error.file)"]
                if !error.key.isEmpty { metadata["key"] = "\(error.key)" }
                if let line = error.line { metadata["line"] = "\(line)" }
                logger.log(level: level, "\(error.description)", metadata: metadata)
            }
        }
    }

    /// The validity monitor's one step: gauges, a log line and a notification for each
    /// entry whose state changed.
    func checkValidity(set: CertificateSet, now: Date) {
        report(validityStates.update(set: set, now: now), set: set, now: now)
    }

    private func log(warning: CertificateEntryError, source: UpdateSource) {
        var metadata: Logger.Metadata = ["entry": "\(warning.entry)", "source": "\(source.rawValue)"]
        if !warning.field.isEmpty { metadata["field"] = "\(warning.field)" }
        logger.warning("\(warning.reason)", metadata: metadata)
    }

    /// A notification and an event per validity change.
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
            events.publish(.validityChanged(.init(
                time: now, entry: notification.entry, previousState: notification.previousState,
                state: notification.state, daysLeft: notification.daysLeft, notAfter: notification.notAfter)))
        }
    }
}
