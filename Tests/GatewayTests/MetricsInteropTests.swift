import CertificateTestSupport
import ControlProtocol
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("Prometheus metrics (the real binary)", .serialized, .timeLimit(.minutes(3)))
struct MetricsInteropTests {
    func scrape(_ port: Int) async throws -> PrometheusScrape {
        let (status, text) = try await runTool("/usr/bin/curl", ["-sS", "--fail", "http://127.0.0.1:\(port)/metrics"])
        guard status == 0 else { throw GatewayProcessError(message: text) }
        return try PrometheusScrape(text)
    }

    @Test("certgate_event_loop_lag_seconds is a histogram with the buckets 1, 2, 5, 10, 25, 50, 100, 250 ms and 1 s (and +Inf), its count growing as the gateway runs")
    func eventLoopLagHistogram() async throws {
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        let gateway = try await GatewayProcess(
            config: GatewayInteropTests.config() + "\nmetrics: { listen: 127.0.0.1:0 }\n", folder: folder)
        defer { gateway.stop() }
        let metricsPort = try #require(gateway.metricsPort)
        func count() async throws -> Double { try await scrape(metricsPort).value("certgate_event_loop_lag_seconds_count") ?? 0 }
        let first = try await count()
        #expect(try await eventually { try await count() >= first + 3 })
        let buckets = try await scrape(metricsPort).samples.keys
            .filter { $0.name == "certgate_event_loop_lag_seconds_bucket" }
            .compactMap { $0.labels["le"].flatMap(Double.init) }
            .sorted()
        #expect(buckets == [0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, .infinity])
    }

    @Test("without a metrics: section the gateway opens no TCP port but its listener's")
    func noMetricsNoEndpoint() async throws {
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        let gateway = try await GatewayProcess(config: GatewayInteropTests.config(), folder: folder)
        defer { gateway.stop() }
        #expect(!gateway.logText.contains("metrics endpoint"))
        let listening = try listeningTCPPorts(of: gateway.process.processIdentifier)
        #expect(listening == [gateway.port], "sockets: \(Self.socketTargets(of: gateway.process.processIdentifier))")
    }

