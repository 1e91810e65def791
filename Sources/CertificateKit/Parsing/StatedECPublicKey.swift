import SwiftASN1
import X509

/// An EC public key as a file states it, read without key arithmetic: the named curve and
/// the point's octets — from a certificate's subjectPublicKeyInfo (RFC 5480 §2), or from
/// the optional `publicKey` field a private key carries (SEC 1 `ECPrivateKey`, RFC 5915 §3;
/// the same structure inside PKCS#8, RFC 5208/5958).
///
/// A certificate and a private key stating equal keys were made for each other *if* the
/// private key's scalar really yields the public key it states. That last part is
/// arithmetic this type does not do: the TLS library does it when it loads the key
/// (BoringSSL's `EC_KEY_check_key` multiplies the scalar by the base point and compares),
/// so a match here stands only for material the TLS library then accepts.
struct StatedECPublicKey: Equatable, Sendable {
    /// P-256, P-384 or P-521.
    let curve: ASN1ObjectIdentifier
    /// The point as encoded (uncompressed `04 || X || Y`, or compressed).
    let point: [UInt8]

    private static let namedCurves: Set<ASN1ObjectIdentifier> = [
        .NamedCurves.secp256r1, .NamedCurves.secp384r1, .NamedCurves.secp521r1,
    ]

    /// The key a certificate was issued for; nil unless it is an EC key on a named curve.
    init?(certificateDER der: [UInt8]) {
        // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signature };
        // TBSCertificate ::= SEQUENCE { [0] version OPTIONAL, serialNumber, signature,
        //   issuer, validity, subject, subjectPublicKeyInfo, … } (RFC 5280 §4.1).
        // Walked element by element (this runs once per entry of a set being built): only
        // the subjectPublicKeyInfo's own elements are decoded.
        guard let spkiDER = der.withUnsafeBufferPointer({ Self.subjectPublicKeyInfo(in: $0) }),
              let spki = try? DER.parse(spkiDER), let fields = Self.children(spki), fields.count == 2,
              let algorithm = Self.children(fields[0]), algorithm.count == 2,
              let algorithmID = try? ASN1ObjectIdentifier(derEncoded: algorithm[0]), algorithmID == .AlgorithmIdentifier.idEcPublicKey,
              let curve = try? ASN1ObjectIdentifier(derEncoded: algorithm[1]), Self.namedCurves.contains(curve),
              let point = Self.bitStringOctets(fields[1]) else { return nil }
        self.curve = curve
        self.point = point
    }

    /// The DER of a certificate's subjectPublicKeyInfo (tag to end), found by skipping the
    /// elements before it; nil when the certificate is not shaped so.
    private static func subjectPublicKeyInfo(in der: UnsafeBufferPointer<UInt8>) -> [UInt8]? {
        var cursor = DERCursor(der)
        guard let certificate = cursor.element(), certificate.tag == 0x30 else { return nil }
        var inCertificate = DERCursor(rebasing: der, certificate.contents)
        guard let tbs = inCertificate.element(), tbs.tag == 0x30 else { return nil }
        var fields = DERCursor(rebasing: der, tbs.contents)
        guard var field = fields.element() else { return nil }
        if field.tag == 0xA0 {  // [0] version
            guard let next = fields.element() else { return nil }
            field = next
        }
        // serialNumber, signature, issuer, validity, subject: five elements, then the key.
        for _ in 0..<5 {
            guard let next = fields.element() else { return nil }
            field = next
        }
        guard field.tag == 0x30 else { return nil }
        return Array(der[field.whole])
    }

