import Crypto
import Foundation
import Testing
@testable import ACME

@Suite("JWS, JWK thumbprints and key authorizations (RFC 7515, 7638, 8555 §6.2, §8)", .timeLimit(.minutes(2)))
struct JSONWebSignatureTests {
    /// A P-256 public key made once with `openssl ecparam -name prime256v1 -genkey` (its
    /// private half was discarded): x and y as base64url.
    static let x = "ALFqGUvlkOhZ56I2nODACsnllg0YEDjJ3fSITCKWKYU"
    static let y = "Zu16Hr1kyBD1ksw6FLVM6NIxkXr0b-BbWraPS1oMKFg"
    static func publicKey() throws -> P256.Signing.PublicKey {
        try P256.Signing.PublicKey(x963Representation: [0x04] + Base64URL.decode(x)! + Base64URL.decode(y)!)
    }

    static func text(_ base64url: String) -> String {
        String(decoding: Base64URL.decode(base64url) ?? [], as: UTF8.self)
    }

    @Test("base64url has no padding and uses - and _; decoding refuses other characters")
    func base64url() {
        #expect(Base64URL.encode([0xfb, 0xff]) == "-_8")
        #expect(Base64URL.encode(Array("any carnal pleas".utf8)) == "YW55IGNhcm5hbCBwbGVhcw")
        #expect(Base64URL.decode("-_8") == [0xfb, 0xff])
        #expect(Base64URL.decode("-_8=") == [0xfb, 0xff])
        #expect(Base64URL.decode("+/8") == nil)
        #expect(Base64URL.decode("abcde") == nil)  // a length of 4k+1 cannot be base64
    }

    @Test("a P-256 JWK holds crv, kty, x, y in that order (RFC 7638 §3.2); its thumbprint is SHA-256 of exactly that text")
    func thumbprint() throws {
        let key = try Self.publicKey()
        #expect(AccountKey.jwkJSON(for: key) == #"{"crv":"P-256","kty":"EC","x":"\#(Self.x)","y":"\#(Self.y)"}"#)
        // printf '%s' '<the JWK above>' | openssl dgst -sha256 -binary | base64 | tr '+/' '-_' | tr -d '='
        #expect(AccountKey.thumbprint(of: key) == "rRlQZmeQwO0bkQGLONIKBN7frWYvpkJR7XlFBJ_re2k")
    }

    @Test("a newAccount JWS carries the key as jwk, the nonce and the URL; its ES256 signature (R‖S) verifies over protected.payload")
    func signedWithJWK() throws {
        let key = AccountKey()
        let jws = try JSONWebSignature.signed(
            payload: Array(#"{"termsOfServiceAgreed":true}"#.utf8), url: "https://ca.test/acme/new-acct", nonce: "n0nce_-1", key: key, signer: .jwk)
        #expect(Self.text(jws.protected) == #"{"alg":"ES256","jwk":\#(key.jwkJSON),"nonce":"n0nce_-1","url":"https://ca.test/acme/new-acct"}"#)
        #expect(Self.text(jws.payload) == #"{"termsOfServiceAgreed":true}"#)
        let signature = try P256.Signing.ECDSASignature(rawRepresentation: Base64URL.decode(jws.signature)!)
        #expect(signature.rawRepresentation.count == 64)
        #expect(key.privateKey.publicKey.isValidSignature(signature, for: Data((jws.protected + "." + jws.payload).utf8)))
        #expect(String(decoding: jws.body, as: UTF8.self)
            == #"{"protected":"\#(jws.protected)","payload":"\#(jws.payload)","signature":"\#(jws.signature)"}"#)
    }

    @Test("after registration a JWS names the account by kid; POST-as-GET has the empty payload")
    func signedWithKid() throws {
        let key = AccountKey()
        let jws = try JSONWebSignature.signed(payload: nil, url: "https://ca.test/acme/order/1", nonce: "abc", key: key, signer: .kid("https://ca.test/acme/acct/7"))
        #expect(Self.text(jws.protected) == #"{"alg":"ES256","kid":"https://ca.test/acme/acct/7","nonce":"abc","url":"https://ca.test/acme/order/1"}"#)
        #expect(jws.payload == "")
        let signature = try P256.Signing.ECDSASignature(rawRepresentation: Base64URL.decode(jws.signature)!)
        #expect(key.privateKey.publicKey.isValidSignature(signature, for: Data((jws.protected + ".").utf8)))
    }

    @Test("the external account binding is HS256 over the account's JWK, with the CA's kid and the newAccount URL")
    func externalAccountBinding() {
        let key = AccountKey()
        let macKey = Array("a 32-byte MAC key for the test..".utf8)
        let binding = JSONWebSignature.externalAccountBinding(accountKey: key, keyIdentifier: "kid-1", macKey: macKey, url: "https://ca.test/acme/new-acct")
        #expect(Self.text(binding.protected) == #"{"alg":"HS256","kid":"kid-1","url":"https://ca.test/acme/new-acct"}"#)
        #expect(Self.text(binding.payload) == key.jwkJSON)
        let expected = HMAC<SHA256>.authenticationCode(for: Data((binding.protected + "." + binding.payload).utf8), using: SymmetricKey(data: macKey))
        #expect(Base64URL.decode(binding.signature) == Array(expected))
    }

    @Test("a key authorization is token.thumbprint; dns-01 publishes base64url(SHA-256) of it, tls-alpn-01 carries the raw digest")
    func keyAuthorization() {
        let authorization = KeyAuthorization(token: "token-abc_DEF-0123456789xyz", thumbprint: "thumb")
        #expect(authorization.value == "token-abc_DEF-0123456789xyz.thumb")
        #expect(authorization.http01Body == "token-abc_DEF-0123456789xyz.thumb")
        // printf '%s' 'token-abc_DEF-0123456789xyz.thumb' | openssl dgst -sha256 -binary | base64 | tr '+/' '-_' | tr -d '='
        #expect(authorization.dns01Value == "7jVL1gR1su76sSd5BEuNAsCTrx5pProeIeryEGsXy1s")
        #expect(authorization.tlsALPN01Digest.map { String(format: "%02x", $0) }.joined()
            == "ee354bd60475b2eefab12779044b8d02c093af1e693eba1e21eaf2106b17cb5b")
        #expect(!authorization.description.contains("thumb"))
        #expect(KeyAuthorization.isValidToken("token-abc_DEF-0123456789xyz"))
        #expect(!KeyAuthorization.isValidToken("../../etc/passwd-0123456789"))
        #expect(!KeyAuthorization.isValidToken("short"))
    }
}
