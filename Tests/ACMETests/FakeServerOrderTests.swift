import ACME
import CertificateKit
import Crypto
import Foundation
import SwiftASN1
import Testing
import X509

@Suite("Orders against a scripted server: badNonce, Retry-After, alternate chains, ARI", .timeLimit(.minutes(2)))
struct FakeServerOrderTests {
    static let base = FakeACMEServer.base

    final class Sleeps: @unchecked Sendable {
        private let lock = NSLock()
        private var values: [Duration] = []
        func record(_ value: Duration) { lock.withLock { values.append(value) } }
        var all: [Duration] { lock.withLock { values } }
    }

    struct Answering: ChallengeSolver {
        let challengeType = "http-01"
        func present(identifier: ACMEIdentifier, keyAuthorization: KeyAuthorization) async throws(ChallengeSetupError) {}
        func cleanup(identifier: ACMEIdentifier, keyAuthorization: KeyAuthorization) async {}
    }

    static func registered(_ server: FakeACMEServer) async throws -> ACMEClient {
        let client = ACMEClient(directoryURL: "\(base)/dir", transport: server, accountKey: AccountKey())
        try await client.register(contact: [], agreeToTerms: true)
        return client
    }

    @Test("a badNonce answer is retried with the nonce it carried; the retry is the same request otherwise")
    func badNonceRetried() async throws {
        let server = FakeACMEServer()
        // The directory's answer brings nonce1, which the first POST uses; its badNonce answer brings nonce2.
        server.rejectNonces = ["nonce1"]
        let client = ACMEClient(directoryURL: "\(Self.base)/dir", transport: server, accountKey: AccountKey())
        #expect(try await client.register(contact: ["mailto:ops@example.test"], agreeToTerms: true) == "\(Self.base)/account/1")
        let posts = server.log.filter { $0.request.method == .post }
        #expect(posts.map(\.request.url) == ["\(Self.base)/account", "\(Self.base)/account"])
        #expect(posts.map(\.nonce) == ["nonce1", "nonce2"])
        #expect(posts[0].protectedHeader?.replacingOccurrences(of: "nonce1", with: "nonce2") == posts[1].protectedHeader)
        #expect(!server.log.contains { $0.request.method == .head })  // no newNonce needed
    }

    @Test("a renewal's newOrder names the certificate it replaces (RFC 9773 §5) and the profile; a first order names neither")
    func newOrderPayload() async throws {
        func newOrderPayload(replaces: String?, profile: String?) async throws -> [String: Any] {
            let server = FakeACMEServer()
            let client = try await Self.registered(server)
            _ = try await CertificateOrder(client: client, solvers: [Answering()]) { _ in }
                .obtain(CertificateOrderRequest(names: ["a.test"], profile: profile, replaces: replaces))
            let post = try #require(server.log.first { $0.request.url == "\(Self.base)/order" })
            let jws = try #require(try JSONSerialization.jsonObject(with: Data(post.request.body ?? [])) as? [String: String])
            let payload = try #require(jws["payload"].flatMap(Base64URL.decode))
            return try #require(try JSONSerialization.jsonObject(with: Data(payload)) as? [String: Any])
        }
        let renewal = try await newOrderPayload(replaces: "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE", profile: "shortlived")
        #expect(renewal["replaces"] as? String == "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE")
        #expect(renewal["profile"] as? String == "shortlived")
        #expect((renewal["identifiers"] as? [[String: String]]) == [["type": "dns", "value": "a.test"]])
        let first = try await newOrderPayload(replaces: nil, profile: nil)
        #expect(Set(first.keys) == ["identifiers"])
    }

    @Test("without Retry-After, polls wait 0.25 s, then 0.5, 1 and 2 s (each poll of its own resource starts again at 0.25 s)")
    func pollsWithoutRetryAfter() async throws {
        let server = FakeACMEServer()
        server.authorizationRetryAfter = ""
        server.orderRetryAfter = ""
        server.authorizationValidAtPoll = 7
        let client = try await Self.registered(server)
        let sleeps = Sleeps()
        let order = CertificateOrder(client: client, solvers: [Answering()]) { sleeps.record($0) }
        _ = try await order.obtain(CertificateOrderRequest(names: ["a.test"]))
        // Authorization: fetched (1), answered, then polls 2…6 pending, 7 valid; the order: processing once.
        #expect(sleeps.all == [.milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2), .seconds(2), .milliseconds(250)])
    }

