import Crypto
import SwiftASN1
import X509

/// certgate's own words for an error thrown by swift-asn1, swift-certificates or
/// swift-crypto while parsing certificate or key material.
///
/// A library's error text may quote the bytes it was given (swift-asn1 puts the PEM text
/// of a damaged document into `invalidPEMDocument`, the base64 of a private key included)
/// and names Swift source files; neither may reach an operator. Only the error's *kind*
/// is read here, never its description.
enum LibraryErrorReason {
    /// A reason that completes "… cannot be parsed: ".
    static func describe(_ error: any Error) -> String {
        if let error = error as? ASN1Error {
            return describe(asn1: error.code)
        }
        if let error = error as? CertificateError {
            return describe(certificate: error.code)
        }
        if error is CryptoKitError {
            return "the key's value is not valid for its algorithm or curve"
        }
        return "it is not valid DER of the expected type"
    }

    private static func describe(asn1 code: ASN1Error.ErrorCode) -> String {
        switch code {
        case .truncatedASN1Field: return "its DER ends early (truncated)"
        case .invalidPEMDocument: return "its PEM is damaged"
        case .unsupportedFieldLength: return "its DER uses a length encoding that is not allowed"
        case .invalidASN1IntegerEncoding: return "its DER holds a malformed INTEGER"
        case .tooFewOIDComponents: return "its DER holds a malformed OBJECT IDENTIFIER"
        case .invalidStringRepresentation: return "its DER holds a malformed string"
        default: return "its DER structure is not what the type requires"
        }
    }

    private static func describe(certificate code: CertificateError.ErrorCode) -> String {
        switch code {
        case .unsupportedPublicKeyAlgorithm:
            return "its public key algorithm is not supported (ECDSA P-256, P-384 or P-521 on a named curve, RSA of 2048 bits or more, Ed25519)"
        case .unsupportedSignatureAlgorithm, .unsupportedDigestAlgorithm:
            return "its signature algorithm is not supported"
        case .unsupportedPrivateKey:
            return "the key type is not supported (ECDSA P-256, P-384 or P-521, RSA of 2048 bits or more, Ed25519)"
        case .duplicateOID:
            return "it holds the same extension twice"
        case .incorrectOIDForExtension, .incorrectOIDForAttribute, .invalidCSRAttribute:
            return "one of its extensions is malformed"
        default:
            return "it is not a valid X.509 certificate"
        }
    }
}
