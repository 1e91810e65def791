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

/// The local CA's limits through the real binary: each refusal reason counted in
/// `certgate_issue_refused_total{reason}`, `max_concurrent` and the signing queue, and
/// `idle_timeout` with the minute sweep.
@Suite("On-the-fly signing limits (the real binary)", .serialized, .timeLimit(.minutes(3)))
struct IssuingInteropTests {
    static let authority = GatewayInteropTests.authority
    static let group = MultiThreadedEventLoopGroup.singleton

    /// A gateway whose issuer `dev-ca` (the fixture's CA) signs for `*.dev.test`, with a
    /// metrics endpoint; `staticDefault` keeps the fixture's `fallback` default entry,
    /// otherwise the issuer is the default.
    static func start(folder: FixtureFolder, issuing: String, staticDefault: Bool) async throws -> (GatewayProcess, metricsPort: Int) {
        try folder.write(authority.key.pkcs8PEM, to: "ca.key")
        let issuer = "  dev-ca: { tls_cert: ca.pem, tls_key: ca.key, is_ca: true, domains: \"*.dev.test\"\(staticDefault ? "" : ", is_default: true") }"
        let config = GatewayInteropTests.config(extraCertificates: issuer, withDefault: staticDefault)
            + "\nissuing: \(issuing)\nmetrics: { listen: 127.0.0.1:0 }\n"
        let gateway = try await GatewayProcess(config: config, folder: folder)
        guard let metricsPort = gateway.metricsPort else {
            gateway.stop()
            throw GatewayProcessError(message: "no metrics endpoint:\n\(gateway.logText)")
        }
        return (gateway, metricsPort)
    }

