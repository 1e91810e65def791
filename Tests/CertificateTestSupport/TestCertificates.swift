import CertificateKit
import Crypto
import Foundation
import SwiftASN1
import X509
import _CryptoExtras

/// Key types the tests generate.
public enum TestKeyType: Sendable, CaseIterable {
    case p256, p384, rsa2048, ed25519
}

/// A generated private key with its PEM encodings.
public struct TestKey: Sendable {
    public let key: Certificate.PrivateKey
    /// PKCS#8 (`PRIVATE KEY`).
    public let pkcs8PEM: String
    /// SEC1 (`EC PRIVATE KEY`) for ECDSA keys.
    public let sec1PEM: String?
    /// PKCS#1 (`RSA PRIVATE KEY`) for RSA keys.
    public let pkcs1PEM: String?

    public static func make(_ type: TestKeyType = .p256) -> TestKey {
        switch type {
        case .p256:
            let key = P256.Signing.PrivateKey()
            return TestKey(key: .init(key), pkcs8PEM: key.pemRepresentation,
                           sec1PEM: sec1PEM(raw: Array(key.rawRepresentation), publicX963: Array(key.publicKey.x963Representation), curve: .p256),
                           pkcs1PEM: nil)
        case .p384:
            let key = P384.Signing.PrivateKey()
            return TestKey(key: .init(key), pkcs8PEM: key.pemRepresentation,
                           sec1PEM: sec1PEM(raw: Array(key.rawRepresentation), publicX963: Array(key.publicKey.x963Representation), curve: .p384),
                           pkcs1PEM: nil)
        case .rsa2048:
            let key = try! _RSA.Signing.PrivateKey(keySize: .bits2048)
            return TestKey(key: .init(key), pkcs8PEM: key.pkcs8PEMRepresentation, sec1PEM: nil, pkcs1PEM: key.pemRepresentation)
        case .ed25519:
            let key = Curve25519.Signing.PrivateKey()
            let wrapped = Certificate.PrivateKey(key)
            return TestKey(key: wrapped, pkcs8PEM: try! wrapped.serializeAsPEM().pemString, sec1PEM: nil, pkcs1PEM: nil)
        }
    }

    /// A 1024-bit RSA key (for the "too small" error), PKCS#1 PEM.
    public static func weakRSA1024PEM() -> String {
        try! _RSA.Signing.PrivateKey(unsafeKeySize: .init(bitCount: 1024)).pemRepresentation
    }

    /// The `EC PARAMETERS` block `openssl ecparam -genkey -name prime256v1` writes before the key.
    public static let p256ECParametersPEM = "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"

    public enum Curve: Sendable { case p256, p384 }

    /// RFC 5915 ECPrivateKey with the curve OID and the public key, as OpenSSL writes it.
    public static func sec1PEM(raw: [UInt8], publicX963: [UInt8], curve: Curve) -> String {
        let oid: ASN1ObjectIdentifier = curve == .p256 ? [1, 2, 840, 10045, 3, 1, 7] : [1, 3, 132, 0, 34]
        var serializer = DER.Serializer()
        try! serializer.appendConstructedNode(identifier: .sequence) { coder in
            try coder.serialize(1)
            try coder.serialize(ASN1OctetString(contentBytes: raw[...]))
            try coder.serialize(explicitlyTaggedWithTagNumber: 0, tagClass: .contextSpecific) { try $0.serialize(oid) }
            try coder.serialize(explicitlyTaggedWithTagNumber: 1, tagClass: .contextSpecific) {
                try $0.serialize(ASN1BitString(bytes: publicX963[...]))
            }
        }
        return PEMDocument(type: "EC PRIVATE KEY", derBytes: serializer.serializedBytes).pemString
    }
}

/// A certificate made by the tests, with its key.
public struct TestCertificate: Sendable {
    public let certificate: Certificate
    public let key: TestKey

    public var pem: String { try! certificate.serializeAsPEM().pemString }
    public var parsed: ParsedCertificate { try! ParsedCertificate(certificate: certificate) }

