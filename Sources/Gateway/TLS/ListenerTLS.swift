import NIOCore
import NIOTLS
import NIOSSL

/// Builds the NIOSSL context of one listener: its ALPN and TLS versions, and the
/// certificate callback. No certificate is configured up front: each handshake's comes
/// from the callback.
enum ListenerTLS {
    static let closeNotifyWait = TimeAmount.seconds(1)

    static func makeContext(
        for listener: ListenerConfiguration, selector: CertificateSelector, counters: GatewayMetrics.ListenerCounters
    ) throws -> NIOSSLContext {
        try NIOSSLContext(configuration: configuration(for: listener, selector: selector, counters: counters))
    }

    /// The TLS settings of one listener (see ``makeContext(for:selector:counters:)``).
    static func configuration(
        for listener: ListenerConfiguration, selector: CertificateSelector, counters: GatewayMetrics.ListenerCounters
    ) -> TLSConfiguration {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.certificateVerification = .none
        configuration.minimumTLSVersion = tlsVersion(listener.minTLSVersion)
        configuration.maximumTLSVersion = tlsVersion(listener.maxTLSVersion)
        configuration.applicationProtocols = listener.alpn
        configuration.sslContextCallback = selector.callback(counters: counters)
        // How long a close waits for the client's close_notify (NIOSSL's default is 5 s): a
        // connection cut at the end of shutdown_timeout, or closed by the responder, is gone
        // within a second, not five.
        configuration.shutdownTimeout = Self.closeNotifyWait
        return configuration
    }

    /// The context of one `tls-alpn-01` answer (RFC 8737 §3): the validation certificate,
    /// ALPN `acme-tls/1` only, TLS 1.2 or later.
    static func makeChallengeContext(certificateDER: [UInt8], privateKeyDER: [UInt8]) throws -> NIOSSLContext {
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: [.certificate(try NIOSSLCertificate(bytes: certificateDER, format: .der))],
            privateKey: .privateKey(try NIOSSLPrivateKey(bytes: privateKeyDER, format: .der)))
        configuration.minimumTLSVersion = .tlsv12
        configuration.applicationProtocols = [TLSALPNProtocol.name]
        return try NIOSSLContext(configuration: configuration)
    }

    static func tlsVersion(_ version: ListenerConfiguration.TLSVersion) -> TLSVersion {
        switch version {
        case .tls1_0: return .tlsv1
        case .tls1_1: return .tlsv11
        case .tls1_2: return .tlsv12
        case .tls1_3: return .tlsv13
        }
    }

    /// What went wrong when making a listener's context, in certgate's words: NIOSSL's
    /// errors name Swift types and BoringSSL's internal error queue, not the setting at fault.
    static func describe(_ error: any Error) -> String {
        guard let error = error as? NIOSSLError else { return "an unexpected error" }
        switch error {
        case .unableToAllocateBoringSSLObject: return "out of memory"
        default: return "a setting it cannot take"
        }
    }
}
