import Crypto
import Foundation

/// What one order asks for.
public struct CertificateOrderRequest: Sendable {
    /// DNS names (a wildcard as `*.example.com`), the first becoming the CN when it fits.
    public var names: [String]
    /// The common name of the top issuer of the chain to serve, when the CA offers several.
    public var preferredChain: String?
    /// An ACME profile the directory lists.
    public var profile: String?
    /// ARI: the identifier of the certificate this order replaces (RFC 9773 §5).
    public var replaces: String?

    public init(names: [String], preferredChain: String? = nil, profile: String? = nil, replaces: String? = nil) {
        self.names = names
        self.preferredChain = preferredChain
        self.profile = profile
        self.replaces = replaces
    }
}

/// A certificate the CA issued, with the key made for it.
public struct ObtainedCertificate: Sendable {
    /// Leaf first, then the chain the CA sent (the preferred one, when chosen).
    public var chainPEM: String
    /// PKCS#8 PEM of the P-256 key made for this order (never the account key).
    public var privateKeyPEM: String
    /// The certificate's URL at the CA.
    public var certificateURL: String
}

/// One order carried to its certificate (RFC 8555 §7.4): new order → each authorization
/// answered with the first configured challenge type the CA offers for it (presented,
/// responded to, polled, cleaned up) → a fresh P-256 key and its CSR → finalize → poll →
/// download, choosing the preferred chain among the `alternate` ones.
public struct CertificateOrder: Sendable {
    public let client: ACMEClient
    /// In order of preference.
    public let solvers: [any ChallengeSolver]
    /// How long authorizations and the order may take to become valid.
    public var deadline: Duration
    /// Waits between polls (injectable, so fakes need not wait).
    public var sleep: @Sendable (Duration) async throws -> Void

    public init(
        client: ACMEClient, solvers: [any ChallengeSolver], deadline: Duration = .seconds(300),
        sleep: @escaping @Sendable (Duration) async throws -> Void = { try await Task.sleep(for: $0) }
    ) {
        self.client = client
        self.solvers = solvers
        self.deadline = deadline
        self.sleep = sleep
    }

    public func obtain(_ request: CertificateOrderRequest) async throws(ACMEError) -> ObtainedCertificate {
        let started = ContinuousClock.now
        let (orderURL, created) = try await client.newOrder(
            request.names.map(ACMEIdentifier.dns), replaces: request.replaces, profile: request.profile)
        var order = created
        if order.status == .pending {
            for url in order.authorizations {
                try await authorize(url, started: started)
            }
            order = try await poll("order \(orderURL)", started: started) { () async throws(ACMEError) -> (ACMEOrder, Double?, Bool) in
                let (order, retryAfter) = try await client.order(at: orderURL)
                return (order, retryAfter, order.status != .pending)
            }
        }
        guard order.status == .ready || order.status == .valid || order.status == .processing else {
            throw ACMEError.orderFailed(order.error)
        }
        let key = P256.Signing.PrivateKey()
        if order.status == .ready {
            let csr: [UInt8]
            do {
                csr = try CertificateSigningRequestBuilder.der(names: request.names, key: key)
            } catch {
                throw ACMEError.unexpected(step: "finalize", reason: "the certificate signing request could not be made")
            }
            order = try await client.finalize(order, csr: csr)
        }
        if order.status != .valid {
            order = try await poll("order \(orderURL)", started: started) { () async throws(ACMEError) -> (ACMEOrder, Double?, Bool) in
                let (order, retryAfter) = try await client.order(at: orderURL)
                return (order, retryAfter, order.status == .valid || order.status == .invalid)
            }
        }
        guard order.status == .valid, let certificateURL = order.certificate else {
            throw ACMEError.orderFailed(order.error)
        }
        let (primary, alternates) = try await client.certificateChain(at: certificateURL)
        var chains = [primary]
        if request.preferredChain != nil {
            for url in alternates {
                chains.append(try await client.certificateChain(at: url).pem)
            }
        }
        let chosen = ChainSelection.choose(chains, preferred: request.preferredChain) ?? primary
        return ObtainedCertificate(chainPEM: chosen, privateKeyPEM: key.pemRepresentation, certificateURL: certificateURL)
    }

    /// Answers one authorization (skipped when the CA already holds it valid).
    private func authorize(_ url: String, started: ContinuousClock.Instant) async throws(ACMEError) {
        let (authorization, _) = try await client.authorization(at: url)
        let name = (authorization.wildcard == true ? "*." : "") + authorization.identifier.value
        switch authorization.status {
        case .valid: return
        case .pending: break
        default: throw ACMEError.authorizationFailed(identifier: name, challenge: "-", authorization.challenges.compactMap(\.error).first)
        }
        let offered = authorization.challenges.map(\.type)
        guard let (solver, challenge) = solvers.lazy.compactMap({ solver in
            authorization.challenges.first { $0.type == solver.challengeType }.map { (solver, $0) }
        }).first else {
            throw ACMEError.noUsableChallenge(identifier: name, offered: offered, configured: solvers.map(\.challengeType))
        }
        guard let token = challenge.token, KeyAuthorization.isValidToken(token) else {
            throw ACMEError.unexpected(step: "authorization \(name)", reason: "the \(challenge.type) challenge has no usable token")
        }
        let keyAuthorization = KeyAuthorization(token: token, accountKey: client.accountKey)
        do {
            try await solver.present(identifier: authorization.identifier, keyAuthorization: keyAuthorization)
        } catch {
            await solver.cleanup(identifier: authorization.identifier, keyAuthorization: keyAuthorization)
            throw ACMEError.challengeSetup(identifier: name, challenge: challenge.type, reason: error.reason)
        }
        let result: Result<ACMEAuthorization, ACMEError>
        do {
            try await client.respond(to: challenge)
            result = .success(try await poll("authorization \(name)", started: started) { () async throws(ACMEError) -> (ACMEAuthorization, Double?, Bool) in
                let (authorization, retryAfter) = try await client.authorization(at: url)
                return (authorization, retryAfter, authorization.status != .pending)
            })
        } catch {
            result = .failure(error)
        }
        await solver.cleanup(identifier: authorization.identifier, keyAuthorization: keyAuthorization)
        let final = try result.get()
        guard final.status == .valid else {
            let problem = final.challenges.first { $0.type == challenge.type }?.error
            throw ACMEError.authorizationFailed(identifier: name, challenge: challenge.type, problem)
        }
    }

    /// Asks `fetch` until it says done, waiting as the CA's `Retry-After` says (0.2 s to
    /// 10 s), or without one 0.25 s, then 0.5, 1 and 2 s between later polls (a CA like
    /// Pebble or Let's Encrypt usually validates within a second), until the deadline.
    private func poll<T: Sendable>(
        _ step: String, started: ContinuousClock.Instant,
        _ fetch: () async throws(ACMEError) -> (T, Double?, Bool)
    ) async throws(ACMEError) -> T {
        var polls = 0
        while true {
            let (value, retryAfter, done) = try await fetch()
            if done { return value }
            polls += 1
            let elapsed = ContinuousClock.now - started
            guard elapsed < deadline else {
                throw ACMEError.timedOut(step: step, seconds: Int(deadline.components.seconds))
            }
            let unadvised = 0.25 * Double(1 << min(polls - 1, 3))
            let wait = Duration.milliseconds(Int64(min(10, max(0.2, retryAfter ?? unadvised)) * 1_000))
            do {
                try await sleep(min(wait, deadline - elapsed))
            } catch {
                throw ACMEError.timedOut(step: step, seconds: Int(elapsed.components.seconds))
            }
        }
    }
}
