import CertificateTestSupport
import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import Testing
import X509
#if canImport(Glibc)
import Glibc
#endif

/// The validity monitor through the real binary: the webhook body byte for byte with its
/// `previous_state`, issuer (is_ca) entries watched like the others, and a webhook slower
/// than its timeout delaying nothing.
@Suite("Validity monitor (the real binary)", .serialized, .timeLimit(.minutes(3)))
struct ValidityMonitorInteropTests {
    static let authority = GatewayInteropTests.authority
    static let group = MultiThreadedEventLoopGroup.singleton
    static let host = ProcessInfo.processInfo.hostName

    static func bodies(_ receiver: WebhookReceiver) -> [String] {
        receiver.bodies.received.withLock { $0 }.map { String(decoding: $0, as: UTF8.self) }
    }

    @Test("webhook bodies byte for byte: a leaf that expires while certgate runs is told expiring without previous_state, then expired with previous_state expiring; a reload that swaps a fine entry for an expiring one tells previous_state ok")
    func previousState() async throws {
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        let receiver = try await WebhookReceiver(group: Self.group)
        let brief = Self.authority.leaf(dnsNames: ["brief.test"], notAfter: Date().addingTimeInterval(8))
        try folder.write(brief.pem, to: "certs/brief.pem")
        try folder.write(brief.key.pkcs8PEM, to: "certs/brief.key")
        let config = GatewayInteropTests.config(extraCertificates: "  brief: { tls_cert: certs/brief.pem, tls_key: certs/brief.key }")
            + "\nvalidity:\n  interval: 1s\n  notify:\n    - webhook: http://127.0.0.1:\(receiver.port)/hook\n"
        let gateway = try await GatewayProcess(config: config, folder: folder)
        defer { gateway.stop() }
        let briefNotAfter = notificationTime(try servedNotAfter(brief.certificate))

        // At start: the first state seen, so no previous_state (the fine entries say nothing).
        #expect(try await eventually { Self.bodies(receiver).count >= 1 })
        #expect(Self.bodies(receiver).first
            == #"{"days_left":0,"entry":"brief","host":"\#(Self.host)","names":["brief.test"],"not_after":"\#(briefNotAfter)","state":"expiring"}"#)
        // Past its notAfter the monitor, every second, sees it expired.
        #expect(try await eventually(timeout: .seconds(20)) { Self.bodies(receiver).count >= 2 })
        #expect(Self.bodies(receiver).dropFirst().first
            == #"{"days_left":-1,"entry":"brief","host":"\#(Self.host)","names":["brief.test"],"not_after":"\#(briefNotAfter)","previous_state":"expiring","state":"expired"}"#)

        // exact (ok so far) gets a certificate that expires in two days and an hour.
        let soon = Self.authority.leaf(dnsNames: ["exact.test"], notAfter: Date().addingTimeInterval(2 * 86_400 + 3_600))
        try folder.write(soon.pem, to: "certs/exact.pem")
        try folder.write(soon.key.pkcs8PEM, to: "certs/exact.key")
        try gateway.reload(with: config)
        #expect(try await gateway.waitForLog("configuration reloaded"))
        #expect(try await eventually { Self.bodies(receiver).count >= 3 })
        let soonNotAfter = notificationTime(try servedNotAfter(soon.certificate))
        #expect(Self.bodies(receiver).dropFirst(2).first
            == #"{"days_left":2,"entry":"exact","host":"\#(Self.host)","names":["exact.test"],"not_after":"\#(soonNotAfter)","previous_state":"ok","state":"expiring"}"#)
        #expect(gateway.count(ofLine: "warning certgate: days_left=2 entry=exact from=ok state=expiring [Gateway] certificate validity changed") == 1)
        #expect(gateway.count(ofLine: "warning certgate: days_left=-1 entry=brief from=expiring state=expired [Gateway] certificate validity changed") == 1)
        #expect(Self.bodies(receiver).count == 3)
        try? await receiver.channel.close()
    }

