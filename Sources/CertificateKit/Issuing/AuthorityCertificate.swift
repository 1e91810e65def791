import Crypto
import Foundation
import X509

/// A new local CA: a P-256 key and a self-signed certificate with basicConstraints
/// CA:TRUE (pathLen 0: it signs leaves only) and keyCertSign — what `certgate ca init`
/// and a `create_if_missing` issuer entry make.
public struct AuthorityCertificate: Sendable {
    public let certificatePEM: String
    public let privateKeyPEM: String

    public init(commonName: String = "certgate local CA", validityDays: Int = 3_650, now: Date = Date()) throws {
        let key = P256.Signing.PrivateKey()
        let wrapped = Certificate.PrivateKey(key)
        let name = try DistinguishedName {
            CommonName(commonName)
            OrganizationName("certgate")
        }
        let extensions = try Certificate.Extensions {
            Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
            Critical(KeyUsage(digitalSignature: true, keyCertSign: true, cRLSign: true))
            SubjectKeyIdentifier(hash: wrapped.publicKey)
        }
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: wrapped.publicKey,
            notValidBefore: now.addingTimeInterval(-300), notValidAfter: now.addingTimeInterval(TimeInterval(validityDays) * 86_400),
            issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256, extensions: extensions, issuerPrivateKey: wrapped)
        certificatePEM = try certificate.serializeAsPEM().pemString + "\n"
        privateKeyPEM = key.pemRepresentation + "\n"
    }
}
