import X509

/// What an entry's `tls_cert` chain looks like once checked, the way the certificates
/// will be sent in a handshake (RFC 8446 §4.4.2: the leaf first, each following
/// certificate certifying the one before it; a self-signed root may be left out, as
/// clients hold their own).
///
/// - A certificate given twice is sent once (a warning says which).
/// - A self-signed root after the leaf is not sent (a warning says which).
/// - A key that matches a certificate other than the first, or a certificate that is not
///   signed by the next one while another certificate of the file did sign it, is an
///   error that says which certificate is where ("the first certificate must be the leaf;
///   certificate 3 matches the key").
///
/// Certificates are numbered as in the file, from 1, in every message.
struct ChainHygiene {
    /// The leaf followed by the certificates to send after it.
    var served: [ParsedCertificate] = []
    /// Reasons for the `tls_cert` field (or the key's field, see ``keyMismatch``).
    var errors: [String] = []
    /// The key matches no certificate of the file.
    var keyMismatch = false
    var warnings: [String] = []

    /// What is known of the private key.
    enum Key {
        /// Its public half, to find the certificate it belongs to.
        case publicKey(Certificate.PublicKey)
        /// It belongs to the first certificate (shown otherwise): the chain's order is checked.
        case matchesFirst
    }

    /// - Parameter key: nil for material whose key and chain order were checked when it was
    ///   committed (only the chain sent and the warnings are worked out: no key comparison,
    ///   no signature check).
    init(_ certificates: [ParsedCertificate], key: Key?) {
        // Positions in the file, from 1, of the certificates kept (first copies only).
        let kept = certificates.count == 1 ? [(position: 1, certificate: certificates[0])] : firstCopies(of: certificates)
        guard let leaf = kept.first else { return }
        guard let key else {
            served = [leaf.certificate] + kept.dropFirst().filter { !$0.certificate.certificate.isSelfSigned }.map(\.certificate)
            warnings += kept.dropFirst().filter { $0.certificate.certificate.isSelfSigned }.map(Self.selfSignedRootWarning)
            return
        }

        if case .publicKey(let key) = key, leaf.certificate.certificate.publicKey != key {
            if let match = kept.dropFirst().first(where: { $0.certificate.certificate.publicKey == key }) {
                errors.append("the first certificate must be the leaf; certificate \(match.position) (\(Self.describe(match.certificate.certificate))) matches the key")
            } else {
                keyMismatch = true
            }
        }
        for index in kept.indices.dropLast() {
            let child = kept[index]
            let next = kept[index + 1]
            guard !Self.signed(next.certificate.certificate, child.certificate.certificate) else { continue }
            if let signer = kept.first(where: { $0.position != child.position && Self.signed($0.certificate.certificate, child.certificate.certificate) }) {
                errors.append("certificate \(signer.position) (\(Self.describe(signer.certificate.certificate))) signed certificate \(child.position) (\(Self.describe(child.certificate.certificate))) but certificate \(next.position) follows it; the chain must go leaf first, then each issuer in turn")
            } else {
                errors.append("certificate \(next.position) (\(Self.describe(next.certificate.certificate))) did not sign certificate \(child.position) (\(Self.describe(child.certificate.certificate))); the chain must go leaf first, then each issuer")
            }
        }

        served = [leaf.certificate]
        for item in kept.dropFirst() {
            if item.certificate.certificate.isSelfSigned {
                warnings.append(Self.selfSignedRootWarning(item))
            } else {
                served.append(item.certificate)
            }
        }
    }

    private static func selfSignedRootWarning(_ item: (position: Int, certificate: ParsedCertificate)) -> String {
        "certificate \(item.position) (\(describe(item.certificate.certificate))) is a self-signed root; it is not sent (clients use their own trust store)"
    }

    /// Each certificate once, at its first position; a warning for every later copy.
    private mutating func firstCopies(of certificates: [ParsedCertificate]) -> [(position: Int, certificate: ParsedCertificate)] {
        var kept: [(position: Int, certificate: ParsedCertificate)] = []
        var firstPosition: [[UInt8]: Int] = [:]
        for (offset, certificate) in certificates.enumerated() {
            if let first = firstPosition[certificate.der] {
                warnings.append("certificate \(offset + 1) is the same as certificate \(first) (\(Self.describe(certificate.certificate))); it is sent once")
                continue
            }
            firstPosition[certificate.der] = offset + 1
            kept.append((offset + 1, certificate))
        }
        return kept
    }

    private static func signed(_ parent: Certificate, _ child: Certificate) -> Bool {
        parent.publicKey.isValidSignature(child.signature, for: child)
    }

    static func describe(_ certificate: Certificate) -> String {
        certificate.subject.commonName.map { "CN=\($0)" } ?? "\(certificate.subject)"
    }
}
