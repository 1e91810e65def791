import Foundation

/// Where a certificate stands in time. The one computation behind `certgate check`,
/// `ctl list` and the validity monitor, so they always agree.
public struct CertificateValidity: Hashable, Sendable, Codable {
    public enum State: String, Hashable, Sendable, Codable {
        case ok
        case expiring
        case expired
        case notYetValid = "not_yet_valid"
    }

    public let notBefore: Date
    public let notAfter: Date
    /// Whole days until notAfter, rounded down; negative once expired.
    public let daysLeft: Int
    public let state: State

    /// - Parameters:
    ///   - bufferDays: from this many days before notAfter the certificate is `expiring`.
    ///   - now: the clock's reading, passed in so tests and callers agree on one instant.
    public init(notBefore: Date, notAfter: Date, bufferDays: Int, now: Date) {
        self.notBefore = notBefore
        self.notAfter = notAfter
        let remaining = notAfter.timeIntervalSince(now)
        self.daysLeft = Int((remaining / 86_400).rounded(.down))
        if now < notBefore {
            state = .notYetValid
        } else if remaining <= 0 {
            state = .expired
        } else if remaining < Double(bufferDays) * 86_400 {
            state = .expiring
        } else {
            state = .ok
        }
    }
}
