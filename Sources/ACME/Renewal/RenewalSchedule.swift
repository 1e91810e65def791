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

    /// The renewal time after a new ARI answer: `current` when it still lies inside the
    /// window (a client keeps its pick while the CA's advice stands, so repeated checks do
    /// not move the renewal around), else a new pick as ``renewalTime(notBefore:notAfter:renewBefore:window:now:random:)``.
    public static func renewalTime(
        keeping current: Date?, window: ACMERenewalInfo.Window, notBefore: Date, notAfter: Date, now: Date,
        random: (ClosedRange<TimeInterval>) -> TimeInterval = { TimeInterval.random(in: $0) }
    ) -> Date {
        if let current, current >= window.start, current <= window.end { return max(current, now) }
        return renewalTime(notBefore: notBefore, notAfter: notAfter, window: window, now: now, random: random)
    }

    /// When to ask the CA for a certificate's renewal window again (RFC 9773 §4.3): after
    /// its `Retry-After`, else 6 hours; never sooner than a minute nor later than a day.
    public static func nextRenewalInfoCheck(retryAfter: TimeInterval?) -> TimeInterval {
        min(max(retryAfter ?? 6 * 3_600, 60), 86_400)
    }

    /// The wait after `failures` consecutive failures (1 → 1 min, 2 → 2 min, … ≤ 1 day).
    public static func backoff(failures: Int) -> TimeInterval {
        guard failures > 0 else { return 0 }
        let minutes = pow(2.0, Double(min(failures - 1, 20)))
        return min(60 * minutes, 86_400)
    }
}
