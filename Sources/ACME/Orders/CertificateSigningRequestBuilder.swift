import Crypto
import SwiftASN1
import X509

/// The CSR sent to `finalize` (RFC 8555 §7.4): a fresh key's public half, every name as a
/// SAN dNSName (the CA takes the names from there), the first name as CN when it fits
/// RFC 5280's 64 characters.
enum CertificateSigningRequestBuilder {
    static func der(names: [String], key: P256.Signing.PrivateKey) throws -> [UInt8] {
        let subject: DistinguishedName
        if let first = names.first, first.count <= 64 {
            subject = try DistinguishedName { CommonName(first) }
        } else {
            subject = DistinguishedName()
        }
        let extensions = try Certificate.Extensions {
            SubjectAlternativeNames(names.map { GeneralName.dnsName($0) })
        }
        var attributes = CertificateSigningRequest.Attributes()
        attributes.insert(try CertificateSigningRequest.Attribute(ExtensionRequest(extensions: extensions)))
        let request = try CertificateSigningRequest(
            version: .v1, subject: subject, privateKey: Certificate.PrivateKey(key),
            attributes: attributes, signatureAlgorithm: .ecdsaWithSHA256)
        var serializer = DER.Serializer()
        try serializer.serialize(request)
        return serializer.serializedBytes
    }
}
