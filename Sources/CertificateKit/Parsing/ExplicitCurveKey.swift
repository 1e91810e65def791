import Crypto
import SwiftASN1
import X509

/// An EC private key written with explicit curve parameters (`openssl ecparam -genkey
/// -param_enc explicit`) rather than a curve's name: the `ECParameters` of SEC 1 §C.2 in
/// the key's `[0]` field (RFC 5915) or in its PKCS#8 algorithm identifier.
///
/// When the parameters are exactly P-256, P-384 or P-521 the key loads as that curve
/// (and is kept in the named form from then on); any other curve gets a reason. The match
/// is checked without a table of curve constants: the prime and `a = p - 3` are compared,
/// and the named curve's own arithmetic must reproduce the file's base point (1·G) and its
/// order (`(n-1)·G = -G`), which fixes `b` as well.
enum ExplicitCurveKey {
    /// The named key, a reason the key cannot be used, or nil when `block` is not an EC
    /// key with explicit parameters (the caller's own reason then stands).
    static func load(_ block: PEMDocument) -> Result<Certificate.PrivateKey, PEMMaterialParser.Failure>? {
        guard let (parameters, sec1) = explicitParameters(in: block) else { return nil }
        let refusal = PEMMaterialParser.Failure(
            "the key uses explicit EC curve parameters that are not P-256, P-384 or P-521; certgate takes named curves "
                + "(convert it: openssl ec -in KEY -param_enc named_curve -out KEY)")
        guard let curve = NamedCurve.matching(parameters) else { return .failure(refusal) }
        guard let scalar = privateScalar(of: sec1), let key = curve.privateKey(scalar) else {
            return .failure(PEMMaterialParser.Failure("the EC private key with explicit parameters is malformed"))
        }
        return .success(key)
    }

    /// Whether a key block carries explicit curve parameters (a DER walk, no arithmetic).
    static func hasExplicitParameters(_ block: PEMDocument) -> Bool {
        explicitParameters(in: block) != nil
    }

