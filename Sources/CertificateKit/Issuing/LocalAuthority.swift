import Crypto
import Foundation
import SwiftASN1
import X509
import _CryptoExtras

/// An issuer (`is_ca`) entry seen as a certificate authority: which names it may sign
/// for, and the signing of one leaf.
public struct LocalAuthority: Sendable {
    /// What a leaf is for: a server name, or the local IP address of a client that sent no SNI.
    public enum Subject: Hashable, Sendable, CustomStringConvertible {
        case name(ServerName)
        case address(IPAddress)

        public var description: String {
            switch self {
            case .name(let name): return name.text
            case .address(let address): return address.description
            }
        }
    }

    /// Whether a leaf names exactly the requested name, or its parent wildcard
    /// (`a.dev.test` → `*.dev.test`, so one leaf serves every sibling).
    public enum LeafNames: String, Sendable, Codable {
        case exact
        case wildcard
    }

    public static let defaultLeafValidity: TimeInterval = 30 * 86_400

    public let entry: CertificateEntry
    /// The CA certificate, key and chain of the entry.
    public let material: AuthorityMaterial
    public let leafValidity: TimeInterval
    public let leafNames: LeafNames

    /// - Precondition: `entry` is an issuer (`is_ca`) entry.
    public init(entry: CertificateEntry) {
        guard let material = entry.authority else {
            preconditionFailure("LocalAuthority made from the static entry '\(entry.name)'; only issuer entries sign")
        }
        self.entry = entry
        self.material = material
        self.leafValidity = entry.conf.leafValidityDays.map { TimeInterval($0) * 86_400 } ?? Self.defaultLeafValidity
        self.leafNames = entry.conf.leafNames ?? .exact
    }

    /// SHA-256 of the CA certificate: leaves are cached under it, so a rotated CA never
    /// serves a leaf of the old one.
    public var fingerprint: [UInt8] { entry.fingerprint }

    /// Whether the entry's `domains` allow signing for `subject`. `*` allows every valid
    /// name, and the local address of a client without SNI.
    public func allows(_ subject: Subject) -> Bool {
        switch subject {
        case .name(let name):
            return entry.patterns.contains { $0.matches(name) }
        case .address(let address):
            return entry.patterns.contains { $0 == .any || $0 == .ip(address) }
        }
    }

    /// The one name a leaf for `subject` carries (its SAN, its CN when it fits, and its
    /// cache key): the name itself; under `leaf_names: wildcard`, its parent wildcard
    /// (`a.b.example` → `*.b.example`) when the parent has at least two labels (never
    /// `*.example`); an address as its text.
    public func leafName(for subject: Subject) -> String {
        if leafNames == .wildcard, case .name(let name) = subject, let parent = name.parent, parent.contains(".") {
            return "*." + parent
        }
        return subject.description
    }

    /// Signs an ECDSA P-256 leaf for `subject`: SAN = the name (or its parent wildcard),
    /// CN = the same when it fits RFC 5280's 64 characters (else an empty subject and a
    /// critical SAN, see ``CommonNameLimit``), serverAuth, digitalSignature, SKI/AKI, a random serial, notBefore five minutes back,
    /// notAfter capped by the CA's own.
    public func sign(_ subject: Subject, now: Date) throws -> IssuedLeaf {
        let authority = material.certificate.certificate
        let caKey = material.privateKey.key
        let leafKey = P256.Signing.PrivateKey()
        let publicKey = Certificate.PublicKey(leafKey.publicKey)
        let notBefore = max(now.addingTimeInterval(-300), authority.notValidBefore)
        let notAfter = min(now.addingTimeInterval(leafValidity), authority.notValidAfter)
        guard notAfter > now else {
            throw IssueError.authorityExpired(entry.name)
        }
        let san: GeneralName
        let commonName: String
        switch subject {
        case .name:
            let leafName = leafName(for: subject)
            san = .dnsName(leafName)
            commonName = leafName
        case .address(let address):
            san = .ipAddress(ASN1OctetString(contentBytes: address.bytes[...]))
            commonName = address.description
        }
        let authorityKeyIdentifier = (try? authority.extensions.subjectKeyIdentifier)?.keyIdentifier
            ?? SubjectKeyIdentifier(hash: authority.publicKey).keyIdentifier
        let extensions = try Certificate.Extensions {
            Critical(BasicConstraints.notCertificateAuthority)
            Critical(KeyUsage(digitalSignature: true))
            try ExtendedKeyUsage([.serverAuth])
            SubjectKeyIdentifier(hash: publicKey)
            AuthorityKeyIdentifier(keyIdentifier: authorityKeyIdentifier)
            if CommonNameLimit.fits(commonName) {
                SubjectAlternativeNames([san])
            } else {
                Critical(SubjectAlternativeNames([san]))
            }
        }
        let subjectName = CommonNameLimit.fits(commonName) ? try DistinguishedName { CommonName(commonName) } : DistinguishedName()
        let certificate = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: publicKey,
            notValidBefore: notBefore,
            notValidAfter: notAfter,
            issuer: authority.subject,
            subject: subjectName,
            signatureAlgorithm: Self.signatureAlgorithm(for: caKey),
            extensions: extensions,
            issuerPrivateKey: caKey)
        let leaf = try ParsedCertificate(certificate: certificate)
        let key = ParsedPrivateKey(key: Certificate.PrivateKey(leafKey), block: PEMDocument(type: "PRIVATE KEY", derBytes: Array(leafKey.derRepresentation)))
        return IssuedLeaf(chain: [leaf] + material.servedChain, key: key, notBefore: notBefore, notAfter: notAfter)
    }

    static func signatureAlgorithm(for key: Certificate.PrivateKey) -> Certificate.SignatureAlgorithm {
        let algorithms = key.supportedSignatureAlgorithms
        for preferred in [Certificate.SignatureAlgorithm.ecdsaWithSHA256, .ecdsaWithSHA384, .ecdsaWithSHA512, .sha256WithRSAEncryption, .ed25519]
        where algorithms.contains(preferred) {
            return preferred
        }
        return algorithms.first ?? .ecdsaWithSHA256
    }
}

/// A leaf signed by a ``LocalAuthority``: what a handshake serves (leaf + CA chain).
public struct IssuedLeaf: Sendable {
    public let chain: [ParsedCertificate]
    public let key: ParsedPrivateKey
    public let notBefore: Date
    public let notAfter: Date
}

public enum IssueError: Error, CustomStringConvertible {
    case authorityExpired(String)

    public var description: String {
        switch self {
        case .authorityExpired(let name): return "issuer '\(name)' has expired; it signs nothing"
        }
    }
}
