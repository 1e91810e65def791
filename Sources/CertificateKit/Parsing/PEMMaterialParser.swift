import Crypto
import SwiftASN1
import X509
import _CryptoExtras

/// A certificate as parsed from PEM, with the DER it came from (what the TLS layer sends).
public struct ParsedCertificate: Hashable, Sendable {
    public let certificate: Certificate
    public let der: [UInt8]

    public init(certificate: Certificate, der: [UInt8]) {
        self.certificate = certificate
        self.der = der
    }

    public init(der: [UInt8]) throws {
        self.certificate = try Certificate(derEncoded: der)
        self.der = der
    }

    public init(certificate: Certificate) throws {
        var serializer = DER.Serializer()
        try serializer.serialize(certificate)
        self.init(certificate: certificate, der: serializer.serializedBytes)
    }

    /// The certificate as one PEM block.
    public var pem: String { PEMDocument(type: "CERTIFICATE", derBytes: der).pemString }
}

/// A private key as parsed from PEM, with the PEM block it came from.
public struct ParsedPrivateKey: Sendable {
    public let key: Certificate.PrivateKey
    /// The one PEM block holding the key, decoded (an `EC PARAMETERS` block is left out).
    public let block: PEMDocument

    /// The key's PEM block as text.
    public var pem: String { block.pemString }
}