    @Test("an issuer (is_ca) entry is watched like a static one: a CA within its buffer_days is told expiring (webhook, log, gauge), and the leaves it signs end at its notAfter")
    func issuerIsMonitored() async throws {
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        let receiver = try await WebhookReceiver(group: Self.group)
        let shortCA = TestCertificate.authority(commonName: "Short CA", notAfter: Date().addingTimeInterval(3 * 86_400 + 3_600))
        try folder.write(shortCA.pem, to: "short-ca.pem")
        try folder.write(shortCA.key.pkcs8PEM, to: "short-ca.key")
        let config = GatewayInteropTests.config(extraCertificates: "  short-ca: { tls_cert: short-ca.pem, tls_key: short-ca.key, is_ca: true, domains: \"*.dev.test\" }")
            + "\nmetrics: { listen: 127.0.0.1:0 }\nvalidity:\n  notify:\n    - webhook: http://127.0.0.1:\(receiver.port)/hook\n"
        let gateway = try await GatewayProcess(config: config, folder: folder)
        defer { gateway.stop() }
        let caNotAfter = try servedNotAfter(shortCA.certificate)

        #expect(try await eventually { Self.bodies(receiver).count >= 1 })
        #expect(Self.bodies(receiver)
            == [#"{"days_left":3,"entry":"short-ca","host":"\#(Self.host)","names":["*.dev.test"],"not_after":"\#(notificationTime(caNotAfter))","state":"expiring"}"#])
        #expect(gateway.count(ofLine: "warning certgate: days_left=3 entry=short-ca from=- state=expiring [Gateway] certificate validity changed") == 1)
        let metrics = try await scrapeMetrics(port: try #require(gateway.metricsPort))
        #expect(metrics.value("certgate_certificate_expiring", ["name": "short-ca"]) == 1)
        #expect(metrics.value("certgate_certificate_not_after_timestamp_seconds", ["name": "short-ca"]) == caNotAfter.timeIntervalSince1970)

        // A leaf it signs now (30 days by default) stops at the CA's notAfter.
        let probe = TLSProbe(group: Self.group, trustRoots: [try NIOSSLCertificate(bytes: shortCA.parsed.der, format: .der)])
        let connection = try await probe.connect(port: gateway.port, serverName: "app.dev.test")
        let served = connection.servedLeaf
        await connection.close()
        let leaf = try Certificate(derEncoded: try #require(served))
        #expect(leaf.notValidAfter == caNotAfter)
        try? await receiver.channel.close()
    }

    @Test("a webhook receiver that never answers (slower than the 5 s timeout) delays neither a handshake nor a reload, whose own notification goes out meanwhile; the held one gives up at its timeout")
    func slowWebhook() async throws {
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        let holder = try await HoldingWebhook(group: Self.group)
        let soon = Self.authority.leaf(dnsNames: ["soon.test"], notAfter: Date().addingTimeInterval(3 * 86_400 + 3_600))
        try folder.write(soon.pem, to: "certs/soon.pem")
        try folder.write(soon.key.pkcs8PEM, to: "certs/soon.key")
        let soon2 = Self.authority.leaf(dnsNames: ["soon2.test"], notAfter: Date().addingTimeInterval(2 * 86_400 + 3_600))
        try folder.write(soon2.pem, to: "certs/soon2.pem")
        try folder.write(soon2.key.pkcs8PEM, to: "certs/soon2.key")
        let url = "http://127.0.0.1:\(holder.port)/hook"
        let notify = "\nvalidity:\n  notify:\n    - { webhook: \"\(url)\", timeout: 5s, retries: 0 }\n"
        let soonEntry = "  soon: { tls_cert: certs/soon.pem, tls_key: certs/soon.key }"
        let gateway = try await GatewayProcess(config: GatewayInteropTests.config(extraCertificates: soonEntry) + notify, folder: folder)
        defer { gateway.stop() }

        // The receiver holds soon's notification from now on.
        #expect(try await eventually { holder.bodies.all.count >= 1 })
        let start = ContinuousClock.now
        let (cn, output) = try await servedCommonName(port: gateway.port, serverName: "exact.test", folder: folder)
        let handshake = ContinuousClock.now - start  // an openssl s_client process; far below the 5 s hold
        #expect(cn == "exact.test", "\(output)")
        try gateway.reload(with: GatewayInteropTests.config(extraCertificates: soonEntry + "\n  soon2: { tls_cert: certs/soon2.pem, tls_key: certs/soon2.key }") + notify)
        #expect(try await gateway.waitForLog("configuration reloaded"))
        // The reload's notification is sent while the first is still held.
        #expect(try await eventually { holder.bodies.all.count >= 2 })

        let givingUp = "error certgate: attempt=1 entry=soon reason=no answer in time url=\(url) [Gateway] webhook notification failed; giving up"
        #expect(try await gateway.waitForLine(givingUp, timeout: .seconds(15)), "\(gateway.logText)")
        // The reload was done before the held webhook's timeout ran out: the gateway logged
        // it first (its own order, whatever delays this test process had reading the log).
        let lines = untimedLogLines(gateway.logText)
        let reloadedAt = lines.firstIndex { $0.hasSuffix("[Gateway] configuration reloaded") }
        let gaveUpAt = lines.firstIndex(of: givingUp)
        #expect(reloadedAt != nil && gaveUpAt != nil && reloadedAt! < gaveUpAt!, "\(lines)")
        #expect(handshake < .seconds(5), "handshake took \(handshake)")
        let entries = holder.bodies.all.compactMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] }.compactMap { $0["entry"] as? String }
        #expect(entries == ["soon", "soon2"])
        await holder.close()
    }
}
