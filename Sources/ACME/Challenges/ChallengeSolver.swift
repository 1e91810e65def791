/// Puts one challenge type's answer where the CA will look (RFC 8555 §8), and takes it
/// away after. certgate's solvers: `http-01` on plain-HTTP listeners, `tls-alpn-01` on TLS
/// listeners, `dns-01` through a hook.
public protocol ChallengeSolver: Sendable {
    /// `http-01`, `tls-alpn-01` or `dns-01`.
    var challengeType: String { get }

    /// Makes the answer for `identifier` available; returns once the CA may look.
    /// - Throws: a reason in certgate's words (it reaches the operator).
    func present(identifier: ACMEIdentifier, keyAuthorization: KeyAuthorization) async throws(ChallengeSetupError)

    /// Removes the answer (after validation, whatever its outcome).
    func cleanup(identifier: ACMEIdentifier, keyAuthorization: KeyAuthorization) async
}

/// A challenge answer that could not be put in place.
public struct ChallengeSetupError: Error, Sendable, Equatable, CustomStringConvertible {
    public let reason: String

    public init(_ reason: String) {
        self.reason = reason
    }

    public var description: String { reason }
}