    /// The explicit `ECParameters` and the SEC 1 `ECPrivateKey` node of a key block.
    private static func explicitParameters(in block: PEMDocument) -> (ASN1Node, ASN1Node)? {
        guard let root = try? DER.parse(block.derBytes) else { return nil }
        switch block.discriminator {
        case "EC PRIVATE KEY":
            guard let fields = children(root), fields.count >= 3,
                  let wrapped = fields.first(where: { $0.identifier == ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific) }),
                  let parameters = children(wrapped)?.first, parameters.identifier == .sequence else { return nil }
            return (parameters, root)
        case "PRIVATE KEY":
            // PrivateKeyInfo: version, AlgorithmIdentifier { id-ecPublicKey, parameters }, privateKey.
            guard let fields = children(root), fields.count >= 3,
                  let algorithm = children(fields[1]), algorithm.count == 2,
                  let oid = try? ASN1ObjectIdentifier(derEncoded: algorithm[0]), oid == .AlgorithmIdentifier.idEcPublicKey,
                  algorithm[1].identifier == .sequence,
                  case .primitive(let inner) = fields[2].content,
                  let sec1 = try? DER.parse(inner) else { return nil }
            return (algorithm[1], sec1)
        default:
            return nil
        }
    }

    /// The `privateKey` OCTET STRING of an `ECPrivateKey`.
    private static func privateScalar(of sec1: ASN1Node) -> [UInt8]? {
        guard let fields = children(sec1), fields.count >= 2, fields[1].identifier == .octetString,
              case .primitive(let bytes) = fields[1].content else { return nil }
        return Array(bytes)
    }

    static func children(_ node: ASN1Node) -> [ASN1Node]? {
        guard case .constructed(let nodes) = node.content else { return nil }
        return Array(nodes)
    }

    static func primitive(_ node: ASN1Node) -> [UInt8]? {
        guard case .primitive(let bytes) = node.content else { return nil }
        return Array(bytes)
    }

    /// Big-endian magnitude without leading zero bytes.
    static func magnitude(_ bytes: [UInt8]) -> [UInt8] {
        Array(bytes.drop { $0 == 0 })
    }

    enum NamedCurve: CaseIterable {
        case p256, p384, p521

        /// The field prime, big-endian (FIPS 186-4 D.1.2).
        var prime: [UInt8] {
            switch self {
            case .p256: return Self.hex("ffffffff00000001000000000000000000000000ffffffffffffffffffffffff")
            case .p384: return Self.hex("fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffeffffffff0000000000000000ffffffff")
            case .p521: return [0x01] + [UInt8](repeating: 0xff, count: 65)
            }
        }

        /// Bytes of a scalar (`rawRepresentation`).
        var scalarSize: Int {
            switch self {
            case .p256: return 32
            case .p384: return 48
            case .p521: return 66
            }
        }

        /// The curve whose parameters `node` (an explicit `ECParameters`) states exactly.
        static func matching(_ node: ASN1Node) -> NamedCurve? {
            // ECParameters: version, FieldID { prime-field, p }, Curve { a, b, seed? }, base, order, cofactor?
            guard let fields = ExplicitCurveKey.children(node), fields.count >= 5,
                  let fieldID = ExplicitCurveKey.children(fields[1]), fieldID.count == 2,
                  let fieldType = try? ASN1ObjectIdentifier(derEncoded: fieldID[0]), fieldType == [1, 2, 840, 10045, 1, 1],
                  let p = ExplicitCurveKey.primitive(fieldID[1]),
                  let curveFields = ExplicitCurveKey.children(fields[2]), curveFields.count >= 2,
                  let a = ExplicitCurveKey.primitive(curveFields[0]),
                  let base = ExplicitCurveKey.primitive(fields[3]),
                  let order = ExplicitCurveKey.primitive(fields[4]) else { return nil }
            if fields.count >= 6 {
                guard let cofactor = ExplicitCurveKey.primitive(fields[5]), ExplicitCurveKey.magnitude(cofactor) == [1] else { return nil }
            }
            guard let curve = allCases.first(where: { ExplicitCurveKey.magnitude(p) == $0.prime }) else { return nil }
            var aExpected = curve.prime
            aExpected[aExpected.count - 1] -= 3  // p ends in 0xff on all three curves
            guard ExplicitCurveKey.magnitude(a) == ExplicitCurveKey.magnitude(aExpected) else { return nil }
            return curve.reproduces(base: base, order: ExplicitCurveKey.magnitude(order)) ? curve : nil
        }

        /// Whether this curve's generator is `base` (uncompressed SEC 1 point) and its
        /// order is `order`: 1·G must be `base`, and (order − 1)·G must be −G.
        private func reproduces(base: [UInt8], order: [UInt8]) -> Bool {
            var one = [UInt8](repeating: 0, count: scalarSize)
            one[scalarSize - 1] = 1
            guard order.count <= scalarSize, let last = order.last, last > 0 else { return false }
            var orderMinusOne = [UInt8](repeating: 0, count: scalarSize - order.count) + order
            orderMinusOne[scalarSize - 1] = last - 1  // the order is odd: no borrow
            guard let generator = publicPoint(of: one), let negated = publicPoint(of: orderMinusOne) else { return false }
            let coordinate = (generator.count - 1) / 2
            return generator == base
                && negated.prefix(1 + coordinate) == generator.prefix(1 + coordinate)
                && negated.suffix(coordinate) != generator.suffix(coordinate)
        }

        /// The uncompressed public point of `scalar`, or nil when it is not a valid scalar.
        private func publicPoint(of scalar: [UInt8]) -> [UInt8]? {
            switch self {
            case .p256: return (try? P256.Signing.PrivateKey(rawRepresentation: scalar)).map { Array($0.publicKey.x963Representation) }
            case .p384: return (try? P384.Signing.PrivateKey(rawRepresentation: scalar)).map { Array($0.publicKey.x963Representation) }
            case .p521: return (try? P521.Signing.PrivateKey(rawRepresentation: scalar)).map { Array($0.publicKey.x963Representation) }
            }
        }

        func privateKey(_ scalar: [UInt8]) -> Certificate.PrivateKey? {
            let value = ExplicitCurveKey.magnitude(scalar)
            guard value.count <= scalarSize else { return nil }
            let padded = [UInt8](repeating: 0, count: scalarSize - value.count) + value
            switch self {
            case .p256: return (try? P256.Signing.PrivateKey(rawRepresentation: padded)).map(Certificate.PrivateKey.init)
            case .p384: return (try? P384.Signing.PrivateKey(rawRepresentation: padded)).map(Certificate.PrivateKey.init)
            case .p521: return (try? P521.Signing.PrivateKey(rawRepresentation: padded)).map(Certificate.PrivateKey.init)
            }
        }

        private static func hex(_ text: String) -> [UInt8] {
            var bytes: [UInt8] = []
            var index = text.startIndex
            while index < text.endIndex {
                let next = text.index(index, offsetBy: 2)
                bytes.append(UInt8(text[index..<next], radix: 16)!)
                index = next
            }
            return bytes
        }
    }
}
