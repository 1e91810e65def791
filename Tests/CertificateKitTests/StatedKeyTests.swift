@testable import CertificateKit
import CertificateKitNIO
import CertificateTestSupport
import Crypto
import Foundation
import SwiftASN1
import Testing
import X509

/// A key file that states its public key, and a TLS layer that proves the pair: the key is
/// matched to its certificate by what it states (see `CertificateBuildContext.factoryChecksKeyPairs`).
@Suite("A key's stated public key, proven by the TLS library", .timeLimit(.minutes(2)))
struct StatedKeyTests {
    static let authority = TestCertificate.authority()

    /// The context `certgate run` builds with: NIOSSL makes the TLS objects and proves key pairs.
    static let serving = CertificateBuildContext(servingMaterialFactory: NIOServingMaterial.factory, factoryChecksKeyPairs: true)

    /// A SEC 1 key holding `scalar`'s private half and stating `stated`'s public key.
    static func forged(scalarOf owner: TestKeyType, statingKeyOf leaf: TestCertificate) -> String {
        switch owner {
        case .p256:
            let scalar = P256.Signing.PrivateKey()
            let stated = try! P256.Signing.PublicKey(pemRepresentation: leaf.key.key.publicKey.serializeAsPEM().pemString)
            return TestKey.sec1PEM(raw: Array(scalar.rawRepresentation), publicX963: Array(stated.x963Representation), curve: .p256)
        default:
            let scalar = P384.Signing.PrivateKey()
            let stated = try! P384.Signing.PublicKey(pemRepresentation: leaf.key.key.publicKey.serializeAsPEM().pemString)
            return TestKey.sec1PEM(raw: Array(scalar.rawRepresentation), publicX963: Array(stated.x963Representation), curve: .p384)
        }
    }

    @Test("a key stating its certificate's public key with another key's scalar is refused as not matching — served by run's context or checked without one", arguments: [TestKeyType.p256, .p384])
    func forgedStatementIsRefused(type: TestKeyType) throws {
        let leaf = Self.authority.leaf(dnsNames: ["forged.test"], keyType: type)
        let conf = CertificateConf(tlsCert: leaf.pem, tlsKey: Self.forged(scalarOf: type, statingKeyOf: leaf))
        for context in [Self.serving, CertificateBuildContext()] {
            #expect(throws: CertificateSetError([
                CertificateEntryError(entry: "forged", field: "tls_key", reason: "the private key does not match the certificate (CN=forged.test)"),
            ])) {
                try CertificateSet.build(from: ["forged": conf], context: context)
            }
        }
    }

    @Test("a whole key pair that is not the certificate's is refused as not matching in run's context", arguments: [TestKeyType.p256, .p384])
    func otherPairIsRefused(type: TestKeyType) throws {
        let leaf = Self.authority.leaf(dnsNames: ["other.test"], keyType: type)
        let other = TestKey.make(type)
        for key in [other.pkcs8PEM, try #require(other.sec1PEM)] {
            #expect(throws: CertificateSetError([
                CertificateEntryError(entry: "other", field: "tls_key", reason: "the private key does not match the certificate (CN=other.test)"),
            ])) {
                try CertificateSet.build(from: ["other": CertificateConf(tlsCert: leaf.pem, tlsKey: key)], context: Self.serving)
            }
        }
    }

    @Test("a key stating its certificate's public key, PKCS#8 or SEC 1, is served in run's context: its TLS objects load", arguments: [TestKeyType.p256, .p384])
    func statedPairIsServed(type: TestKeyType) throws {
        let leaf = Self.authority.leaf(dnsNames: ["stated.test"], keyType: type)
        for key in [leaf.key.pkcs8PEM, try #require(leaf.key.sec1PEM)] {
            let set = try CertificateSet.build(from: ["stated": CertificateConf(tlsCert: leaf.pem, tlsKey: key)], context: Self.serving).set
            let material = try #require(set.entries["stated"]?.nioServingMaterial)
            #expect(try material.certificateChain().map { try $0.toDERBytes() } == [leaf.parsed.der])
            guard case .privateKey? = try material.contextOverride().privateKey else {
                Issue.record("no private key in the TLS objects")
                continue
            }
        }
    }

    @Test("a certificate's stated key is its subjectPublicKeyInfo's curve and point; none for RSA or Ed25519")
    func certificateStatement() throws {
        let p256 = Self.authority.leaf(dnsNames: ["p256.test"], keyType: .p256)
        let stated = try #require(StatedECPublicKey(certificateDER: p256.parsed.der))
        #expect(stated.curve == .NamedCurves.secp256r1)
        #expect(stated.point == Array(try P256.Signing.PublicKey(pemRepresentation: p256.key.key.publicKey.serializeAsPEM().pemString).x963Representation))
        let p384 = Self.authority.leaf(dnsNames: ["p384.test"], keyType: .p384)
        #expect(StatedECPublicKey(certificateDER: p384.parsed.der)?.curve == .NamedCurves.secp384r1)
        #expect(StatedECPublicKey(certificateDER: p384.parsed.der)?.point.count == 97)
        #expect(StatedECPublicKey(certificateDER: Self.authority.leaf(dnsNames: ["rsa.test"], keyType: .rsa2048).parsed.der) == nil)
        #expect(StatedECPublicKey(certificateDER: Self.authority.leaf(dnsNames: ["ed.test"], keyType: .ed25519).parsed.der) == nil)
        // Cut short anywhere: no statement, no crash.
        let der = p256.parsed.der
        for length in stride(from: 0, to: der.count, by: 7) {
            #expect(StatedECPublicKey(certificateDER: Array(der.prefix(length))) == nil)
        }
    }

    @Test("a private key's statement: PKCS#8 and SEC 1 state the same point as the certificate; a SEC 1 key without its public key states none")
    func keyStatement() throws {
        let leaf = Self.authority.leaf(dnsNames: ["key.test"], keyType: .p256)
        let expected = StatedECPublicKey(certificateDER: leaf.parsed.der)
        for pem in [leaf.key.pkcs8PEM, try #require(leaf.key.sec1PEM)] {
            #expect(PEMMaterialParser.statedKey(fromPEM: pem)?.publicKey == expected)
        }
        // RFC 5915 ECPrivateKey with no [1] publicKey.
        let raw = try P256.Signing.PrivateKey(pemRepresentation: leaf.key.pkcs8PEM).rawRepresentation
        var serializer = DER.Serializer()
        try serializer.appendConstructedNode(identifier: .sequence) { coder in
            try coder.serialize(1)
            try coder.serialize(ASN1OctetString(contentBytes: Array(raw)[...]))
            try coder.serialize(explicitlyTaggedWithTagNumber: 0, tagClass: .contextSpecific) { try $0.serialize(ASN1ObjectIdentifier.NamedCurves.secp256r1) }
        }
        let bare = PEMDocument(type: "EC PRIVATE KEY", derBytes: serializer.serializedBytes).pemString
        #expect(PEMMaterialParser.statedKey(fromPEM: bare) == nil)
        // Such a key is matched the long way, in run's context too.
        #expect(try CertificateSet.build(from: ["bare": CertificateConf(tlsCert: leaf.pem, tlsKey: bare)], context: Self.serving).set.count == 1)
    }
}
