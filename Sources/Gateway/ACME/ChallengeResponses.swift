import NIOSSL
import Synchronization

/// The answers to the ACME challenges in progress, where the listeners find them:
/// `http-01` key authorizations by token (served by `protocol: http` listeners) and
/// `tls-alpn-01` TLS contexts by name (served to a ClientHello offering `acme-tls/1`).
/// Written by the ACME solvers, read on the event loops.
final class ChallengeResponses: Sendable {
    /// A TLS context holding one validation certificate, ALPN `acme-tls/1` only.
    struct TLSALPNAnswer: @unchecked Sendable {
        // NIOSSLContext is thread-safe (an immutable SSL_CTX), though not marked Sendable.
        let context: NIOSSLContext
    }

    private struct State {
        var http01: [String: String] = [:]
        var tlsALPN01: [String: TLSALPNAnswer] = [:]
    }

    private let state = Mutex(State())
    /// Whether any tls-alpn-01 answer is up: when none is, connections skip reading the
    /// ClientHello and go straight to TLS.
    private let tlsALPNPending = Atomic<Int>(0)

    func setHTTP01(token: String, keyAuthorization: String) {
        state.withLock { $0.http01[token] = keyAuthorization }
    }

    func removeHTTP01(token: String) {
        _ = state.withLock { $0.http01.removeValue(forKey: token) }
    }

    func http01(token: String) -> String? {
        state.withLock { $0.http01[token] }
    }

    /// - Parameter name: lower case, no trailing dot.
    func setTLSALPN01(name: String, context: NIOSSLContext) {
        let count = state.withLock { state in
            state.tlsALPN01[name] = TLSALPNAnswer(context: context)
            return state.tlsALPN01.count
        }
        tlsALPNPending.store(count, ordering: .releasing)
    }

    func removeTLSALPN01(name: String) {
        let count = state.withLock { state in
            state.tlsALPN01.removeValue(forKey: name)
            return state.tlsALPN01.count
        }
        tlsALPNPending.store(count, ordering: .releasing)
    }

    var hasTLSALPN01: Bool { tlsALPNPending.load(ordering: .acquiring) > 0 }

    func tlsALPN01(name: String) -> NIOSSLContext? {
        state.withLock { $0.tlsALPN01[name]?.context }
    }
}
