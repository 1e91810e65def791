import Crypto
import Foundation
import X509

/// Certificates for the benchmarks: one CA, and leaves it signs (PEM text).
public struct BenchCertificates: Sendable {
    public let caKey: P256.Signing.PrivateKey
    public let caName: DistinguishedName
    public let caCert: Certificate

    public init() throws {
        caKey = P256.Signing.PrivateKey()
        caName = try DistinguishedName { CommonName("certgate bench CA") }
        caCert = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(caKey.publicKey),
            notValidBefore: Date().addingTimeInterval(-3600), notValidAfter: Date().addingTimeInterval(3650 * 86_400),
            issuer: caName, subject: caName, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil))
                Critical(KeyUsage(keyCertSign: true))
            }, issuerPrivateKey: .init(caKey))
    }

    /// A P-256 leaf for `names` (the first is the CN), valid 90 days.
    public func leaf(names: [String]) throws -> (cert: String, key: String) {
        let key = P256.Signing.PrivateKey()
        let cert = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey),
            notValidBefore: Date().addingTimeInterval(-3600), notValidAfter: Date().addingTimeInterval(90 * 86_400),
            issuer: caName, subject: try DistinguishedName { CommonName(names[0]) }, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                SubjectAlternativeNames(names.map { .dnsName($0) })
            }, issuerPrivateKey: .init(caKey))
        return (try cert.serializeAsPEM().pemString, key.pemRepresentation)
    }
}
