/// Why an ACME operation failed: the step, and the CA's problem document or certgate's own
/// reason. A CA's `detail` is shown (escaped, bounded): it is written for the operator.
public enum ACMEError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The CA answered with a problem document (RFC 8555 §6.7). `retryAfter`: seconds the
    /// CA asked to wait (`Retry-After`), when it said.
    case problem(step: String, ACMEProblem, retryAfter: Double?)
    /// No answer (connection, TLS, timeout).
    case transport(step: String, ACMETransportError)
    /// An answer certgate cannot use (missing header, undecodable body, unexpected status).
    case unexpected(step: String, reason: String)
    /// An authorization ended `invalid`: which name, which challenge, and the CA's problem.
    case authorizationFailed(identifier: String, challenge: String, ACMEProblem?)
    /// None of the challenges offered for a name is one certgate is configured to answer.
    case noUsableChallenge(identifier: String, offered: [String], configured: [String])
    /// A challenge could not be put in place (e.g. the DNS hook failed).
    case challengeSetup(identifier: String, challenge: String, reason: String)
    /// The order ended `invalid`.
    case orderFailed(ACMEProblem?)
    /// A poll did not reach a final state before its deadline.
    case timedOut(step: String, seconds: Int)

    public var description: String {
        switch self {
        case .problem(let step, let problem, let retryAfter):
            return "\(step): the CA refused: \(problem)" + (retryAfter.map { " (retry after \(Int($0.rounded(.up))) s)" } ?? "")
        case .transport(let step, let error):
            return "\(step): \(error.description)"
        case .unexpected(let step, let reason):
            return "\(step): \(reason)"
        case .authorizationFailed(let identifier, let challenge, let problem):
            return "\(identifier): \(challenge) failed" + (problem.map { ": \($0)" } ?? "")
        case .noUsableChallenge(let identifier, let offered, let configured):
            return "\(identifier): the CA offers \(offered.joined(separator: ", ")); configured: \(configured.joined(separator: ", "))"
        case .challengeSetup(let identifier, let challenge, let reason):
            return "\(identifier): \(challenge): \(reason)"
        case .orderFailed(let problem):
            return "the order failed" + (problem.map { ": \($0)" } ?? "")
        case .timedOut(let step, let seconds):
            return "\(step): no final state after \(seconds) s"
        }
    }

    /// The CA does not know the account the request was signed for (RFC 8555 §7.3,
    /// `accountDoesNotExist`): the CA lost its state or the account was removed. A new
    /// account must be registered before the next order.
    public var isAccountUnknown: Bool {
        if case .problem(_, let problem, _) = self { return problem.type == ACMEProblem.acmeErrorPrefix + "accountDoesNotExist" }
        return false
    }

    /// Seconds the CA asked to wait before trying again, when it said.
    public var retryAfter: Double? {
        if case .problem(_, _, let retryAfter) = self { return retryAfter }
        return nil
    }
}
