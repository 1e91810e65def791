import CertificateKit
import Foundation
import X509

/// `certgate inspect FILE`: the facts of each certificate in a PEM file and the chain
/// certgate would serve for it.
public struct CertificateInspection: Codable, Sendable {
    public struct Facts: Codable, Sendable {
        public var subject: String
        public var issuer: String
        public var serial: String
        public var notBefore: Date
        public var notAfter: Date
        public var daysLeft: Int
        public var state: CertificateValidity.State
        public var key: String
        public var dnsNames: [String]
        public var ipAddresses: [String]
        public var isCA: Bool
        public var subjectKeyIdentifier: String?
        public var authorityKeyIdentifier: String?
        public var sha256Fingerprint: String

        enum CodingKeys: String, CodingKey {
            case subject, issuer, serial, key, state
            case notBefore = "not_before"
            case notAfter = "not_after"
            case daysLeft = "days_left"
            case dnsNames = "dns_names"
            case ipAddresses = "ip_addresses"
            case isCA = "is_ca"
            case subjectKeyIdentifier = "subject_key_identifier"
            case authorityKeyIdentifier = "authority_key_identifier"
            case sha256Fingerprint = "sha256_fingerprint"
        }

        public init(_ parsed: ParsedCertificate, now: Date) {
            let certificate = parsed.certificate
            let validity = CertificateValidity(
                notBefore: certificate.notValidBefore, notAfter: certificate.notValidAfter,
                bufferDays: CertificateConf.defaultBufferDays, now: now)
            subject = certificate.subject.description
            issuer = certificate.issuer.description
            serial = Hex.encode(certificate.serialNumber.bytes, separator: ":")
            notBefore = certificate.notValidBefore
            notAfter = certificate.notValidAfter
            daysLeft = validity.daysLeft
            state = validity.state
            key = certificate.keyDescription
            dnsNames = certificate.dnsNames
            ipAddresses = certificate.ipAddresses.map(\.description)
            isCA = certificate.isCertificateAuthority
            subjectKeyIdentifier = (try? certificate.extensions.subjectKeyIdentifier)?.map { Hex.encode($0.keyIdentifier, separator: ":") }
            authorityKeyIdentifier = (try? certificate.extensions.authorityKeyIdentifier)?.flatMap { $0.keyIdentifier }.map { Hex.encode($0, separator: ":") }
            sha256Fingerprint = parsed.sha256Fingerprint
        }
    }

    /// Every certificate in the file, in order.
    public var certificates: [Facts]
    /// The chain a handshake would carry: the file's own, or the leaf completed from the bundle.
    public var servedChain: [String]
    /// Whether the served chain was completed from the bundled Let's Encrypt certificates.
    public var chainCompleted: Bool

    enum CodingKeys: String, CodingKey {
        case certificates
        case servedChain = "served_chain"
        case chainCompleted = "chain_completed"
    }

    public static func inspect(pem: String, now: Date, completion: ChainCompletion = LetsEncryptBundle.completion) throws(PEMMaterialParser.Failure) -> CertificateInspection {
        let parsed = try PEMMaterialParser.certificates(fromPEM: pem)
        let leaf = parsed[0]
        var served = parsed
        var completed = false
        if parsed.count == 1 && !leaf.certificate.isSelfSigned {
            let chain = completion.chain(for: leaf.certificate, at: now)
            completed = !chain.isEmpty
            served += chain
        }
        return CertificateInspection(
            certificates: parsed.map { Facts($0, now: now) },
            servedChain: served.map { "\($0.certificate.subject) (issuer: \($0.certificate.issuer.commonName ?? $0.certificate.issuer.description))" },
            chainCompleted: completed)
    }
}
