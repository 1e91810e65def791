import Crypto
import Foundation
import X509

/// One validated `certificates:` entry: checked, its chain completed and its served names
/// known. Immutable; shared between successive sets while its content is unchanged (hence
/// a class: identity is what a rebuild reuses).
///
/// An entry keeps only what lookup, listings, metrics and the validity monitor need — the
/// leaf's facts, fingerprints, the TLS layer's objects — not the parsed certificate, key or
/// PEM text they were made from: those are a third of a static entry's memory. An issuer
/// entry also keeps its CA certificate and key (``authority``), which signing needs.
public final class CertificateEntry: Sendable {
    public enum Kind: String, Sendable, Codable {
        /// Serves its own certificate.
        case `static`
        /// A CA (`is_ca`) that signs a leaf for each allowed name.
        case issuer
    }

    public let name: String
    public let conf: CertificateConf
    /// SHA-256 of the PEM text the entry was built from (after reading files / decoding
    /// base64); with `conf`, the content identity a rebuild compares.
    public let contentDigest: [UInt8]
    /// Whether `tls_cert` or `tls_key` is a file path: such an entry is re-read on every
    /// rebuild, since the file may change while the configuration does not.
    public let readsFiles: Bool
    /// The stamps of those files when they were read: a rebuild that finds the same
    /// stamps (and the same `conf`) reuses the entry without reading them.
    public let fileStamps: [FileStamp]
    /// The leaf's validity, subject and issuer.
    public let leaf: LeafFacts
    /// SHA-256 of the leaf's DER (for an issuer: the CA's identity in the leaf cache).
    public let fingerprint: [UInt8]
    /// SHA-256 of each certificate sent after the leaf: the entry's own chain (duplicates
    /// and a self-signed root left out), or the completed one.
    public let chainFingerprints: [[UInt8]]
    /// The subject of each certificate a handshake sends, leaf first.
    public let servedChainSubjects: [String]
    /// Whether the chain came from the bundled Let's Encrypt certificates.
    public let chainWasCompleted: Bool
    /// The names served (static) or the patterns it may sign for (issuer).
    public let patterns: [NamePattern]
    public let kind: Kind
    public let isDefault: Bool
    /// Things worth an operator's attention that do not stop the entry from serving.
    public let warnings: [String]
    /// The TLS layer's form of this entry (CertificateKitNIO's `NIOServingMaterial`: checked
    /// when the entry is built, its NIOSSL objects made at the first handshake); `nil` when
    /// the set was built without a TLS layer.
    public let servingMaterial: (any Sendable)?
    /// An issuer entry's CA certificate, key and chain; `nil` for a static entry.
    public let authority: AuthorityMaterial?

    init(
        name: String, conf: CertificateConf, content: EntryContent, fileStamps: [FileStamp], leaf: ParsedCertificate,
        chain: [ParsedCertificate], chainWasCompleted: Bool, privateKey: ParsedPrivateKey?,
        patterns: [NamePattern], kind: Kind, isDefault: Bool, warnings: [String],
        servingMaterial: (any Sendable)?
    ) {
        self.name = name
        self.conf = conf
        self.contentDigest = content.digest
        self.readsFiles = [conf.tlsCert, conf.tlsKey].contains { value in value.map { MaterialSource($0).isFile } ?? false }
        self.fileStamps = fileStamps
        self.leaf = LeafFacts(leaf.certificate)
        self.fingerprint = Array(SHA256.hash(data: leaf.der))
        self.chainFingerprints = chain.map { Array(SHA256.hash(data: $0.der)) }
        self.servedChainSubjects = [self.leaf.subject] + chain.map { $0.certificate.subject.description }
        self.chainWasCompleted = chainWasCompleted
        self.patterns = patterns
        self.kind = kind
        self.isDefault = isDefault
        self.warnings = warnings
        self.servingMaterial = servingMaterial
        // An issuer is always validated in full, so it always has its parsed key.
        self.authority = kind == .issuer ? privateKey.map { AuthorityMaterial(certificate: leaf, privateKey: $0, chain: chain) } : nil
    }

    /// The leaf's validity against the entry's `buffer_days`.
    public func validity(at now: Date) -> CertificateValidity {
        CertificateValidity(notBefore: leaf.notBefore, notAfter: leaf.notAfter, bufferDays: conf.effectiveBufferDays, now: now)
    }

    /// The leaf's SHA-256 fingerprint, upper-case hex with colons (as
    /// `openssl x509 -fingerprint -sha256` and ``ParsedCertificate/sha256Fingerprint``).
    public var sha256Fingerprint: String { Hex.encode(fingerprint, separator: ":") }
}

/// What is kept of an entry's leaf certificate.
public struct LeafFacts: Hashable, Sendable {
    public let notBefore: Date
    public let notAfter: Date
    /// The subject as RFC 4514 text (`CN=shop.test,O=Example`).
    public let subject: String
    /// The issuer's common name, or its whole name as text when it has none.
    public let issuer: String

    init(_ certificate: Certificate) {
        notBefore = certificate.notValidBefore
        notAfter = certificate.notValidAfter
        subject = certificate.subject.description
        issuer = certificate.issuer.commonName ?? certificate.issuer.description
    }
}

/// An issuer entry's CA: what ``LocalAuthority`` signs with and sends after each leaf.
public struct AuthorityMaterial: Sendable {
    /// The CA certificate (the entry's leaf).
    public let certificate: ParsedCertificate
    public let privateKey: ParsedPrivateKey
    /// What is sent after the CA certificate: its own chain, or the completed one.
    public let chain: [ParsedCertificate]

    /// The CA certificate, then its chain: what follows an issued leaf.
    public var servedChain: [ParsedCertificate] { [certificate] + chain }
}

/// The resolved PEM text of an entry's certificate and key.
public struct EntryContent: Hashable, Sendable {
    public let certificatePEM: String
    public let keyPEM: String

    public init(certificatePEM: String, keyPEM: String) {
        self.certificatePEM = certificatePEM
        self.keyPEM = keyPEM
    }

    /// SHA-256 over both texts (each preceded by its length, so no two pairs collide by
    /// moving bytes from one to the other).
    public var digest: [UInt8] {
        var hasher = SHA256()
        for text in [certificatePEM, keyPEM] {
            withUnsafeBytes(of: UInt64(text.utf8.count).bigEndian) { hasher.update(bufferPointer: $0) }
            hasher.update(data: Data(text.utf8))
        }
        return Array(hasher.finalize())
    }
}
