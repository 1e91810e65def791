import Crypto
import Foundation
import X509

/// One validated `certificates:` entry: parsed, checked, its chain completed and its
/// served names known. Immutable; shared between successive sets while its content
/// is unchanged (hence a class: identity is what a rebuild reuses).
public final class CertificateEntry: Sendable {
    public enum Kind: String, Sendable, Codable {
        /// Serves its own certificate.
        case `static`
        /// A CA (`is_ca`) that signs a leaf for each allowed name.
        case issuer
    }

    public let name: String
    public let conf: CertificateConf
    /// The PEM text the entry was built from (after reading files / decoding base64);
    /// with `conf`, the content identity a rebuild compares.
    public let content: EntryContent
    /// Whether `tls_cert` or `tls_key` is a file path: such an entry is re-read on every
    /// rebuild, since the file may change while the configuration does not.
    public let readsFiles: Bool
    public let leaf: ParsedCertificate
    /// SHA-256 of the leaf's DER (for an issuer: the CA's identity in the leaf cache).
    public let fingerprint: [UInt8]
    /// What is served after the leaf: the entry's own chain, or the completed one.
    public let chain: [ParsedCertificate]
    /// Whether `chain` came from the bundled Let's Encrypt certificates.
    public let chainWasCompleted: Bool
    public let privateKey: ParsedPrivateKey
    /// The names served (static) or the patterns it may sign for (issuer).
    public let patterns: [NamePattern]
    public let kind: Kind
    public let isDefault: Bool
    /// Things worth an operator's attention that do not stop the entry from serving.
    public let warnings: [String]
    /// The TLS layer's ready-made form of this entry (NIOSSL objects), made once when
    /// the entry is built; `nil` when the set was built without a TLS layer.
    public let servingMaterial: (any Sendable)?

    init(
        name: String, conf: CertificateConf, content: EntryContent, leaf: ParsedCertificate,
        chain: [ParsedCertificate], chainWasCompleted: Bool, privateKey: ParsedPrivateKey,
        patterns: [NamePattern], kind: Kind, isDefault: Bool, warnings: [String],
        servingMaterial: (any Sendable)?
    ) {
        self.name = name
        self.conf = conf
        self.content = content
        self.readsFiles = [conf.tlsCert, conf.tlsKey].contains { value in value.map { MaterialSource($0).isFile } ?? false }
        self.leaf = leaf
        self.fingerprint = Array(SHA256.hash(data: leaf.der))
        self.chain = chain
        self.chainWasCompleted = chainWasCompleted
        self.privateKey = privateKey
        self.patterns = patterns
        self.kind = kind
        self.isDefault = isDefault
        self.warnings = warnings
        self.servingMaterial = servingMaterial
    }

    /// The leaf's validity against the entry's `buffer_days`.
    public func validity(at now: Date) -> CertificateValidity {
        CertificateValidity(
            notBefore: leaf.certificate.notValidBefore,
            notAfter: leaf.certificate.notValidAfter,
            bufferDays: conf.effectiveBufferDays,
            now: now
        )
    }

    /// Leaf first, then the chain: what a handshake sends.
    public var servedChain: [ParsedCertificate] { [leaf] + chain }
}

/// The resolved PEM text of an entry's certificate and key.
public struct EntryContent: Hashable, Sendable {
    public let certificatePEM: String
    public let keyPEM: String

    public init(certificatePEM: String, keyPEM: String) {
        self.certificatePEM = certificatePEM
        self.keyPEM = keyPEM
    }
}
