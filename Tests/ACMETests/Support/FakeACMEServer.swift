import ACME
import CertificateTestSupport
import Crypto
import Foundation
import SwiftASN1
import X509

/// A scripted ACME server in memory (an ``ACMETransport``): just enough of RFC 8555 for one
/// order, with knobs for what real CAs do now and then — reject a nonce, ask to wait with
/// `Retry-After`, offer an alternate chain, answer ARI. It records every request.
final class FakeACMEServer: ACMETransport, @unchecked Sendable {
    static let base = "https://ca.test"
    private let lock = NSLock()
    private var nonceCounter = 0
    private var requests: [(request: ACMEHTTPRequest, nonce: String?, protectedHeader: String?)] = []
    private var authorizationPolls = 0
    private var orderPolls = 0
    private var finalized = false
    private var issuedChains: [String] = []

    /// Nonces to refuse once with `badNonce` (the first ones handed out).
    var rejectNonces: Set<String> = []
    /// `Retry-After` (seconds) on the first poll of the pending authorization and of the processing order.
    /// Empty: no `Retry-After`.
    var authorizationRetryAfter = "3"
    var orderRetryAfter = "2"
    /// The authorization turns valid at this poll (the first is the fetch before answering).
    var authorizationValidAtPoll = 3
    /// ARI's answer (RFC 9773 §4.2), when set.
    var renewalWindow: (start: String, end: String)?

    let rootA = TestCertificate.authority(commonName: "Fake Root A")
    let rootB = TestCertificate.authority(commonName: "Fake Root B")
    let intermediateKey = TestKey.make()
    lazy var intermediateByA = rootA.intermediate(commonName: "Fake Issuing CA", key: intermediateKey)
    lazy var intermediateByB = rootB.intermediate(commonName: "Fake Issuing CA", key: intermediateKey)

    /// Every request so far: the method and URL, with the JWS nonce when it was a POST.
    var log: [(request: ACMEHTTPRequest, nonce: String?, protectedHeader: String?)] { lock.withLock { requests } }

    func send(_ request: ACMEHTTPRequest) async throws(ACMETransportError) -> ACMEHTTPResponse {
        lock.withLock { handle(request) }
    }

    private func freshNonce() -> String {
        nonceCounter += 1
        return "nonce\(nonceCounter)"
    }

    private func json(_ status: Int, _ body: String, _ headers: [(String, String)] = []) -> ACMEHTTPResponse {
        ACMEHTTPResponse(status: status, headers: [("Replay-Nonce", freshNonce()), ("Content-Type", "application/json")] + headers, body: Array(body.utf8))
    }

