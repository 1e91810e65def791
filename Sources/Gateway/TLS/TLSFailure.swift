import NIOCore
import NIOSSL

/// Why a TLS handshake or connection failed, in certgate's words. NIOSSL's error text holds
/// BoringSSL's error queue with source paths and line numbers; certgate keeps only the
/// reason's name (a fixed BoringSSL identifier such as `NO_SHARED_CIPHER`), never text the
/// client sent.
enum TLSFailure {
    static func describe(_ error: any Error) -> String {
        switch error {
        case let error as NIOSSLError:
            switch error {
            case .uncleanShutdown:
                return "the client closed the connection during the handshake"
            case .handshakeFailed(let underlying):
                return describe(reasons: reasonNames(in: "\(underlying)"))
            default:
                return "the TLS library failed the connection"
            }
        case let error as BoringSSLError:
            return describe(reasons: reasonNames(in: "\(error)"))
        default:
            return SocketFailure.describe(error)
        }
    }

    private static func describe(reasons: [String]) -> String {
        for reason in reasons {
            switch reason {
            case "NO_SHARED_CIPHER": return "no cipher suite in common with the client"
            case "UNSUPPORTED_PROTOCOL", "TLSV1_ALERT_PROTOCOL_VERSION": return "no TLS version in common with the client"
            case "NO_APPLICATION_PROTOCOL", "TLSV1_ALERT_NO_APPLICATION_PROTOCOL": return "no ALPN protocol in common with the client"
            case "HTTP_REQUEST", "HTTPS_PROXY_REQUEST": return "plain HTTP on a TLS port"
            case "WRONG_VERSION_NUMBER": return "not TLS"
            case _ where reason.hasPrefix("TLSV1_ALERT_") || reason.hasPrefix("SSLV3_ALERT_"):
                return "the client sent the alert \(reason.split(separator: "_").dropFirst(2).joined(separator: "_").lowercased())"
            default: continue
            }
        }
        return reasons.first.map { "the TLS library refused the handshake (\($0))" } ?? "the TLS library refused the handshake"
    }

    /// The reason names of BoringSSL's error strings (`error:…:SSL routines:OPENSSL_internal:NAME`).
    static func reasonNames(in text: String) -> [String] {
        text.components(separatedBy: "OPENSSL_internal:").dropFirst().compactMap { rest in
            let name = rest.prefix { $0.isUppercase || $0.isNumber || $0 == "_" }
            return name.isEmpty ? nil : String(name)
        }
    }
}
