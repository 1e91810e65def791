import CertificateKit
import Foundation
@testable import Gateway
import Testing

/// The defaults README's configuration reference states, each as the file leaves it out.
@Suite("Configuration defaults, as README states them", .timeLimit(.minutes(2)))
struct ConfigurationDefaultsTests {
    static func parse(_ yaml: String) throws -> GatewayConfiguration {
        try GatewayConfiguration.parse(yaml: yaml, file: "certgate.yaml", baseDirectory: "/etc/certgate")
    }

    @Test("a listener: TLS 1.2 to 1.3, ALPN http/1.1, a 10 s handshake timeout")
    func listener() throws {
        let listener = try #require(try Self.parse("listeners:\n  - listen: 127.0.0.1:8443\n").listeners.first)
        #expect(listener.minTLSVersion == .tls1_2)
        #expect(listener.maxTLSVersion == .tls1_3)
        #expect(listener.alpn == ["http/1.1"])
        #expect(listener.handshakeTimeout.duration == .seconds(10))
    }

    @Test("a webhook notifier: timeout 10 s, 3 retries")
    func webhook() throws {
        let configuration = try Self.parse("validity:\n  notify:\n    - webhook: http://127.0.0.1:9/hook\n")
        guard case .webhook(let url, let timeout, let retries)? = configuration.validity.notify.first else {
            Issue.record("no webhook: \(configuration.validity.notify)")
            return
        }
        #expect(url == "http://127.0.0.1:9/hook")
        #expect(timeout.duration == .seconds(10))
        #expect(retries == 3)
    }

    @Test("issuing.max_concurrent: one less than the cores, at least 1")
    func issuingConcurrency() throws {
        let issuing = try Self.parse("issuing: {}\n").issuing
        #expect(issuing.maxConcurrent == max(1, ProcessInfo.processInfo.activeProcessorCount - 1))
        #expect(IssuingConfiguration().maxConcurrent == max(1, ProcessInfo.processInfo.activeProcessorCount - 1))
    }

    @Test("an entry's buffer_days: 7")
    func bufferDays() throws {
        let configuration = try Self.parse("certificates:\n  shop: { tls_cert: shop.pem, tls_key: shop.key }\n")
        let shop = try #require(configuration.certificates["shop"])
        #expect(shop.bufferDays == nil)
        #expect(shop.effectiveBufferDays == 7)
    }

    @Test("control: mode 0600, max_message_bytes 64 MiB")
    func control() throws {
        let control = try #require(try Self.parse("control:\n  socket: run/certgate.sock\n").control)
        #expect(control.mode == 0o600)
        #expect(control.maxMessageBytes == 67_108_864)
    }

    @Test("shared_state.node: the host name")
    func fleetNode() throws {
        let shared = try #require(try Self.parse("shared_state:\n  postgres: postgres://certgate@127.0.0.1:5432/certgate\n").sharedState)
        #expect(shared.node == ProcessInfo.processInfo.hostName)
    }
}
