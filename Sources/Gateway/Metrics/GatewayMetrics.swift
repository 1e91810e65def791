import CertificateKit
import Metrics

/// The gateway's counters, with the names and labels of the interface contract.
/// Counters are made once (per listener and match kind), never per handshake.
public final class GatewayMetrics: Sendable {
    /// `certgate_handshakes_total{listener, match}`: match is exact, wildcard, default,
    /// ip, issued, on_demand or none.
    public final class ListenerCounters: Sendable {
        let exact: Counter
        let wildcard: Counter
        let `default`: Counter
        let ip: Counter
        let issued: Counter
        let onDemand: Counter
        let none: Counter

        init(listener: String) {
            func counter(_ match: String) -> Counter {
                Counter(label: "certgate_handshakes_total", dimensions: [("listener", listener), ("match", match)])
            }
            exact = counter("exact")
            wildcard = counter("wildcard")
            `default` = counter("default")
            ip = counter("ip")
            issued = counter("issued")
            onDemand = counter("on_demand")
            none = counter("none")
        }

        func record(_ kind: CertificateMatch.Kind?, issued isIssued: Bool = false) {
            if isIssued { issued.increment(); return }
            switch kind {
            case .exact: exact.increment()
            case .wildcard: wildcard.increment()
            case .default, .catchAll: self.default.increment()
            case .ip: ip.increment()
            case .onDemand: onDemand.increment()
            case nil: none.increment()
            }
        }
    }

    public init() {}

    /// The buckets of the gateway's duration histograms, by metric (for the Prometheus
    /// factory's `durationHistogramBuckets`).
    public static var durationHistogramBuckets: [String: [Duration]] {
        [EventLoopLag.label: EventLoopLag.buckets]
    }

    public func handshakes(listener: String) -> ListenerCounters {
        ListenerCounters(listener: listener)
    }

    /// `certgate_updates_total{source, result}`.
    public func recordUpdate(source: UpdateSource, applied: Bool) {
        Counter(label: "certgate_updates_total", dimensions: [("source", source.rawValue), ("result", applied ? "applied" : "rejected")]).increment()
    }

    /// `certgate_issued_certificates_total`, `certgate_issue_refused_total{reason}`,
    /// `certgate_issued_certificates_cached`.
    public func record(_ event: IssuedCertificateCache.Event, cached: Int) {
        switch event {
        case .issued:
            Counter(label: "certgate_issued_certificates_total").increment()
        case .refused(let refusal):
            Counter(label: "certgate_issue_refused_total", dimensions: [("reason", refusal.rawValue)]).increment()
        case .failed:
            break
        }
        Gauge(label: "certgate_issued_certificates_cached").record(Double(cached))
    }

    /// `certgate_certificate_set_generation` and `certgate_certificates_loaded`.
    public func recordSet(generation: UInt64, count: Int) {
        Gauge(label: "certgate_certificate_set_generation").record(Double(generation))
        Gauge(label: "certgate_certificates_loaded").record(Double(count))
    }

    /// `certgate_shared_state_connected` (1 or 0) and `certgate_shared_state_lag_generations`
    /// (the fleet's latest generation known minus the one served).
    public func recordSharedState(connected: Bool, lag: UInt64) {
        Gauge(label: "certgate_shared_state_connected").record(connected ? 1 : 0)
        Gauge(label: "certgate_shared_state_lag_generations").record(Double(lag))
    }
}