/// Turns PEM text into certificates and keys, with errors that say what is wrong.
/// Throws a bare reason; the caller attaches entry and field.
public enum PEMMaterialParser {
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public let reason: String
        public var description: String { reason }
        init(_ reason: String) { self.reason = reason }
    }

    static let privateKeyLabels: Set<String> = ["PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY"]

    /// Every `CERTIFICATE` block in order: the leaf first, then its chain.
    public static func certificates(fromPEM text: String) throws(Failure) -> [ParsedCertificate] {
        let documents = try documents(in: text)
        let blocks = documents.filter { $0.discriminator == "CERTIFICATE" }
        guard !blocks.isEmpty else {
            throw Failure("no CERTIFICATE block found\(describeLabels(documents))")
        }
        var result: [ParsedCertificate] = []
        result.reserveCapacity(blocks.count)
        for (offset, block) in blocks.enumerated() {
            do {
                result.append(try ParsedCertificate(der: block.derBytes))
            } catch {
                let position = blocks.count == 1 ? "certificate" : "certificate \(offset + 1) of \(blocks.count)"
                throw Failure("\(position) cannot be parsed: \(explain(error, der: block.derBytes))")
            }
        }
        return result
    }

    /// The single private key in `text`: PKCS#8, SEC1 (with or without a leading
    /// `EC PARAMETERS` block) or PKCS#1; P-256, P-384, P-521, RSA ≥ 2048, Ed25519.
    public static func privateKey(fromPEM text: String) throws(Failure) -> ParsedPrivateKey {
        if OctetSearch.contains("ENCRYPTED PRIVATE KEY", in: text) || OctetSearch.contains("Proc-Type: 4,ENCRYPTED", in: text) {
            throw Failure("the private key is encrypted, which is not supported; decrypt it first (openssl pkey -in key.pem -out plain.pem)")
        }
        let block = try keyBlock(fromPEM: text)
        do {
            return ParsedPrivateKey(key: try Certificate.PrivateKey(pemDocument: block), block: block)
        } catch {
            switch ExplicitCurveKey.load(block) {
            case .success(let key)?:
                // Kept (stored, handed to the TLS library) in the named-curve form.
                guard let named = try? key.serializeAsPEM() else { break }
                return ParsedPrivateKey(key: key, block: named)
            case .failure(let failure)?:
                throw failure
            case nil:
                break
            }
            throw Failure("private key (\(block.discriminator)) cannot be parsed: \(explainKey(error, block: block))")
        }
    }

    /// The single private key block of `text`, decoded but not parsed (other blocks, such
    /// as `EC PARAMETERS`, are left out).
    public static func keyBlock(fromPEM text: String) throws(Failure) -> PEMDocument {
        let documents = try documents(in: text)
        let keys = documents.filter { privateKeyLabels.contains($0.discriminator) }
        guard let block = keys.first else {
            throw Failure("no private key block (PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY) found\(describeLabels(documents))")
        }
        guard keys.count == 1 else {
            throw Failure("holds \(keys.count) private keys; exactly one is expected")
        }
        return block
    }

    /// The one private key block of `text` as the TLS layer takes it, found without
    /// parsing the key (no curve arithmetic): for material that was checked in full when it
    /// was committed and provably has not changed since (a restart from the state). Nil when
    /// the text needs the full path: no or several key blocks, an encrypted key, or explicit
    /// curve parameters (those are converted by ``privateKey(fromPEM:)``).
    static func verifiedPrivateKeyBlock(fromPEM text: String) -> PEMDocument? {
        singleKeyBlock(fromPEM: text)
    }

    /// The one private key block of `text` as the TLS layer takes it and the EC public key
    /// it states, found without key arithmetic; nil when the text needs the full path (as
    /// for ``verifiedPrivateKeyBlock(fromPEM:)``) or the key states no public key. See
    /// ``StatedECPublicKey`` for what a match with a certificate does and does not prove.
    static func statedKey(fromPEM text: String) -> (block: PEMDocument, publicKey: StatedECPublicKey)? {
        guard let block = singleKeyBlock(fromPEM: text), let publicKey = StatedECPublicKey(privateKeyBlock: block) else { return nil }
        return (block, publicKey)
    }

    /// The single private key block of `text`; nil for none or several, an encrypted key,
    /// or explicit curve parameters.
    private static func singleKeyBlock(fromPEM text: String) -> PEMDocument? {
        guard !OctetSearch.contains("ENCRYPTED", in: text), let documents = try? documents(in: text) else { return nil }
        let keys = documents.filter { privateKeyLabels.contains($0.discriminator) }
        guard keys.count == 1, let block = keys.first, !ExplicitCurveKey.hasExplicitParameters(block) else { return nil }
        return block
    }

    /// Whether `text` holds a private key block (a combined cert+key file).
    public static func containsPrivateKey(_ text: String) -> Bool {
        OctetSearch.contains("PRIVATE KEY-----", in: text)
    }

    private static func documents(in text: String) throws(Failure) -> [PEMDocument] {
        let documents: [PEMDocument]
        do {
            documents = try PEMDocument.parseMultiple(pemString: text)
        } catch {
            // swift-asn1's error quotes the text, which may be a private key.
            throw Failure(PEMDamage.describe(text))
        }
        // A block swift-asn1 skipped (a BEGIN line cut short, a block with no END line
        // after a whole one, a lone END) is damage too: say so rather than "no key found".
        // Looked for only when the markers and the blocks read do not add up.
        let begins = OctetSearch.count("-----BEGIN", in: text)
        if begins != documents.count || OctetSearch.count("-----END", in: text) != begins,
           let problem = PEMDamage.firstProblem(in: text) {
            throw Failure("not valid PEM: " + problem)
        }
        return documents
    }

    private static func describeLabels(_ documents: [PEMDocument]) -> String {
        let labels = documents.map(\.discriminator)
        return labels.isEmpty ? "" : " (found: \(labels.joined(separator: ", ")))"
    }

    /// Says "RSA key of N bits" for the too-small keys swift-crypto refuses, and names
    /// explicit EC parameters.
    private static func explain(_ error: any Error, der: [UInt8]) -> String {
        if let bits = rsaKeyBitsOfCertificate(der: der), bits < 2048 {
            return "RSA key of \(bits) bits; at least 2048 bits are required"
        }
        if hasExplicitCurveParameters(certificate: der) {
            return "its public key states explicit EC curve parameters, which RFC 5480 §2.1.1 forbids in certificates and "
                + "clients refuse; issue it again from the key in named-curve form (openssl ec -in KEY -param_enc named_curve -out KEY)"
        }
        return LibraryErrorReason.describe(error)
    }

    private static func explainKey(_ error: any Error, block: PEMDocument) -> String {
        if block.discriminator == "RSA PRIVATE KEY" || block.discriminator == "PRIVATE KEY" {
            let bits: Int?
            if block.discriminator == "RSA PRIVATE KEY" {
                bits = (try? _RSA.Signing.PrivateKey(unsafeDERRepresentation: block.derBytes))?.keySizeInBits
            } else {
                bits = (try? _RSA.Signing.PrivateKey(unsafePEMRepresentation: block.pemString))?.keySizeInBits
            }
            if let bits, bits < 2048 {
                return "RSA key of \(bits) bits; at least 2048 bits are required"
            }
        }
        return LibraryErrorReason.describe(error)
    }

    /// Reads the RSA modulus size from a certificate's SubjectPublicKeyInfo without
    /// swift-crypto's 2048-bit floor (only to explain a refusal).
    private static func rsaKeyBitsOfCertificate(der: [UInt8]) -> Int? {
        guard let root = try? DER.parse(der),
              case .constructed(let certificateNodes) = root.content,
              let tbs = certificateNodes.first(where: { _ in true }),
              case .constructed(let tbsNodes) = tbs.content else { return nil }
        for node in tbsNodes {
            guard case .constructed = node.content,
                  case let spki = subjectPublicKeyInfoBytes(node) else { continue }
            if let key = try? _RSA.Signing.PublicKey(unsafeDERRepresentation: spki) {
                return key.keySizeInBits
            }
        }
        return nil
    }

    /// Whether the certificate's SubjectPublicKeyInfo is id-ecPublicKey with an explicit
    /// `ECParameters` SEQUENCE where a curve's OID belongs.
    private static func hasExplicitCurveParameters(certificate der: [UInt8]) -> Bool {
        guard let root = try? DER.parse(der), let tbs = ExplicitCurveKey.children(root)?.first,
              let fields = ExplicitCurveKey.children(tbs) else { return false }
        return fields.contains { field in
            guard let spki = ExplicitCurveKey.children(field), spki.count == 2, spki[1].identifier == .bitString,
                  let algorithm = ExplicitCurveKey.children(spki[0]), algorithm.count == 2,
                  let oid = try? ASN1ObjectIdentifier(derEncoded: algorithm[0]) else { return false }
            return oid == .AlgorithmIdentifier.idEcPublicKey && algorithm[1].identifier == .sequence
        }
    }

    private static func subjectPublicKeyInfoBytes(_ node: ASN1Node) -> [UInt8] {
        var serializer = DER.Serializer()
        serializer.serialize(node)
        return serializer.serializedBytes
    }
}
