import CertificateKit
import Foundation
import Logging
import Prometheus
import Synchronization

/// The per-entry validity series of the contract, kept equal to the current set:
/// `certgate_certificate_not_after_timestamp_seconds{name}`, `…_not_before_…{name}` and
/// `certgate_certificate_expiring{name}` (1 within `buffer_days`). An entry's series go
/// when the entry does. A change of an entry's state (ok, expiring, expired, not yet
/// valid) is logged once, when it happens — not on every check.
final class ValidityGauges: Sendable {
    private struct Series {
        let notAfter: Prometheus.Gauge
        let notBefore: Prometheus.Gauge
        let expiring: Prometheus.Gauge
        var state: CertificateValidity.State
    }

    static var notAfter: MetricNameDescriptor { MetricNameDescriptor(
        namespace: "certgate", metricName: "certificate_not_after", unitName: "timestamp_seconds",
        helpText: "notAfter of the entry's certificate, in seconds since the Unix epoch") }
    static var notBefore: MetricNameDescriptor { MetricNameDescriptor(
        namespace: "certgate", metricName: "certificate_not_before", unitName: "timestamp_seconds",
        helpText: "notBefore of the entry's certificate, in seconds since the Unix epoch") }
    static var expiring: MetricNameDescriptor { MetricNameDescriptor(
        namespace: "certgate", metricName: "certificate", unitName: "expiring",
        helpText: "1 when the entry's certificate is within buffer_days of notAfter (or past it)") }

    private let registry: PrometheusCollectorRegistry
    private let logger: Logger
    private let series = Mutex<[String: Series]>([:])

    init(registry: PrometheusCollectorRegistry, logger: Logger) {
        self.registry = registry
        self.logger = logger
    }

    typealias StateChange = (entry: String, from: CertificateValidity.State?, to: CertificateValidity.State)

    /// Brings the series in line with `set` at `now` (the periodic check: every entry);
    /// returns the entries whose state changed.
    @discardableResult
    func update(set: CertificateSet, now: Date) -> [StateChange] {
        let changes = series.withLock { current in
            remove(current.keys.filter { set.entries[$0] == nil }, from: &current)
            return refresh(set.sortedEntries, in: &current, now: now)
        }
        log(changes, set: set, now: now)
        return changes
    }

    /// After an update: only the entries it added, changed (`entries`) and removed are
    /// looked at, so an update of one entry costs O(1) here whatever the set's size.
    @discardableResult
    func update(entries: [CertificateEntry], removed: [String], set: CertificateSet, now: Date) -> [StateChange] {
        let changes = series.withLock { current in
            remove(removed, from: &current)
            return refresh(entries.sorted { $0.name < $1.name }, in: &current, now: now)
        }
        log(changes, set: set, now: now)
        return changes
    }

    private func remove(_ names: [String], from current: inout [String: Series]) {
        for name in names {
            guard let old = current.removeValue(forKey: name) else { continue }
            registry.unregisterGauge(old.notAfter)
            registry.unregisterGauge(old.notBefore)
            registry.unregisterGauge(old.expiring)
        }
    }

    private func refresh(_ entries: [CertificateEntry], in current: inout [String: Series], now: Date) -> [StateChange] {
        var changes: [StateChange] = []
        for entry in entries {
            let validity = entry.validity(at: now)
            var item = current[entry.name] ?? Series(
                notAfter: registry.makeGauge(descriptor: Self.notAfter, labels: [("name", entry.name)]),
                notBefore: registry.makeGauge(descriptor: Self.notBefore, labels: [("name", entry.name)]),
                expiring: registry.makeGauge(descriptor: Self.expiring, labels: [("name", entry.name)]),
                state: validity.state)
            item.notAfter.set(validity.notAfter.timeIntervalSince1970)
            item.notBefore.set(validity.notBefore.timeIntervalSince1970)
            item.expiring.set(validity.state == .expiring || validity.state == .expired ? 1.0 : 0.0)
            let previous = current[entry.name]?.state
            // A change worth telling: a new state, except a new entry that is simply ok.
            if previous != validity.state && !(previous == nil && validity.state == .ok) {
                changes.append((entry.name, previous, validity.state))
            }
            item.state = validity.state
            current[entry.name] = item
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