    /// A self-signed CA (basicConstraints CA, keyCertSign).
    public static func authority(
        commonName: String = "certgate test CA",
        keyType: TestKeyType = .p256,
        key: TestKey? = nil,
        notBefore: Date = Date().addingTimeInterval(-3600),
        notAfter: Date = Date().addingTimeInterval(3650 * 86_400),
        keyUsage: KeyUsage = KeyUsage(digitalSignature: true, keyCertSign: true, cRLSign: true)
    ) -> TestCertificate {
        let key = key ?? TestKey.make(keyType)
        let name = try! DistinguishedName { CommonName(commonName) }
        let extensions = try! Certificate.Extensions {
            Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil))
            Critical(keyUsage)
            SubjectKeyIdentifier(hash: key.key.publicKey)
        }
        let certificate = try! Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: key.key.publicKey,
            notValidBefore: notBefore, notValidAfter: notAfter, issuer: name, subject: name,
            signatureAlgorithm: signatureAlgorithm(for: key.key), extensions: extensions, issuerPrivateKey: key.key)
        return TestCertificate(certificate: certificate, key: key)
    }

    /// An intermediate CA signed by `self`.
    /// `maxPathLength`: how many CAs may follow it down to a leaf (0: it signs leaves only).
    public func intermediate(
        commonName: String, keyType: TestKeyType = .p256, key: TestKey? = nil,
        notBefore: Date = Date().addingTimeInterval(-3600),
        notAfter: Date = Date().addingTimeInterval(1000 * 86_400),
        maxPathLength: Int = 0
    ) -> TestCertificate {
        let key = key ?? TestKey.make(keyType)
        let extensions = try! Certificate.Extensions {
            Critical(BasicConstraints.isCertificateAuthority(maxPathLength: maxPathLength))
            Critical(KeyUsage(digitalSignature: true, keyCertSign: true, cRLSign: true))
            SubjectKeyIdentifier(hash: key.key.publicKey)
            AuthorityKeyIdentifier(keyIdentifier: SubjectKeyIdentifier(hash: self.key.key.publicKey).keyIdentifier)
        }
        let certificate = try! Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: key.key.publicKey,
            notValidBefore: notBefore, notValidAfter: notAfter, issuer: self.certificate.subject,
            subject: try! DistinguishedName { CommonName(commonName) },
            signatureAlgorithm: TestCertificate.signatureAlgorithm(for: self.key.key), extensions: extensions,
            issuerPrivateKey: self.key.key)
        return TestCertificate(certificate: certificate, key: key)
    }

    /// A server leaf signed by `self`, with the given SANs.
    public func leaf(
        dnsNames: [String] = [], ipAddresses: [String] = [], commonName: String? = nil,
        keyType: TestKeyType = .p256, key: TestKey? = nil,
        notBefore: Date = Date().addingTimeInterval(-3600),
        notAfter: Date = Date().addingTimeInterval(90 * 86_400)
    ) -> TestCertificate {
        let key = key ?? TestKey.make(keyType)
        var sans: [GeneralName] = dnsNames.map { .dnsName($0) }
        sans += ipAddresses.map { .ipAddress(ASN1OctetString(contentBytes: IPAddress($0)!.bytes[...])) }
        let extensions = try! Certificate.Extensions {
            Critical(BasicConstraints.notCertificateAuthority)
            Critical(KeyUsage(digitalSignature: true))
            try ExtendedKeyUsage([.serverAuth])
            SubjectKeyIdentifier(hash: key.key.publicKey)
            AuthorityKeyIdentifier(keyIdentifier: SubjectKeyIdentifier(hash: self.key.key.publicKey).keyIdentifier)
            if !sans.isEmpty { SubjectAlternativeNames(sans) }
        }
        let subject = try! DistinguishedName { CommonName(commonName ?? dnsNames.first ?? ipAddresses.first ?? "leaf") }
        let certificate = try! Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: key.key.publicKey,
            notValidBefore: notBefore, notValidAfter: notAfter, issuer: self.certificate.subject, subject: subject,
            signatureAlgorithm: TestCertificate.signatureAlgorithm(for: self.key.key), extensions: extensions,
            issuerPrivateKey: self.key.key)
        return TestCertificate(certificate: certificate, key: key)
    }

    /// Signs a certificate for `subject`'s name and key as issued by `self` (a cross-sign).
    public func crossSign(_ subject: TestCertificate, notAfter: Date? = nil, pathLength: Int? = nil) -> TestCertificate {
        let extensions = try! Certificate.Extensions {
            Critical(BasicConstraints.isCertificateAuthority(maxPathLength: pathLength))
            Critical(KeyUsage(digitalSignature: true, keyCertSign: true, cRLSign: true))
            SubjectKeyIdentifier(hash: subject.key.key.publicKey)
            AuthorityKeyIdentifier(keyIdentifier: SubjectKeyIdentifier(hash: self.key.key.publicKey).keyIdentifier)
        }
        let certificate = try! Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: subject.key.key.publicKey,
            notValidBefore: subject.certificate.notValidBefore,
            notValidAfter: notAfter ?? subject.certificate.notValidAfter,
            issuer: self.certificate.subject, subject: subject.certificate.subject,
            signatureAlgorithm: TestCertificate.signatureAlgorithm(for: self.key.key), extensions: extensions,
            issuerPrivateKey: self.key.key)
        return TestCertificate(certificate: certificate, key: subject.key)
    }

    /// A configuration entry serving this certificate (plus `chain`) with its PKCS#8 key, inline.
    public func conf(chain: [TestCertificate] = [], domains: DomainList? = nil, isDefault: Bool? = nil, isCA: Bool? = nil) -> CertificateConf {
        CertificateConf(
            domains: domains,
            tlsCert: ([self] + chain).map(\.pem).joined(),
            tlsKey: key.pkcs8PEM,
            isDefault: isDefault,
            isCA: isCA)
    }

    static func signatureAlgorithm(for key: Certificate.PrivateKey) -> Certificate.SignatureAlgorithm {
        let description = String(describing: key)
        if description.contains("P384") { return .ecdsaWithSHA384 }
        if description.contains("RSA") { return .sha256WithRSAEncryption }
        if description.contains("Ed25519") || description.contains("25519") { return .ed25519 }
        return .ecdsaWithSHA256
    }
}
