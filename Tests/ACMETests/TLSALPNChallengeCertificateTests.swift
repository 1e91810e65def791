import Crypto
import Foundation
import SwiftASN1
import Testing
import X509
@testable import ACME

@Suite("The tls-alpn-01 validation certificate (RFC 8737 §3)", .timeLimit(.minutes(2)))
struct TLSALPNChallengeCertificateTests {
    @Test("one SAN, the name; the critical acmeIdentifier extension holds the DER OCTET STRING of SHA-256(key authorization); self-signed")
    func validationCertificate() throws {
        let authorization = KeyAuthorization(token: "token-abc_DEF-0123456789xyz", thumbprint: "thumb")
        let challenge = try TLSALPNChallengeCertificate(name: "shop.example.test", keyAuthorization: authorization)
        let certificate = try Certificate(derEncoded: challenge.derBytes())
        #expect(try certificate.extensions.subjectAlternativeNames == SubjectAlternativeNames([.dnsName("shop.example.test")]))
        let identifier = try #require(certificate.extensions[oid: [1, 3, 6, 1, 5, 5, 7, 1, 31]])
        #expect(identifier.critical)
        // 0x04 (OCTET STRING), 0x20 (32 bytes), then the digest worked out with openssl:
        // printf '%s' 'token-abc_DEF-0123456789xyz.thumb' | openssl dgst -sha256
        let digest = "ee354bd60475b2eefab12779044b8d02c093af1e693eba1e21eaf2106b17cb5b"
        #expect(identifier.value.map { String(format: "%02x", $0) }.joined() == "0420" + digest)
        #expect(certificate.issuer == certificate.subject)
        #expect(certificate.publicKey.isValidSignature(certificate.signature, for: certificate))
        #expect(Certificate.PublicKey(challenge.privateKey.publicKey) == certificate.publicKey)
        #expect(TLSALPNChallengeCertificate.alpnProtocol == "acme-tls/1")
    }
}
