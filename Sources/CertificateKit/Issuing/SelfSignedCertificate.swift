import Crypto
import Foundation
import SwiftASN1
import X509

/// A self-signed ECDSA P-256 certificate for a set of names, as `certgate run` creates
/// for an entry with `create_if_missing` (the out-of-the-box `localhost` certificate).
public struct SelfSignedCertificate: Sendable {
    public let certificatePEM: String
    public let privateKeyPEM: String

    /// - Parameters:
    ///   - names: DNS names and IP addresses (the first is also the common name when it
    ///     fits RFC 5280's 64 characters; else the common name is `certgate`).
    ///   - validity: how long from `now` (minus five minutes for clock skew).
    public init(names: [String], validity: TimeInterval = 365 * 86_400, now: Date = Date()) throws {
        let key = P256.Signing.PrivateKey()
        let subjectKey = Certificate.PrivateKey(key)
        var sans: [GeneralName] = []
        for name in names {
            if let address = IPAddress(name) {
                sans.append(.ipAddress(ASN1OctetString(contentBytes: address.bytes[...])))
            } else {
                sans.append(.dnsName(name))
            }
        }
        let commonName = names.first.flatMap { CommonNameLimit.fits($0) ? $0 : nil } ?? "certgate"
        let subject = try DistinguishedName {
            CommonName(commonName)
            OrganizationName("certgate self-signed")
        }
        let extensions = try Certificate.Extensions {
            Critical(BasicConstraints.notCertificateAuthority)
            Critical(KeyUsage(digitalSignature: true))
            try ExtendedKeyUsage([.serverAuth])
            SubjectKeyIdentifier(hash: subjectKey.publicKey)
            if !sans.isEmpty { SubjectAlternativeNames(sans) }
        }
        let certificate = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: subjectKey.publicKey,
            notValidBefore: now.addingTimeInterval(-300),
            notValidAfter: now.addingTimeInterval(validity),
            issuer: subject,
            subject: subject,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: extensions,
            issuerPrivateKey: subjectKey)
        certificatePEM = try certificate.serializeAsPEM().pemString + "\n"
        privateKeyPEM = key.pemRepresentation + "\n"
    }
}