    /// The leaf the gateway on `port` serves for `name`, verified against the fixture's CA.
    static func servedLeaf(_ name: String, port: Int) async throws -> Certificate {
        let probe = TLSProbe(group: group, trustRoots: [try NIOSSLCertificate(bytes: authority.parsed.der, format: .der)])
        let connection = try await probe.connect(port: port, serverName: name)
        let served = connection.servedLeaf
        await connection.close()
        return try Certificate(derEncoded: try #require(served))
    }

    static func commonName(_ der: [UInt8]?) throws -> String? {
        try der.map { try Certificate(derEncoded: $0).subject.commonName } ?? nil
    }

    @Test("a name outside the issuer's domains is refused as not_allowed: no leaf, no default to fall back on, the handshake fails with internal_error; counted and logged with the reason")
    func notAllowed() async throws {
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        let (gateway, metricsPort) = try await Self.start(folder: folder, issuing: "{ rate_per_second: 100, burst: 100 }", staticDefault: false)
        defer { gateway.stop() }
        let probe = TLSProbe(group: Self.group)

        // evil.test: the issuer is the default, but its domains do not allow the name.
        var failure: TLSProbe.Failure?
        do {
            let connection = try await probe.connect(port: gateway.port, serverName: "evil.test")
            await connection.close()
        } catch let error as TLSProbe.Failure {
            failure = error
        }
        let clientPort = try #require(failure?.localAddress?.port)
        #expect("\(failure!.underlying)".contains("TLSV1_ALERT_INTERNAL_ERROR"), "\(failure!)")
        let line = "info certgate: client=[IPv4]127.0.0.1/127.0.0.1:\(clientPort) entry=dev-ca listener=https match=default "
            + "reason=issuer 'dev-ca' refused evil.test: not_allowed sni=evil.test [Gateway] TLS handshake failed"
        #expect(try await gateway.waitForLine(line), "\(gateway.logText)")
        // A one-level pattern does not take two levels: openssl sees the alert.
        let (cn, output) = try await servedCommonName(port: gateway.port, serverName: "a.b.dev.test", folder: folder)
        #expect(cn == nil)
        #expect(output.contains("alert internal error"), "\(output)")
        // An allowed name is signed.
        let signed = try await probe.connect(port: gateway.port, serverName: "ok.dev.test")
        #expect(try Self.commonName(signed.servedLeaf) == "ok.dev.test")
        await signed.close()

        let metrics = try await scrapeMetrics(port: metricsPort)
        #expect(metrics.value("certgate_issue_refused_total", ["reason": "not_allowed"]) == 2)
        #expect(metrics.value("certgate_issue_refused_total", ["reason": "rate_limited"]) == nil)
        #expect(metrics.value("certgate_issue_refused_total", ["reason": "cache_full"]) == nil)
        #expect(metrics.value("certgate_issued_certificates_total") == 1)
        #expect(metrics.value("certgate_issued_certificates_cached") == 1)
        #expect(metrics.value("certgate_handshakes_total", ["listener": "https", "match": "none"]) == 2)
        #expect(metrics.value("certgate_handshakes_total", ["listener": "https", "match": "issued"]) == 1)
    }

    @Test("rate_per_second 0 with burst 2: two new names are signed, the next two are refused as rate_limited and get the static default; a signed name is served again without a token")
    func rateLimited() async throws {
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        let (gateway, metricsPort) = try await Self.start(folder: folder, issuing: "{ rate_per_second: 0, burst: 2 }", staticDefault: true)
        defer { gateway.stop() }
        let probe = TLSProbe(group: Self.group)
        var served: [String?] = []
        for name in ["n1.dev.test", "n2.dev.test", "n3.dev.test", "n4.dev.test", "n1.dev.test"] {
            let connection = try await probe.connect(port: gateway.port, serverName: name)
            served.append(try Self.commonName(connection.servedLeaf))
            await connection.close()
        }
        #expect(served == ["n1.dev.test", "n2.dev.test", "fallback.test", "fallback.test", "n1.dev.test"])
        let metrics = try await scrapeMetrics(port: metricsPort)
        #expect(metrics.value("certgate_issue_refused_total", ["reason": "rate_limited"]) == 2)
        #expect(metrics.value("certgate_issue_refused_total", ["reason": "not_allowed"]) == nil)
        #expect(metrics.value("certgate_issued_certificates_total") == 2)
        #expect(metrics.value("certgate_handshakes_total", ["listener": "https", "match": "issued"]) == 3)
        #expect(metrics.value("certgate_handshakes_total", ["listener": "https", "match": "default"]) == 2)
        #expect(metrics.value("certgate_handshakes_total", ["listener": "https", "match": "none"]) == 0)
        // A refusal with a default to serve is not a failed handshake.
        #expect(!gateway.logText.contains("TLS handshake failed"))
    }

    @Test("max_concurrent 1, max_queued 5: a burst of 200 new names queues 5 behind one signature and the names past the queue are refused as cache_full (internal_error, counted, logged); after SIGHUP to max_concurrent 256 a burst of 20 is signed at once and none is refused")
    func cacheFullAndMaxConcurrent() async throws {
        let folder = try FixtureFolder()
        defer { folder.remove() }
        // An RSA-4096 CA: each signature takes milliseconds, so the queue grows faster than it drains.
        let (made, output) = try await runTool("/usr/bin/openssl", [
            "req", "-x509", "-newkey", "rsa:4096", "-nodes", "-keyout", folder.url.appendingPathComponent("slow-ca.key").path,
            "-out", folder.url.appendingPathComponent("slow-ca.pem").path, "-subj", "/CN=Slow RSA CA", "-days", "30",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        ])
        try #require(made == 0, "\(output)")
        func config(maxConcurrent: Int) -> String {
            """
            log_level: info
            listeners:
              - name: https
                listen: 127.0.0.1:PORT
                handshake_timeout: 2m
            routes:
              - server_names: ["*"]
                respond: { body: "ok" }
            issuing: { max_concurrent: \(maxConcurrent), max_queued: 5, rate_per_second: 1000000, burst: 1000000 }
            metrics: { listen: 127.0.0.1:0 }
            certificates:
              slow-ca: { tls_cert: slow-ca.pem, tls_key: slow-ca.key, is_ca: true, domains: "*.q.test" }
            """
        }
        let gateway = try await GatewayProcess(config: config(maxConcurrent: 1), folder: folder)
        defer { gateway.stop() }
        let metricsPort = try #require(gateway.metricsPort)

        // Every new name takes a token and a place: 1 signing, then up to 5 queued.
        let first = (0..<200).map { String(format: "n%04d.q.test", $0) }
        let answers = try await RawClientHello.firstBytes(of: try RawClientHello.make(serverNames: first), port: gateway.port, group: Self.group)
        let alerts = answers.filter { $0 == RawClientHello.internalErrorAlert }.count
        let serverHellos = answers.filter { $0.first == 0x16 }.count
        #expect(alerts + serverHellos == 200, "other answers: \(answers.filter { $0 != RawClientHello.internalErrorAlert && $0.first != 0x16 }.prefix(3))")
        #expect(alerts > 0)
        #expect(serverHellos >= 6)  // at least the one signing and the 5 queued
        var metrics = try await scrapeMetrics(port: metricsPort)
        #expect(metrics.value("certgate_issue_refused_total", ["reason": "cache_full"]) == Double(alerts))
        #expect(metrics.value("certgate_issued_certificates_total") == Double(serverHellos))
        #expect(metrics.value("certgate_handshakes_total", ["listener": "https", "match": "none"]) == Double(alerts))
        #expect(metrics.value("certgate_handshakes_total", ["listener": "https", "match": "issued"]) == Double(serverHellos))
        #expect(metrics.value("certgate_issue_refused_total", ["reason": "rate_limited"]) == nil)
        // Each refused name is logged with its reason, and only those.
        let refusedNames = Set(zip(first, answers).filter { $0.1 == RawClientHello.internalErrorAlert }.map(\.0))
        let prefix = "info certgate: client=[IPv4]127.0.0.1/127.0.0.1:"
        let loggedNames = Set(untimedLogLines(gateway.logText).compactMap { line -> String? in
            // (The signed names' handshakes fail too, later: this client leaves after the ServerHello.)
            guard line.hasPrefix(prefix), line.contains(" reason=issuer "), let sni = line.range(of: " sni=") else { return nil }
            let name = String(line[sni.upperBound...].prefix { $0 != " " })
            let expected = " entry=slow-ca listener=https match=wildcard reason=issuer 'slow-ca' refused \(name): cache_full sni=\(name) [Gateway] TLS handshake failed"
            return line.hasSuffix(expected) ? name : "unexpected: \(line)"
        })
        #expect(loggedNames == refusedNames)

        // 256 at once: 20 new names all start signing; none waits, none is refused. (Small: each
        // RSA-4096 signature is CPU the suites running beside this one need too.)
        try gateway.reload(with: config(maxConcurrent: 256))
        #expect(try await gateway.waitForLog("issuing limits changed"))
        let second = (0..<20).map { String(format: "m%04d.q.test", $0) }
        let more = try await RawClientHello.firstBytes(of: try RawClientHello.make(serverNames: second), port: gateway.port, group: Self.group)
        #expect(more.filter { $0.first == 0x16 }.count == 20)
        metrics = try await scrapeMetrics(port: metricsPort)
        #expect(metrics.value("certgate_issue_refused_total", ["reason": "cache_full"]) == Double(alerts))
        #expect(metrics.value("certgate_issued_certificates_total") == Double(serverHellos + 20))
    }

    @Test("idle_timeout 5s: at the minute sweep a leaf unused for 5 s is dropped (from the cache and the state) and its next handshake gets a new leaf; a leaf in use stays")
    func idleTimeout() async throws {
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        let (gateway, metricsPort) = try await Self.start(folder: folder, issuing: "{ idle_timeout: 5s }", staticDefault: true)
        defer { gateway.stop() }
        let stateDirectory = folder.url.appendingPathComponent("state")
        func leaf(_ name: String) async throws -> Certificate { try await Self.servedLeaf(name, port: gateway.port) }
        let idle = try await leaf("idle.dev.test")
        let busy = try await leaf("busy.dev.test")
        #expect(idle.subject.commonName == "idle.dev.test")
        #expect(try await eventually { try storedIssuedLeafNames(stateDirectory: stateDirectory) == ["busy.dev.test", "idle.dev.test"] })

        // The sweep runs a minute after start, then every minute. Meanwhile busy.dev.test is
        // used every few hundred milliseconds (well within its 5 s), idle.dev.test never.
        var busySerials: Set<Certificate.SerialNumber> = []
        let swept = try await eventually(timeout: .seconds(90)) {
            busySerials.insert(try await leaf("busy.dev.test").serialNumber)
            try await Task.sleep(for: .milliseconds(300))
            return try !storedIssuedLeafNames(stateDirectory: stateDirectory).contains("idle.dev.test")
        }
        #expect(swept, "idle.dev.test was not dropped within 90 s")
        #expect(try storedIssuedLeafNames(stateDirectory: stateDirectory) == ["busy.dev.test"])
        #expect(busySerials == [busy.serialNumber])

        let again = try await leaf("idle.dev.test")
        #expect(again.subject.commonName == "idle.dev.test")
        #expect(again.serialNumber != idle.serialNumber)
        #expect(try await leaf("busy.dev.test").serialNumber == busy.serialNumber)
        let metrics = try await scrapeMetrics(port: metricsPort)
        #expect(metrics.value("certgate_issued_certificates_total") == 3)
        // Recorded at the last signing: the new idle leaf and busy's.
        #expect(metrics.value("certgate_issued_certificates_cached") == 2)
    }
    @Test("a leaf served again after 1,000 other new names (its TLS objects let go meanwhile, as NIOServingMaterialTests shows) is the same certificate, and verifies; nothing is signed twice")
    func leafBeyondTheRecentlyServedIsServedAgain() async throws {
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        let (gateway, metricsPort) = try await Self.start(
            folder: folder, issuing: "{ rate_per_second: 1000000, burst: 1000000 }", staticDefault: true)
        defer { gateway.stop() }
        func leaf(_ name: String) async throws -> Certificate { try await Self.servedLeaf(name, port: gateway.port) }
        let first = try await leaf("first.dev.test")
        for index in 0..<1_000 {
            _ = try await leaf("n\(index).dev.test")
        }
        let again = try await leaf("first.dev.test")
        #expect(again.subject.commonName == "first.dev.test")
        #expect(again == first)
        let metrics = try await scrapeMetrics(port: metricsPort)
        #expect(metrics.value("certgate_issued_certificates_total") == 1_001)
        #expect((metrics.value("certgate_issue_refused_total", ["reason": "rate_limited"]) ?? 0) == 0)
    }
}
