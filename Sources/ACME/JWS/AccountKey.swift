import Crypto
import Foundation

/// An ACME account key: ECDSA P-256, signing with ES256 (RFC 7518 §3.4: the signature is
/// R‖S, 32 bytes each). Its public half is sent as a JWK (RFC 7517) in `newAccount`; its
/// JWK thumbprint (RFC 7638) ends every key authorization (RFC 8555 §8.1).
public struct AccountKey: Sendable {
    public let privateKey: P256.Signing.PrivateKey

    public init(_ privateKey: P256.Signing.PrivateKey = P256.Signing.PrivateKey()) {
        self.privateKey = privateKey
    }

    /// The key from its PKCS#8 PEM (as stored in certgate's state).
    public init(pemRepresentation: String) throws {
        self.privateKey = try P256.Signing.PrivateKey(pemRepresentation: pemRepresentation)
    }

    public var pemRepresentation: String { privateKey.pemRepresentation }

    /// `{"crv":"P-256","kty":"EC","x":…,"y":…}`: the members RFC 7638 §3.2 requires, in
    /// lexicographic order with no whitespace, so the same text serves as the JWK and as
    /// the input of the thumbprint.
    public var jwkJSON: String { Self.jwkJSON(for: privateKey.publicKey) }

    /// RFC 7638 §3: base64url(SHA-256(the JWK's required members, ordered, compact)).
    public var thumbprint: String { Self.thumbprint(of: privateKey.publicKey) }

    public static func jwkJSON(for publicKey: P256.Signing.PublicKey) -> String {
        // x963: 0x04 ‖ X (32 bytes) ‖ Y (32 bytes).
        let point = Array(publicKey.x963Representation)
        let x = Base64URL.encode(point[1..<33])
        let y = Base64URL.encode(point[33..<65])
        return #"{"crv":"P-256","kty":"EC","x":"\#(x)","y":"\#(y)"}"#
    }

    public static func thumbprint(of publicKey: P256.Signing.PublicKey) -> String {
        Base64URL.encode(SHA256.hash(data: Data(jwkJSON(for: publicKey).utf8)))
    }

    /// ES256 over `signingInput` (the ASCII of `protected.payload`): R‖S.
    func sign(_ signingInput: String) throws -> [UInt8] {
        Array(try privateKey.signature(for: Data(signingInput.utf8)).rawRepresentation)
    }
}