    @Test("polls wait as Retry-After says (3 s for the authorization, 2 s for the order); the preferred chain is the alternate whose top issuer matches")
    func retryAfterAndPreferredChain() async throws {
        let server = FakeACMEServer()
        let client = try await Self.registered(server)
        let sleeps = Sleeps()
        let order = CertificateOrder(client: client, solvers: [Answering()]) { sleeps.record($0) }
        let obtained = try await order.obtain(CertificateOrderRequest(names: ["a.test"], preferredChain: "Fake Root B"))
        #expect(sleeps.all == [.seconds(3), .seconds(2)])
        let documents = try PEMDocument.parseMultiple(pemString: obtained.chainPEM)
        #expect(documents.count == 2)
        let leaf = try Certificate(derEncoded: documents[0].derBytes)
        let top = try Certificate(derEncoded: documents[1].derBytes)
        #expect(top.issuer.commonName == "Fake Root B")
        #expect(Array(try leaf.extensions.subjectAlternativeNames ?? SubjectAlternativeNames([])) == [.dnsName("a.test")])
        #expect(Certificate.PublicKey(try P256.Signing.PrivateKey(pemRepresentation: obtained.privateKeyPEM).publicKey) == leaf.publicKey)
        #expect(obtained.certificateURL == "\(Self.base)/cert/1")
        #expect(server.log.contains { $0.request.url == "\(Self.base)/cert/1/1" })
        #expect(server.log.first { $0.request.url == "\(Self.base)/cert/1" }?.request.accept == "application/pem-certificate-chain")
    }

    @Test("without a preferred chain the CA's default is served and no alternate is downloaded")
    func defaultChain() async throws {
        let server = FakeACMEServer()
        let client = try await Self.registered(server)
        let obtained = try await CertificateOrder(client: client, solvers: [Answering()]) { _ in }.obtain(CertificateOrderRequest(names: ["a.test"]))
        let documents = try PEMDocument.parseMultiple(pemString: obtained.chainPEM)
        #expect(try Certificate(derEncoded: documents[1].derBytes).issuer.commonName == "Fake Root A")
        #expect(!server.log.contains { $0.request.url == "\(Self.base)/cert/1/1" })
    }

    @Test("a CA offering only challenges certgate is not configured for is named with what it offers")
    func noUsableChallenge() async throws {
        struct DNSOnly: ChallengeSolver {
            let challengeType = "dns-01"
            func present(identifier: ACMEIdentifier, keyAuthorization: KeyAuthorization) async throws(ChallengeSetupError) {}
            func cleanup(identifier: ACMEIdentifier, keyAuthorization: KeyAuthorization) async {}
        }
        let client = try await Self.registered(FakeACMEServer())
        await #expect(throws: ACMEError.noUsableChallenge(identifier: "a.test", offered: ["http-01"], configured: ["dns-01"])) {
            _ = try await CertificateOrder(client: client, solvers: [DNSOnly()]) { _ in }.obtain(CertificateOrderRequest(names: ["a.test"]))
        }
    }

    @Test("ARI: the directory's renewalInfo is asked with a plain GET for the certificate's identifier; its window and Retry-After come back; no renewalInfo, no answer")
    func renewalInfo() async throws {
        let server = FakeACMEServer()
        server.renewalWindow = ("2026-12-01T00:00:00Z", "2026-12-03T00:00:00Z")
        let client = ACMEClient(directoryURL: "\(Self.base)/dir", transport: server, accountKey: AccountKey())
        let answer = try #require(try await client.renewalInfo(certificateIdentifier: "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"))
        #expect(answer.info.suggestedWindow.start == Date(timeIntervalSince1970: 1_796_083_200))
        #expect(answer.info.suggestedWindow.end == Date(timeIntervalSince1970: 1_796_256_000))
        #expect(answer.retryAfter == 21_600)
        #expect(server.log.last?.request == ACMEHTTPRequest(method: .get, url: "\(Self.base)/ari/aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"))
        // Renewal inside that window; a window already past means now.
        let now = Date(timeIntervalSince1970: 1_795_957_200)  // 2026-11-29T13:00:00Z
        let time = RenewalSchedule.renewalTime(notBefore: now, notAfter: now.addingTimeInterval(90 * 86_400), window: answer.info.suggestedWindow, now: now)
        #expect(time >= answer.info.suggestedWindow.start && time <= answer.info.suggestedWindow.end)
        let later = Date(timeIntervalSince1970: 1_796_300_000)  // after the window's end
        #expect(RenewalSchedule.renewalTime(notBefore: now, notAfter: later, window: answer.info.suggestedWindow, now: later) == later)

        let plain = ACMEClient(directoryURL: "\(Self.base)/dir", transport: FakeACMEServer(), accountKey: AccountKey())
        #expect(try await plain.renewalInfo(certificateIdentifier: "x.y") == nil)
    }
}
