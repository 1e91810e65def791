import Crypto
import Foundation

/// A JWS in the flattened JSON serialization (RFC 7515 §7.2.2), the body of every ACME
/// POST (RFC 8555 §6.2): `{"protected":…,"payload":…,"signature":…}`, each base64url.
public struct JSONWebSignature: Sendable, Encodable, Equatable {
    public let protected: String
    public let payload: String
    public let signature: String

    /// Who signs: the account key sent whole (`jwk`, for `newAccount`), or the account's
    /// URL (`kid`) once it is registered.
    public enum Signer: Sendable {
        case jwk
        case kid(String)
    }

    /// Signs `payload` (JSON bytes, or nil for POST-as-GET: the empty string, RFC 8555 §6.3)
    /// for `url` with the account `key`, carrying `nonce`.
    public static func signed(payload: [UInt8]?, url: String, nonce: String, key: AccountKey, signer: Signer) throws -> JSONWebSignature {
        var header = #"{"alg":"ES256","#
        switch signer {
        case .jwk: header += #""jwk":\#(key.jwkJSON),"#
        case .kid(let account): header += #""kid":\#(jsonString(account)),"#
        }
        header += #""nonce":\#(jsonString(nonce)),"url":\#(jsonString(url))}"#
        let protected = Base64URL.encode(Array(header.utf8))
        let encodedPayload = payload.map { Base64URL.encode($0) } ?? ""
        let signature = try key.sign(protected + "." + encodedPayload)
        return JSONWebSignature(protected: protected, payload: encodedPayload, signature: Base64URL.encode(signature))
    }

    /// The external account binding of RFC 8555 §7.3.4: the account's JWK as payload,
    /// signed with HS256 (HMAC-SHA-256) under the CA's MAC key, `kid` the CA's key identifier.
    public static func externalAccountBinding(accountKey: AccountKey, keyIdentifier: String, macKey: [UInt8], url: String) -> JSONWebSignature {
        let header = #"{"alg":"HS256","kid":\#(jsonString(keyIdentifier)),"url":\#(jsonString(url))}"#
        let protected = Base64URL.encode(Array(header.utf8))
        let payload = Base64URL.encode(Array(accountKey.jwkJSON.utf8))
        let mac = HMAC<SHA256>.authenticationCode(for: Data((protected + "." + payload).utf8), using: SymmetricKey(data: macKey))
        return JSONWebSignature(protected: protected, payload: payload, signature: Base64URL.encode(mac))
    }

    /// The compact JSON body.
    public var body: [UInt8] {
        Array(#"{"protected":"\#(protected)","payload":"\#(payload)","signature":"\#(signature)"}"#.utf8)
    }

    /// A JSON string literal for `text` (escaping as RFC 8259 §7 requires).
    static func jsonString(_ text: String) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .withoutEscapingSlashes
        let data = (try? encoder.encode(text)) ?? Data("\"\"".utf8)
        return String(decoding: data, as: UTF8.self)
    }
}
