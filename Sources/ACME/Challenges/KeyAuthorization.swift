import Crypto
import Foundation

/// A challenge's key authorization (RFC 8555 §8.1): `token.thumbprint`, and what each
/// challenge type publishes from it.
public struct KeyAuthorization: Sendable, Equatable, CustomStringConvertible {
    public let token: String
    public let value: String

    public init(token: String, accountKey: AccountKey) {
        self.init(token: token, thumbprint: accountKey.thumbprint)
    }

    /// - Parameter thumbprint: the account key's JWK thumbprint (RFC 7638).
    public init(token: String, thumbprint: String) {
        self.token = token
        self.value = token + "." + thumbprint
    }

    /// `http-01` (§8.3): the body served at `/.well-known/acme-challenge/TOKEN`.
    public var http01Body: String { value }

    /// `dns-01` (§8.4): the TXT record at `_acme-challenge.NAME`: base64url(SHA-256(key authorization)).
    public var dns01Value: String { Base64URL.encode(SHA256.hash(data: Data(value.utf8))) }

    /// `tls-alpn-01` (RFC 8737 §3): the SHA-256 digest carried by the acmeIdentifier extension.
    public var tlsALPN01Digest: [UInt8] { Array(SHA256.hash(data: Data(value.utf8))) }

    /// The token only: the key authorization is not a secret, but it has no place in logs.
    public var description: String { "key authorization for token \(token)" }

    /// A token is base64url with at least 128 bits of entropy (§8.1); a CA's token that is
    /// not base64url is refused before it is used in a path or a file.
    public static func isValidToken(_ token: String) -> Bool {
        token.utf8.count >= 22 && token.utf8.count <= 256 && ACMEClient.isNonce(token)
    }
}
