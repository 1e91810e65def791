import SwiftASN1
import X509

/// ARI's certificate identifier (RFC 9773 §4.1): base64url(the keyIdentifier of the
/// certificate's Authority Key Identifier) "." base64url(the DER content octets of its
/// serial number). Used in the `renewalInfo` URL and in a new order's `replaces`.
public enum ARICertificateIdentifier {
    /// Nil when the certificate has no Authority Key Identifier with a key identifier
    /// (then ARI cannot name it).
    public static func of(_ certificate: Certificate) -> String? {
        guard let authorityKeyIdentifier = try? certificate.extensions.authorityKeyIdentifier,
              let keyIdentifier = authorityKeyIdentifier.keyIdentifier else { return nil }
        return Base64URL.encode(keyIdentifier) + "." + Base64URL.encode(derIntegerContent(certificate.serialNumber.bytes))
    }

    /// The content octets of a positive DER INTEGER with this magnitude: no redundant
    /// leading zeros, and one 0x00 in front of a high bit (swift-certificates keeps the
    /// serial's magnitude without it).
    static func derIntegerContent(_ magnitude: ArraySlice<UInt8>) -> [UInt8] {
        var bytes = Array(magnitude.drop { $0 == 0 })
        if bytes.isEmpty { return [0] }
        if bytes[0] & 0x80 != 0 { bytes.insert(0, at: 0) }
        return bytes
    }
}
