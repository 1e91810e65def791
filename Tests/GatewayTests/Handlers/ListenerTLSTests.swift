@testable import Gateway
import CertificateKit
import Foundation
import NIOCore
import NIOSSL
import Testing

/// The TLS settings a listener's context is made with.
@Suite("A listener's TLS settings", .timeLimit(.minutes(2)))
struct ListenerTLSTests {
    @Test("a closing connection waits 1 s for the client's close_notify (NIOSSL's default is 5 s); TLS versions and ALPN are the listener's; the certificate comes from the callback alone")
    func closeWaitsOneSecond() throws {
        let listener = ListenerConfiguration(
            name: "https", listen: HostAndPort(host: "127.0.0.1", port: 8443), alpn: ["h2", "http/1.1"], minTLSVersion: .tls1_3, maxTLSVersion: .tls1_3)
        let selector = CertificateSelector(store: CertificateKit.CertificateStore(), issued: IssuedCertificateCache(), now: { Date() })
        let configuration = ListenerTLS.configuration(for: listener, selector: selector, counters: GatewayMetrics().handshakes(listener: "https"))
        #expect(configuration.shutdownTimeout == .seconds(1))
        #expect(configuration.minimumTLSVersion == .tlsv13)
        #expect(configuration.maximumTLSVersion == .tlsv13)
        #expect(configuration.applicationProtocols == ["h2", "http/1.1"])
        #expect(configuration.certificateChain.isEmpty)
        #expect(configuration.privateKey == nil)
        #expect(configuration.sslContextCallback != nil)
    }
}
