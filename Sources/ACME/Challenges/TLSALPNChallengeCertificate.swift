import Crypto
import Foundation
import SwiftASN1
import X509

/// The validation certificate of `tls-alpn-01` (RFC 8737 §3): self-signed, one SAN
/// dNSName (the identifier; for a wildcard its base name is never asked), and the critical
/// `id-pe-acmeIdentifier` extension (1.3.6.1.5.5.7.1.31) whose value is the DER OCTET STRING
/// of SHA-256(key authorization). Served only to a ClientHello that offers `acme-tls/1`.
public struct TLSALPNChallengeCertificate: Sendable {
    public static let alpnProtocol = "acme-tls/1"
    public static let acmeIdentifierOID: ASN1ObjectIdentifier = [1, 3, 6, 1, 5, 5, 7, 1, 31]

    public let certificate: Certificate
    public let privateKey: P256.Signing.PrivateKey

    /// - Parameter name: the identifier's DNS name (lower case, no trailing dot).
    public init(name: String, keyAuthorization: KeyAuthorization, now: Date = Date()) throws {
        let key = P256.Signing.PrivateKey()
        var value = DER.Serializer()
        try value.serialize(ASN1OctetString(contentBytes: keyAuthorization.tlsALPN01Digest[...]))
        let identifier = Certificate.Extension(oid: Self.acmeIdentifierOID, critical: true, value: value.serializedBytes[...])
        let subject = try DistinguishedName { CommonName("certgate tls-alpn-01") }
        let extensions = try Certificate.Extensions {
            SubjectAlternativeNames([.dnsName(name)])
            identifier
        }
        self.certificate = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: Certificate.PublicKey(key.publicKey),
            notValidBefore: now.addingTimeInterval(-300),
            notValidAfter: now.addingTimeInterval(7 * 86_400),
            issuer: subject,
            subject: subject,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: extensions,
            issuerPrivateKey: Certificate.PrivateKey(key))
        self.privateKey = key
    }

    /// The certificate's DER.
    public func derBytes() throws -> [UInt8] {
        var serializer = DER.Serializer()
        try serializer.serialize(certificate)
        return serializer.serializedBytes
    }
}