    /// The public key a private key block states; nil when it states none, is not an EC
    /// key on a named curve, or its curve is given twice and differently.
    init?(privateKeyBlock block: PEMDocument) {
        guard let root = try? DER.parse(block.derBytes) else { return nil }
        let sec1: ASN1Node
        var curve: ASN1ObjectIdentifier?
        switch block.discriminator {
        case "EC PRIVATE KEY":
            sec1 = root
        case "PRIVATE KEY":
            // PrivateKeyInfo ::= SEQUENCE { version, AlgorithmIdentifier { id-ecPublicKey,
            //   namedCurve }, privateKey OCTET STRING (an ECPrivateKey), … }
            guard let fields = Self.children(root), fields.count >= 3,
                  let algorithm = Self.children(fields[1]), algorithm.count == 2,
                  let algorithmID = try? ASN1ObjectIdentifier(derEncoded: algorithm[0]), algorithmID == .AlgorithmIdentifier.idEcPublicKey,
                  let named = try? ASN1ObjectIdentifier(derEncoded: algorithm[1]),
                  fields[2].identifier == .octetString, case .primitive(let inner) = fields[2].content,
                  let parsed = try? DER.parse(inner) else { return nil }
            sec1 = parsed
            curve = named
        default:
            return nil
        }
        // ECPrivateKey ::= SEQUENCE { version INTEGER (1), privateKey OCTET STRING,
        //   parameters [0] ECParameters OPTIONAL, publicKey [1] BIT STRING OPTIONAL }
        guard let fields = Self.children(sec1), fields.count >= 3, fields[1].identifier == .octetString else { return nil }
        var point: [UInt8]?
        for field in fields.dropFirst(2) {
            switch field.identifier {
            case ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific):
                guard let inner = Self.children(field)?.first, let named = try? ASN1ObjectIdentifier(derEncoded: inner) else { return nil }
                if let curve, curve != named { return nil }
                curve = named
            case ASN1Identifier(tagWithNumber: 1, tagClass: .contextSpecific):
                guard let inner = Self.children(field)?.first, let octets = Self.bitStringOctets(inner) else { return nil }
                point = octets
            default:
                return nil
            }
        }
        guard let curve, Self.namedCurves.contains(curve), let point else { return nil }
        self.curve = curve
        self.point = point
    }

    private static func children(_ node: ASN1Node) -> [ASN1Node]? {
        guard case .constructed(let nodes) = node.content else { return nil }
        return Array(nodes)
    }

    /// The octets of a BIT STRING with no unused bits.
    private static func bitStringOctets(_ node: ASN1Node) -> [UInt8]? {
        guard node.identifier == .bitString, case .primitive(let bytes) = node.content,
              bytes.count > 1, bytes.first == 0 else { return nil }
        return Array(bytes.dropFirst())
    }
}

/// Steps over DER elements (RFC 5280's definite-length encoding) without decoding them.
private struct DERCursor {
    struct Element {
        let tag: UInt8
        /// The whole element, tag to end, as offsets into the buffer.
        let whole: Range<Int>
        let contents: Range<Int>
    }

    private let buffer: UnsafeBufferPointer<UInt8>
    private var position: Int
    private let end: Int

    init(_ buffer: UnsafeBufferPointer<UInt8>) {
        self.buffer = buffer
        position = 0
        end = buffer.count
    }

    /// A cursor over `range` of `buffer`.
    init(rebasing buffer: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) {
        self.buffer = buffer
        position = range.lowerBound
        end = range.upperBound
    }

    /// The next element; nil at the end or where the encoding is not DER's.
    mutating func element() -> Element? {
        let start = position
        guard end - position >= 2 else { return nil }
        let tag = buffer[position]
        guard tag & 0x1F != 0x1F else { return nil }  // multi-octet tags do not occur here
        var length = Int(buffer[position + 1])
        position += 2
        if length & 0x80 != 0 {
            let octets = length & 0x7F
            guard octets >= 1, octets <= 3, end - position >= octets else { return nil }
            length = 0
            for _ in 0..<octets {
                length = length << 8 | Int(buffer[position])
                position += 1
            }
        }
        guard length <= end - position else { return nil }
        let contents = position..<(position + length)
        position += length
        return Element(tag: tag, whole: start..<position, contents: contents)
    }
}
