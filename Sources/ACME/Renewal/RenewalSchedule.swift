import Foundation

/// When to renew an obtained certificate, and how long to wait after a failure.
///
/// - With ARI (RFC 9773 §4.2): a uniformly random time inside the CA's suggested window; a
///   window already past means now.
/// - Without: `notAfter − renew_before` when configured, else when a third of the lifetime
///   remains (certbot's and Caddy's default for 90-day certificates: 30 days before).
/// - After a failure: 1 minute, doubling, at most 1 day, while the current certificate serves.
public enum RenewalSchedule {
    public static func renewalTime(
        notBefore: Date, notAfter: Date, renewBefore: TimeInterval? = nil,
        window: ACMERenewalInfo.Window? = nil, now: Date,
        random: (ClosedRange<TimeInterval>) -> TimeInterval = { TimeInterval.random(in: $0) }
    ) -> Date {
        if let window, window.end > window.start {
            if window.end <= now { return now }
            let start = max(window.start, now)
            return Date(timeIntervalSinceReferenceDate: random(start.timeIntervalSinceReferenceDate...window.end.timeIntervalSinceReferenceDate))
        }
        if let renewBefore {
            return notAfter.addingTimeInterval(-renewBefore)
        }
        let lifetime = notAfter.timeIntervalSince(notBefore)
        return notAfter.addingTimeInterval(-lifetime / 3)
    }

    /// The wait after `failures` consecutive failures (1 → 1 min, 2 → 2 min, … ≤ 1 day).
    public static func backoff(failures: Int) -> TimeInterval {
        guard failures > 0 else { return 0 }
        let minutes = pow(2.0, Double(min(failures - 1, 20)))
        return min(60 * minutes, 86_400)
    }
}