    /// What each of a process's sockets is (for a failure's message).
    static func socketTargets(of pid: Int32) -> [String] {
        let fdFolder = "/proc/\(pid)/fd"
        return ((try? FileManager.default.contentsOfDirectory(atPath: fdFolder)) ?? []).compactMap { fd in
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "\(fdFolder)/\(fd)")).map { "\(fd) → \($0)" }
        }.sorted()
    }

    /// The TCP ports a process listens on: its sockets (`/proc/PID/fd`) found in LISTEN
    /// state (0A) in its network namespace's `tcp` and `tcp6` tables.
    func listeningTCPPorts(of pid: Int32) throws -> Set<Int> {
        let fdFolder = "/proc/\(pid)/fd"
        var inodes: Set<String> = []
        for fd in try FileManager.default.contentsOfDirectory(atPath: fdFolder) {
            guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "\(fdFolder)/\(fd)"),
                  target.hasPrefix("socket:[") else { continue }
            inodes.insert(String(target.dropFirst("socket:[".count).dropLast()))
        }
        var ports: Set<Int> = []
        for table in ["/proc/\(pid)/net/tcp", "/proc/\(pid)/net/tcp6"] {
            // Read to its end: a proc file reports no size, and the table outgrows a page
            // while other tests hold sockets.
            let text = FileHandle(forReadingAtPath: table).map { String(decoding: $0.readDataToEndOfFile(), as: UTF8.self) } ?? ""
            for line in text.split(separator: "\n").dropFirst() {
                // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
                let fields = line.split(separator: " ")
                guard fields.count > 9, fields[3] == "0A", inodes.contains(String(fields[9])),
                      let port = fields[1].split(separator: ":").last.flatMap({ Int($0, radix: 16) }) else { continue }
                ports.insert(port)
            }
        }
        return ports
    }

    @Test("handshake counters by match kind, per-entry validity gauges, update counters; a removed entry's series are gone")
    func scrapeAfterHandshakesAndUpdates() async throws {
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        let withMetrics = { (config: String) in config + "\nmetrics:\n  listen: 127.0.0.1:0\ncontrol:\n  socket: control.sock\n" }
        try folder.write(GatewayInteropTests.authority.key.pkcs8PEM, to: "ca.key")
        let issuer = "  dev-ca: { tls_cert: ca.pem, tls_key: ca.key, is_ca: true, domains: \"*.dev.test\" }"
        let gateway = try await GatewayProcess(config: withMetrics(GatewayInteropTests.config(extraCertificates: issuer)), folder: folder)
        defer { gateway.stop() }
        let metricsPort = try #require(gateway.metricsPort)

        for name in ["exact.test", "a.wild.test", "unknown.test", nil, "x.dev.test"] as [String?] {
            _ = try await servedCommonName(port: gateway.port, serverName: name, folder: folder)
        }
        var metrics = try await scrape(metricsPort)
        let handshakes = { (match: String) in metrics.value("certgate_handshakes_total", ["listener": "https", "match": match]) }
        #expect(handshakes("exact") == 1)
        #expect(handshakes("wildcard") == 1)
        #expect(handshakes("default") == 1)
        #expect(handshakes("ip") == 1)
        #expect(handshakes("issued") == 1)
        #expect(handshakes("none") == 0)
        #expect(metrics.value("certgate_issued_certificates_total") == 1)
        #expect(metrics.value("certgate_issued_certificates_cached") == 1)
        let notAfter = try #require(metrics.value("certgate_certificate_not_after_timestamp_seconds", ["name": "exact"]))
        let expected = GatewayInteropTests.authority.leaf(dnsNames: ["x"]).certificate.notValidAfter.timeIntervalSince1970
        #expect(abs(notAfter - expected) < 600)  // the fixture's leaves are valid 90 days from now
        #expect(metrics.value("certgate_certificate_not_before_timestamp_seconds", ["name": "fallback"]) != nil)
        #expect(metrics.value("certgate_certificate_expiring", ["name": "exact"]) == 0)
        #expect(metrics.value("certgate_certificates_loaded") == 5)
        #expect(metrics.value("certgate_updates_total", ["source": "config", "result": "applied"]) == 1)

        // Reload without the default entry: its series go, unknown names now get none.
        try folder.write(withMetrics(GatewayInteropTests.config(extraCertificates: issuer, withDefault: false))
            .replacingOccurrences(of: "PORT", with: String(gateway.port)), to: "certgate.yaml")
        gateway.signal(SIGHUP)
        #expect(try await gateway.waitForLog("configuration reloaded"))
        _ = try await servedCommonName(port: gateway.port, serverName: "unknown.test", folder: folder)
        // The refused handshake is counted as it fails; wait for the count, not a while.
        try await eventually {
            metrics = try await scrape(metricsPort)
            return metrics.value("certgate_handshakes_total", ["listener": "https", "match": "none"]) == 1
        }
        #expect(metrics.value("certgate_certificate_not_after_timestamp_seconds", ["name": "fallback"]) == nil)
        #expect(metrics.value("certgate_certificate_expiring", ["name": "fallback"]) == nil)
        #expect(metrics.value("certgate_certificate_not_after_timestamp_seconds", ["name": "exact"]) != nil)
        #expect(handshakes("none") == 1)
        #expect(metrics.value("certgate_updates_total", ["source": "signal", "result": "applied"]) == 1)
        #expect(metrics.value("certgate_certificate_set_generation") == 1)
        #expect(metrics.value("certgate_certificates_loaded") == 4)

        // A rejected reload counts as rejected.
        try folder.write("certificates: [broken\n", to: "certgate.yaml")
        gateway.signal(SIGHUP)
        #expect(try await gateway.waitForLog("reload rejected"))
        metrics = try await scrape(metricsPort)
        #expect(metrics.value("certgate_updates_total", ["source": "signal", "result": "rejected"]) == 1)

        // Control-plane updates count under source="control"; a pushed entry's series appear.
        let pushed = GatewayInteropTests.authority.leaf(dnsNames: ["pushed.test"])
        let bad = Certgate_Control_V1_CertificateEntry.with {
            $0.name = "bad"
            $0.tlsCert = pushed.pem
            $0.tlsKey = TestKey.make().pkcs8PEM
        }
        try await ControlInteropTests.withControl(socket: folder.url.appendingPathComponent("control.sock").path) { control in
            _ = try await control.updateCertificates(.with { $0.upsert = [ControlInteropTests.entry("pushed", pushed)] })
            let refused = await ControlInteropTests.code { _ = try await control.updateCertificates(.with { $0.upsert = [bad] }) }
            #expect(refused == .invalidArgument)
        }
        metrics = try await scrape(metricsPort)
        #expect(metrics.value("certgate_updates_total", ["source": "control", "result": "applied"]) == 1)
        #expect(metrics.value("certgate_updates_total", ["source": "control", "result": "rejected"]) == 1)
        #expect(metrics.value("certgate_certificate_set_generation") == 2)
        #expect(metrics.value("certgate_certificates_loaded") == 5)
        #expect(metrics.value("certgate_certificate_expiring", ["name": "pushed"]) == 0)
    }

    @Test("an expiring entry reads 1 on certgate_certificate_expiring and its state change is logged once")
    func expiringGauge() async throws {
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        let soon = GatewayInteropTests.authority.leaf(dnsNames: ["soon.test"], notAfter: Date().addingTimeInterval(3 * 86_400))
        try folder.write(soon.pem, to: "certs/soon.pem")
        try folder.write(soon.key.pkcs8PEM, to: "certs/soon.key")
        let config = GatewayInteropTests.config(extraCertificates: "  soon: { tls_cert: certs/soon.pem, tls_key: certs/soon.key }")
            + "\nmetrics:\n  listen: 127.0.0.1:0\n"
        let gateway = try await GatewayProcess(config: config, folder: folder)
        defer { gateway.stop() }
        let metricsPort = try #require(gateway.metricsPort)
        let metrics = try await scrape(metricsPort)
        #expect(metrics.value("certgate_certificate_expiring", ["name": "soon"]) == 1)
        #expect(metrics.value("certgate_certificate_expiring", ["name": "exact"]) == 0)
        #expect(gateway.logText.contains("certificate validity changed"))
        #expect(gateway.logText.contains("entry=soon"))
        #expect(gateway.logText.components(separatedBy: "entry=soon").count - 1 == 1)
    }
}
