import Foundation

/// An ACME client for one CA and one account (RFC 8555): the directory, a pool of
/// nonces, and every request signed as a JWS (ES256; the key itself for `newAccount`,
/// the account URL as `kid` after). A `badNonce` answer is retried with the nonce it
/// carries (§6.5); other problem documents become ``ACMEError/problem(step:_:retryAfter:)``
/// with the `Retry-After` the CA gave.
public actor ACMEClient {
    public nonisolated let directoryURL: String
    public nonisolated let accountKey: AccountKey
    private let transport: any ACMETransport
    private var cachedDirectory: ACMEDirectory?
    private var nonces: [String] = []
    /// The account's URL (`kid`), once registered or found.
    public private(set) var accountURL: String?
    /// How many `badNonce` answers one request may get before it fails (RFC 8555 §6.5
    /// says clients should retry; Pebble rejects 5 % of nonces by default).
    public var maxBadNonceRetries = 10

    public init(directoryURL: String, transport: any ACMETransport, accountKey: AccountKey, accountURL: String? = nil) {
        self.directoryURL = directoryURL
        self.transport = transport
        self.accountKey = accountKey
        self.accountURL = accountURL
    }

    // MARK: - Resources

    /// The directory (fetched once).
    public func directory() async throws(ACMEError) -> ACMEDirectory {
        if let cachedDirectory { return cachedDirectory }
        let response = try await send(ACMEHTTPRequest(method: .get, url: directoryURL), step: "directory")
        guard response.status == 200 else { throw Self.failure(response, step: "directory") }
        let directory = try Self.decode(ACMEDirectory.self, response, step: "directory")
        cachedDirectory = directory
        return directory
    }

    /// `newAccount` (RFC 8555 §7.3): registers the account key, or finds the account it
    /// already has (200 instead of 201). Returns the account URL.
    /// - Parameters:
    ///   - contact: `mailto:` URLs.
    ///   - externalAccount: the CA's key identifier and MAC key (§7.3.4), when it requires one.
    @discardableResult
    public func register(contact: [String], agreeToTerms: Bool, externalAccount: (keyIdentifier: String, macKey: [UInt8])? = nil) async throws(ACMEError) -> String {
        let directory = try await directory()
        var payload = #"{"termsOfServiceAgreed":\#(agreeToTerms)"#
        if !contact.isEmpty {
            payload += #","contact":[\#(contact.map(JSONWebSignature.jsonString).joined(separator: ","))]"#
        }
        if let externalAccount {
            let binding = JSONWebSignature.externalAccountBinding(
                accountKey: accountKey, keyIdentifier: externalAccount.keyIdentifier, macKey: externalAccount.macKey, url: directory.newAccount)
            payload += #","externalAccountBinding":\#(String(decoding: binding.body, as: UTF8.self))"#
        }
        payload += "}"
        let response = try await post(directory.newAccount, payload: Array(payload.utf8), step: "newAccount", signer: .jwk)
        guard let location = response.header("Location") else {
            throw ACMEError.unexpected(step: "newAccount", reason: "the answer has no Location (the account URL)")
        }
        accountURL = location
        return location
    }

    /// `newOrder` (RFC 8555 §7.4): returns the order's URL and the order.
    /// - Parameters:
    ///   - replaces: ARI's certificate identifier of the certificate this one replaces (RFC 9773 §5).
    ///   - profile: an ACME profile the directory lists.
    public func newOrder(_ identifiers: [ACMEIdentifier], replaces: String? = nil, profile: String? = nil) async throws(ACMEError) -> (url: String, order: ACMEOrder) {
        let directory = try await directory()
        let list = identifiers.map { #"{"type":\#(JSONWebSignature.jsonString($0.type)),"value":\#(JSONWebSignature.jsonString($0.value))}"# }
        var payload = #"{"identifiers":[\#(list.joined(separator: ","))]"#
        if let replaces { payload += #","replaces":\#(JSONWebSignature.jsonString(replaces))"# }
        if let profile { payload += #","profile":\#(JSONWebSignature.jsonString(profile))"# }
        payload += "}"
        let response = try await post(directory.newOrder, payload: Array(payload.utf8), step: "newOrder", signer: try kid("newOrder"))
        guard let location = response.header("Location") else {
            throw ACMEError.unexpected(step: "newOrder", reason: "the answer has no Location (the order URL)")
        }
        return (location, try Self.decode(ACMEOrder.self, response, step: "newOrder"))
    }

    /// The order at `url` (POST-as-GET), with the `Retry-After` the CA gave.
    public func order(at url: String) async throws(ACMEError) -> (order: ACMEOrder, retryAfter: Double?) {
        let response = try await post(url, payload: nil, step: "order", signer: try kid("order"))
        return (try Self.decode(ACMEOrder.self, response, step: "order"), RetryAfter.seconds(response.header("Retry-After")))
    }

    /// The authorization at `url` (POST-as-GET), with the `Retry-After` the CA gave.
    public func authorization(at url: String) async throws(ACMEError) -> (authorization: ACMEAuthorization, retryAfter: Double?) {
        let response = try await post(url, payload: nil, step: "authorization", signer: try kid("authorization"))
        return (try Self.decode(ACMEAuthorization.self, response, step: "authorization"), RetryAfter.seconds(response.header("Retry-After")))
    }

    /// Tells the CA the challenge is ready to be validated (RFC 8555 §7.5.1: POST `{}`).
    public func respond(to challenge: ACMEChallenge) async throws(ACMEError) {
        _ = try await post(challenge.url, payload: Array("{}".utf8), step: "challenge \(challenge.type)", signer: try kid("challenge"))
    }

    /// `finalize` with a DER certificate signing request (RFC 8555 §7.4).
    public func finalize(_ order: ACMEOrder, csr: [UInt8]) async throws(ACMEError) -> ACMEOrder {
        let payload = #"{"csr":"\#(Base64URL.encode(csr))"}"#
        let response = try await post(order.finalize, payload: Array(payload.utf8), step: "finalize", signer: try kid("finalize"))
        return try Self.decode(ACMEOrder.self, response, step: "finalize")
    }

    /// The certificate chain at `url` as PEM (RFC 8555 §7.4.2), and the URLs of the
    /// alternate chains the CA offers (`Link: <…>;rel="alternate"`).
    public func certificateChain(at url: String) async throws(ACMEError) -> (pem: String, alternates: [String]) {
        let response = try await post(url, payload: nil, step: "certificate", signer: try kid("certificate"), accept: "application/pem-certificate-chain")
        let alternates = response.headers(named: "Link").flatMap(Self.alternateLinks)
        return (String(decoding: response.body, as: UTF8.self), alternates)
    }

    /// ARI (RFC 9773 §4.2): the CA's suggested renewal window for a certificate (a plain
    /// GET), with its `Retry-After` (when to ask again). Nil when the directory has no
    /// `renewalInfo`.
    public func renewalInfo(certificateIdentifier: String) async throws(ACMEError) -> (info: ACMERenewalInfo, retryAfter: Double?)? {
        guard let base = try await directory().renewalInfo else { return nil }
        let url = base.hasSuffix("/") ? base + certificateIdentifier : base + "/" + certificateIdentifier
        let response = try await send(ACMEHTTPRequest(method: .get, url: url), step: "renewalInfo")
        guard response.status == 200 else { throw Self.failure(response, step: "renewalInfo") }
        return (try Self.decode(ACMERenewalInfo.self, response, step: "renewalInfo"), RetryAfter.seconds(response.header("Retry-After")))
    }

    // MARK: - Requests

    private func kid(_ step: String) throws(ACMEError) -> JSONWebSignature.Signer {
        guard let accountURL else { throw ACMEError.unexpected(step: step, reason: "no account: register first") }
        return .kid(accountURL)
    }

    /// A signed POST (payload nil: POST-as-GET), retried on `badNonce`.
    func post(_ url: String, payload: [UInt8]?, step: String, signer: JSONWebSignature.Signer, accept: String? = nil) async throws(ACMEError) -> ACMEHTTPResponse {
        var badNonces = 0
        while true {
            let nonce = try await nextNonce(step: step)
            let jws: JSONWebSignature
            do {
                jws = try JSONWebSignature.signed(payload: payload, url: url, nonce: nonce, key: accountKey, signer: signer)
            } catch {
                throw ACMEError.unexpected(step: step, reason: "the account key could not sign")
            }
            let response = try await send(
                ACMEHTTPRequest(method: .post, url: url, body: jws.body, contentType: "application/jose+json", accept: accept), step: step)
            if (200..<300).contains(response.status) { return response }
            let failure = Self.failure(response, step: step)
            if case .problem(_, let problem, _) = failure, problem.isBadNonce, badNonces < maxBadNonceRetries {
                badNonces += 1
                continue  // the answer's Replay-Nonce is in the pool now
            }
            throw failure
        }
    }

    private func nextNonce(step: String) async throws(ACMEError) -> String {
        if let nonce = nonces.popLast() { return nonce }
        let url = try await directory().newNonce
        let response = try await send(ACMEHTTPRequest(method: .head, url: url), step: "newNonce")
        guard let nonce = nonces.popLast() else {
            throw ACMEError.unexpected(step: "newNonce", reason: "HTTP \(response.status) without a Replay-Nonce")
        }
        return nonce
    }

    /// Every answer's `Replay-Nonce` goes to the pool (RFC 8555 §6.5).
    private func send(_ request: ACMEHTTPRequest, step: String) async throws(ACMEError) -> ACMEHTTPResponse {
        let response: ACMEHTTPResponse
        do {
            response = try await transport.send(request)
        } catch {
            throw ACMEError.transport(step: step, error)
        }
        if let nonce = response.header("Replay-Nonce"), Self.isNonce(nonce) {
            nonces.append(nonce)
            if nonces.count > 16 { nonces.removeFirst() }
        }
        return response
    }

    // MARK: - Answers

    /// A nonce is base64url (RFC 8555 §6.5.1); anything else is not stored or echoed.
    static func isNonce(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.count <= 256 && text.utf8.allSatisfy {
            $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") || (48...57).contains($0) || (65...90).contains($0) || (97...122).contains($0)
        }
    }

    static func decode<T: Decodable>(_ type: T.Type, _ response: ACMEHTTPResponse, step: String) throws(ACMEError) -> T {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let text = try decoder.singleValueContainer().decode(String.self)
            guard let date = Self.date(text) else {
                throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not an RFC 3339 time"))
            }
            return date
        }
        do {
            return try decoder.decode(type, from: Data(response.body))
        } catch {
            throw ACMEError.unexpected(step: step, reason: "HTTP \(response.status): the answer is not a valid \(Self.resourceName(type))")
        }
    }

    /// RFC 3339 times, with or without fractional seconds.
    static func date(_ text: String) -> Date? {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let date = formatter.date(from: text) { return date }
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.date(from: text)
    }

    private static func resourceName<T>(_ type: T.Type) -> String {
        switch type {
        case is ACMEDirectory.Type: return "directory"
        case is ACMEOrder.Type: return "order"
        case is ACMEAuthorization.Type: return "authorization"
        case is ACMERenewalInfo.Type: return "renewal info"
        default: return "object"
        }
    }

    /// A non-2xx answer as an error: its problem document, or the bare status.
    static func failure(_ response: ACMEHTTPResponse, step: String) -> ACMEError {
        let retryAfter = RetryAfter.seconds(response.header("Retry-After"))
        if let problem = try? JSONDecoder().decode(ACMEProblem.self, from: Data(response.body)) {
            return .problem(step: step, problem, retryAfter: retryAfter)
        }
        return .problem(step: step, ACMEProblem(type: "about:blank", detail: "HTTP \(response.status)", status: response.status), retryAfter: retryAfter)
    }

    /// The targets of `rel="alternate"` links in one `Link` header value (RFC 8288).
    static func alternateLinks(_ header: String) -> [String] {
        header.split(separator: ",").compactMap { part in
            let pieces = part.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
            guard let target = pieces.first, target.hasPrefix("<"), target.hasSuffix(">"),
                  pieces.dropFirst().contains(where: { $0.replacingOccurrences(of: "\"", with: "").lowercased() == "rel=alternate" }) else {
                return nil
            }
            return String(target.dropFirst().dropLast())
        }
    }
}