    private func handle(_ request: ACMEHTTPRequest) -> ACMEHTTPResponse {
        var nonce: String?
        var header: String?
        var payload: String?
        if let body = request.body,
           let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: String],
           let protected = object["protected"], let headerBytes = Base64URL.decode(protected),
           let headerObject = try? JSONSerialization.jsonObject(with: Data(headerBytes)) as? [String: Any] {
            header = String(decoding: headerBytes, as: UTF8.self)
            nonce = headerObject["nonce"] as? String
            payload = object["payload"].flatMap(Base64URL.decode).map { String(decoding: $0, as: UTF8.self) }
        }
        requests.append((request, nonce, header))
        if let nonce, rejectNonces.remove(nonce) != nil {
            return json(400, #"{"type":"urn:ietf:params:acme:error:badNonce","detail":"JWS has an invalid anti-replay nonce"}"#)
        }
        let base = Self.base
        switch (request.method, request.url) {
        case (.get, "\(base)/dir"):
            var renewal = ""
            if renewalWindow != nil { renewal = #","renewalInfo":"\#(base)/ari""# }
            return json(200, #"{"newNonce":"\#(base)/nonce","newAccount":"\#(base)/account","newOrder":"\#(base)/order"\#(renewal)}"#)
        case (.head, "\(base)/nonce"):
            return ACMEHTTPResponse(status: 200, headers: [("Replay-Nonce", freshNonce())])
        case (.post, "\(base)/account"):
            return json(201, #"{"status":"valid"}"#, [("Location", "\(base)/account/1")])
        case (.post, "\(base)/order"):
            return json(201, order(status: "pending"), [("Location", "\(base)/order/1")])
        case (.post, "\(base)/authz/1"):
            authorizationPolls += 1
            let challengeStatus = authorizationPolls >= authorizationValidAtPoll ? "valid" : "pending"
            let status = challengeStatus
            let retry: [(String, String)] = authorizationPolls == 2 && !authorizationRetryAfter.isEmpty ? [("Retry-After", authorizationRetryAfter)] : []
            return json(200, #"{"identifier":{"type":"dns","value":"a.test"},"status":"\#(status)","challenges":[{"type":"http-01","url":"\#(base)/chall/1","status":"\#(challengeStatus)","token":"token-abc_DEF-0123456789xyz"}]}"#, retry)
        case (.post, "\(base)/chall/1"):
            return json(200, #"{"type":"http-01","url":"\#(base)/chall/1","status":"processing","token":"token-abc_DEF-0123456789xyz"}"#)
        case (.post, "\(base)/order/1"):
            orderPolls += 1
            if !finalized { return json(200, order(status: "ready")) }
            if orderPolls == 2 { return json(200, order(status: "processing"), orderRetryAfter.isEmpty ? [] : [("Retry-After", orderRetryAfter)]) }
            return json(200, order(status: "valid"))
        case (.post, "\(base)/finalize/1"):
            guard let payload, let csrText = (try? JSONSerialization.jsonObject(with: Data(payload.utf8)) as? [String: String])?["csr"],
                  let csr = Base64URL.decode(csrText), let request = try? CertificateSigningRequest(derEncoded: csr) else {
                return json(400, #"{"type":"urn:ietf:params:acme:error:badCSR"}"#)
            }
            issue(for: request)
            finalized = true
            orderPolls = 1
            return json(200, order(status: "processing"))
        case (.post, "\(base)/cert/1"):
            return ACMEHTTPResponse(status: 200, headers: [
                ("Replay-Nonce", freshNonce()), ("Content-Type", "application/pem-certificate-chain"),
                ("Link", #"<\#(base)/cert/1/1>;rel="alternate""#), ("Link", #"<\#(base)/dir>;rel="index""#),
            ], body: Array(issuedChains[0].utf8))
        case (.post, "\(base)/cert/1/1"):
            return ACMEHTTPResponse(status: 200, headers: [("Replay-Nonce", freshNonce())], body: Array(issuedChains[1].utf8))
        case (.get, let url) where url.hasPrefix("\(base)/ari/"):
            guard let renewalWindow else { return json(404, #"{"type":"about:blank"}"#) }
            return json(200, #"{"suggestedWindow":{"start":"\#(renewalWindow.start)","end":"\#(renewalWindow.end)"}}"#, [("Retry-After", "21600")])
        default:
            return json(404, #"{"type":"urn:ietf:params:acme:error:malformed","detail":"no such resource"}"#)
        }
    }

    private func order(status: String) -> String {
        let certificate = status == "valid" ? #","certificate":"\#(Self.base)/cert/1""# : ""
        return #"{"status":"\#(status)","identifiers":[{"type":"dns","value":"a.test"}],"authorizations":["\#(Self.base)/authz/1"],"finalize":"\#(Self.base)/finalize/1"\#(certificate)}"#
    }

    /// A leaf for the CSR's key and names, with one chain up to each root.
    private func issue(for request: CertificateSigningRequest) {
        let names = (try? request.attributes.extensionRequest?.extensions.subjectAlternativeNames).flatMap { $0 }.map(Array.init) ?? []
        let leaf = try! Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: request.publicKey,
            notValidBefore: Date().addingTimeInterval(-60), notValidAfter: Date().addingTimeInterval(90 * 86_400),
            issuer: intermediateByA.certificate.subject, subject: DistinguishedName(),
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try! Certificate.Extensions {
                SubjectAlternativeNames(names)
                AuthorityKeyIdentifier(keyIdentifier: SubjectKeyIdentifier(hash: intermediateKey.key.publicKey).keyIdentifier)
            },
            issuerPrivateKey: intermediateKey.key)
        let leafPEM = try! leaf.serializeAsPEM().pemString
        issuedChains = [leafPEM + "\n" + intermediateByA.pem + "\n", leafPEM + "\n" + intermediateByB.pem + "\n"]
    }
}
