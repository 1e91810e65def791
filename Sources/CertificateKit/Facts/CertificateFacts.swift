import Crypto
import Foundation
import SwiftASN1
import X509

extension DistinguishedName {
    /// The first common name, or `nil`.
    public var commonName: String? {
        for rdn in self {
            for attribute in rdn where attribute.type == .RDNAttributeType.commonName {
                return String(describing: attribute.value)
            }
        }
        return nil
    }
}

extension Certificate {
    /// Whether subject and issuer are the same name and the certificate's own key signed it.
    public var isSelfSigned: Bool {
        subject == issuer && publicKey.isValidSignature(signature, for: self)
    }

    /// Whether `issuer` signed this certificate: names match, the Authority Key
    /// Identifier (when present) equals the issuer's Subject Key Identifier, and the
    /// signature verifies with the issuer's key.
    public func isIssued(by issuer: Certificate) -> Bool {
        guard self.issuer == issuer.subject else { return false }
        if let aki = (try? extensions.authorityKeyIdentifier)?.keyIdentifier,
           let ski = (try? issuer.extensions.subjectKeyIdentifier)?.keyIdentifier,
           aki != ski {
            return false
        }
        return issuer.publicKey.isValidSignature(signature, for: self)
    }

    /// DNS names in the subjectAlternativeName extension, as written.
    public var dnsNames: [String] {
        guard let names = try? extensions.subjectAlternativeNames else { return [] }
        return names.compactMap { if case .dnsName(let name) = $0 { return name } else { return nil } }
    }

    /// IP addresses in the subjectAlternativeName extension.
    public var ipAddresses: [IPAddress] {
        guard let names = try? extensions.subjectAlternativeNames else { return [] }
        return names.compactMap { if case .ipAddress(let octets) = $0 { return IPAddress(bytes: octets.bytes) } else { return nil } }
    }

    /// Whether basicConstraints says CA and key usage (when present) allows keyCertSign.
    public var isCertificateAuthority: Bool {
        guard case .some(.isCertificateAuthority) = try? extensions.basicConstraints else { return false }
        if let usage = try? extensions.keyUsage {
            return usage.keyCertSign
        }
        return true
    }

    /// A short name of the key: `ECDSA P-256`, `RSA 2048`, `Ed25519`.
    public var keyDescription: String {
        PublicKeyDescription.describe(publicKey)
    }
}

enum PublicKeyDescription {
    static func describe(_ key: Certificate.PublicKey) -> String {
        if P256.Signing.PublicKey(key) != nil { return "ECDSA P-256" }
        if P384.Signing.PublicKey(key) != nil { return "ECDSA P-384" }
        if P521.Signing.PublicKey(key) != nil { return "ECDSA P-521" }
        if Curve25519.Signing.PublicKey(key) != nil { return "Ed25519" }
        let text = String(describing: key)  // "RSA2048.PublicKey"
        if text.hasPrefix("RSA"), let bits = Int(text.dropFirst(3).prefix { $0.isNumber }) {
            return "RSA \(bits)"
        }
        return text
    }
}

/// Hex helpers for fingerprints and key identifiers.
public enum Hex {
    public static func encode(_ bytes: some Sequence<UInt8>, separator: String = "") -> String {
        bytes.map { byte in
            let digits = String(byte, radix: 16, uppercase: true)
            return digits.count == 1 ? "0" + digits : digits
        }.joined(separator: separator)
    }
}

extension ParsedCertificate {
    /// SHA-256 of the DER, upper-case hex with colons (as `openssl x509 -fingerprint -sha256`).
    public var sha256Fingerprint: String {
        Hex.encode(SHA256.hash(data: der), separator: ":")
    }
}
