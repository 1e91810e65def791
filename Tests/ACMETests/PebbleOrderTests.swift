import ACME
import CertificateKit
import CertificateTestSupport
import Crypto
import SwiftASN1
import Foundation
import Testing
import X509

/// Answers challenges through pebble-challtestsrv's management API, the way certgate's own
/// solvers will answer them through its listeners and the DNS hook.
struct ChallengeServerSolver: ChallengeSolver {
    let challengeType: String
    let pebble: PebbleServer
    /// What was presented, for the test to check.
    let presented = Presented()

    final class Presented: @unchecked Sendable {
        private let lock = NSLock()
        private var values: [String] = []
        func append(_ value: String) { lock.lock(); values.append(value); lock.unlock() }
        var all: [String] { lock.lock(); defer { lock.unlock() }; return values }
    }

    func present(identifier: ACMEIdentifier, keyAuthorization: KeyAuthorization) async throws(ChallengeSetupError) {
        do {
            switch challengeType {
            case "http-01":
                try await pebble.manage("/add-http01", #"{"token":"\#(keyAuthorization.token)","content":"\#(keyAuthorization.http01Body)"}"#)
            case "tls-alpn-01":
                try await pebble.manage("/add-tlsalpn01", #"{"host":"\#(identifier.value)","content":"\#(keyAuthorization.value)"}"#)
            default:
                try await pebble.manage("/set-txt", #"{"host":"_acme-challenge.\#(identifier.value).","value":"\#(keyAuthorization.dns01Value)"}"#)
            }
        } catch {
            throw ChallengeSetupError("challtestsrv refused the answer")
        }
        presented.append("\(challengeType) \(identifier.value)")
    }

    func cleanup(identifier: ACMEIdentifier, keyAuthorization: KeyAuthorization) async {
        switch challengeType {
        case "http-01": try? await pebble.manage("/del-http01", #"{"token":"\#(keyAuthorization.token)"}"#)
        case "tls-alpn-01": try? await pebble.manage("/del-tlsalpn01", #"{"host":"\#(identifier.value)"}"#)
        default: try? await pebble.manage("/clear-txt", #"{"host":"_acme-challenge.\#(identifier.value)."}"#)
        }
    }
}

/// A solver that presents nothing: the CA's validation must fail.
struct SilentSolver: ChallengeSolver {
    let challengeType = "http-01"
    func present(identifier: ACMEIdentifier, keyAuthorization: KeyAuthorization) async throws(ChallengeSetupError) {}
    func cleanup(identifier: ACMEIdentifier, keyAuthorization: KeyAuthorization) async {}
}

@Suite("Orders against a real Pebble: every challenge type, wildcards, EAB, failures", .serialized, .timeLimit(.minutes(3)))
struct PebbleOrderTests {
    static func client(_ pebble: PebbleServer, key: AccountKey = AccountKey()) throws -> (ACMEClient, HTTPClientTransport) {
        let transport = try HTTPClientTransport(extraRoots: [pebble.httpsRoot], timeout: .seconds(10))
        return (ACMEClient(directoryURL: pebble.directoryURL, transport: transport, accountKey: key), transport)
    }

    /// `openssl verify` of the obtained leaf against Pebble's root with the chain's
    /// intermediates; the leaf's SANs; the key is the leaf's.
    static func expectVerifies(_ obtained: ObtainedCertificate, names: [String], pebble: PebbleServer) async throws {
        let documents = try PEMDocument.parseMultiple(pemString: obtained.chainPEM)
        #expect(documents.count >= 2, "leaf and at least one intermediate")
        let leaf = try Certificate(derEncoded: documents[0].derBytes)
        let sans = Array(try leaf.extensions.subjectAlternativeNames ?? SubjectAlternativeNames([]))
        #expect(Set(sans) == Set(names.map { GeneralName.dnsName($0) }))
        let key = try P256.Signing.PrivateKey(pemRepresentation: obtained.privateKeyPEM)
        #expect(Certificate.PublicKey(key.publicKey) == leaf.publicKey)
        let folder = pebble.folder
        try await pebble.issuingRoot().write(to: folder.appendingPathComponent("root.pem"), atomically: true, encoding: .utf8)
        try obtained.chainPEM.write(to: folder.appendingPathComponent("chain.pem"), atomically: true, encoding: .utf8)
        try documents[0].pemString.write(to: folder.appendingPathComponent("leaf.pem"), atomically: true, encoding: .utf8)
        let (status, output) = try await runCommand("/usr/bin/openssl", [
            "verify", "-purpose", "sslserver", "-CAfile", folder.appendingPathComponent("root.pem").path,
            "-untrusted", folder.appendingPathComponent("chain.pem").path, folder.appendingPathComponent("leaf.pem").path,
        ])
        #expect(status == 0 && output.hasSuffix("leaf.pem: OK\n"), "\(output)")
    }

    @Test("http-01 for two names: registered, each name validated over HTTP, the certificate verifies against Pebble's root")
    func http01() async throws {
        let pebble = try await PebbleServer()
        defer { pebble.stop() }
        let (client, transport) = try Self.client(pebble)
        defer { Task { await transport.shutdown() } }
        let account = try await client.register(contact: ["mailto:ops@example.test"], agreeToTerms: true)
        #expect(account.hasPrefix("https://127.0.0.1:"))
        let solver = ChallengeServerSolver(challengeType: "http-01", pebble: pebble)
        let names = ["shop.example.test", "www.shop.example.test"]
        let obtained = try await CertificateOrder(client: client, solvers: [solver]).obtain(CertificateOrderRequest(names: names))
        try await Self.expectVerifies(obtained, names: names, pebble: pebble)
        #expect(Set(solver.presented.all) == ["http-01 shop.example.test", "http-01 www.shop.example.test"])
        // The same key finds the same account.
        #expect(try await client.register(contact: [], agreeToTerms: true) == account)
    }

    @Test("tls-alpn-01 is used when it comes first in the preference and the CA offers it")
    func tlsALPN01() async throws {
        let pebble = try await PebbleServer()
        defer { pebble.stop() }
        let (client, transport) = try Self.client(pebble)
        defer { Task { await transport.shutdown() } }
        try await client.register(contact: [], agreeToTerms: true)
        let alpn = ChallengeServerSolver(challengeType: "tls-alpn-01", pebble: pebble)
        let http = ChallengeServerSolver(challengeType: "http-01", pebble: pebble)
        let obtained = try await CertificateOrder(client: client, solvers: [alpn, http]).obtain(CertificateOrderRequest(names: ["alpn.example.test"]))
        try await Self.expectVerifies(obtained, names: ["alpn.example.test"], pebble: pebble)
        #expect(alpn.presented.all == ["tls-alpn-01 alpn.example.test"])
        #expect(http.presented.all.isEmpty)
    }

    @Test("a wildcard and its base name through dns-01; http-01 is never offered for the wildcard")
    func dns01Wildcard() async throws {
        let pebble = try await PebbleServer()
        defer { pebble.stop() }
        let (client, transport) = try Self.client(pebble)
        defer { Task { await transport.shutdown() } }
        try await client.register(contact: [], agreeToTerms: true)
        let dns = ChallengeServerSolver(challengeType: "dns-01", pebble: pebble)
        let http = ChallengeServerSolver(challengeType: "http-01", pebble: pebble)
        let names = ["*.wild.example.test", "wild.example.test"]
        let obtained = try await CertificateOrder(client: client, solvers: [http, dns]).obtain(CertificateOrderRequest(names: names))
        try await Self.expectVerifies(obtained, names: names, pebble: pebble)
        // The wildcard's authorization (for wild.example.test, wildcard: true) offers only
        // dns-01; the base name's offers http-01 too, which comes first.
        #expect(dns.presented.all == ["dns-01 wild.example.test"])
        #expect(http.presented.all == ["http-01 wild.example.test"])
    }

    @Test("an unanswered challenge fails the order with the name, the challenge type and Pebble's problem")
    func failedValidation() async throws {
        let pebble = try await PebbleServer()
        defer { pebble.stop() }
        let (client, transport) = try Self.client(pebble)
        defer { Task { await transport.shutdown() } }
        try await client.register(contact: [], agreeToTerms: true)
        do {
            _ = try await CertificateOrder(client: client, solvers: [SilentSolver()]).obtain(CertificateOrderRequest(names: ["nobody.example.test"]))
            Issue.record("the order must fail")
        } catch {
            guard case .authorizationFailed(let identifier, let challenge, let problem) = error else {
                Issue.record("expected authorizationFailed, got \(error)"); return
            }
            #expect(identifier == "nobody.example.test")
            #expect(challenge == "http-01")
            #expect(problem?.type.hasPrefix("urn:ietf:params:acme:error:") == true, "\(String(describing: problem))")
            #expect(error.description.hasPrefix("nobody.example.test: http-01 failed: "))
        }
    }

    @Test("a CA that requires external account binding refuses a bare registration and accepts one bound with its MAC key")
    func externalAccountBinding() async throws {
        let macKey = Array("certgate-eab-test-mac-key-32byte".utf8)
        let pebble = try await PebbleServer(extraConfig: """
            "externalAccountBindingRequired": true, "externalAccountMACKeys": {"kid-1": "\(Base64URL.encode(macKey))"},
            """)
        defer { pebble.stop() }
        let (client, transport) = try Self.client(pebble)
        defer { Task { await transport.shutdown() } }
        do {
            try await client.register(contact: [], agreeToTerms: true)
            Issue.record("registration without EAB must be refused")
        } catch {
            guard case .problem(let step, let problem, _) = error else { Issue.record("\(error)"); return }
            #expect(step == "newAccount")
            #expect(problem.kind == "externalAccountRequired", "\(problem)")
        }
        let account = try await client.register(contact: [], agreeToTerms: true, externalAccount: ("kid-1", macKey))
        #expect(account.hasPrefix("https://127.0.0.1:"))
    }
}
