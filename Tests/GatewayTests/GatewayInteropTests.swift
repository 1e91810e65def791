import CertificateKit
import CertificateTestSupport
import Crypto
import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import SwiftASN1
import Testing
import X509
#if canImport(Glibc)
import Glibc
#endif

/// The real `certgate run` driven by real clients: openssl s_client, curl, and NIO clients.
@Suite("certgate run (the real binary, real clients)", .serialized, .timeLimit(.minutes(3)))
struct GatewayInteropTests {
    static let authority = TestCertificate.authority(commonName: "Interop CA")
    static let group = MultiThreadedEventLoopGroup.singleton

    /// A folder with the CA file and the certificates of the standard config.
    static func fixture() throws -> FixtureFolder {
        try fixture(into: FixtureFolder())
    }

    /// Writes the CA and the four leaves into `folder` (which may hold other files).
    static func fixture(into folder: FixtureFolder) throws -> FixtureFolder {
        try folder.write(authority.pem, to: "ca.pem")
        let leaves: [(String, TestCertificate)] = [
            ("exact", authority.leaf(dnsNames: ["exact.test"])),
            ("wild", authority.leaf(dnsNames: ["*.wild.test"])),
            ("by-ip", authority.leaf(ipAddresses: ["127.0.0.1"], commonName: "by-ip")),
            ("fallback", authority.leaf(dnsNames: ["fallback.test"])),
        ]
        for (name, leaf) in leaves {
            try folder.write(leaf.pem, to: "certs/\(name).pem")
            try folder.write(leaf.key.pkcs8PEM, to: "certs/\(name).key")
        }
        return folder
    }

    static func config(routes: String = respondEverything, extraCertificates: String = "", withDefault: Bool = true, handshakeTimeout: String = "10s") -> String {
        """
        log_level: info
        shutdown_timeout: 5s
        listeners:
          - name: https
            listen: 127.0.0.1:PORT
            handshake_timeout: \(handshakeTimeout)
        routes:
        \(routes)
        certificates:
          exact: { tls_cert: certs/exact.pem, tls_key: certs/exact.key }
          wild: { tls_cert: certs/wild.pem, tls_key: certs/wild.key }
          by-ip: { tls_cert: certs/by-ip.pem, tls_key: certs/by-ip.key }
        \(withDefault ? "  fallback: { tls_cert: certs/fallback.pem, tls_key: certs/fallback.key, is_default: true }" : "")
        \(extraCertificates)
        """
    }

    static let respondEverything = """
          - server_names: ["*"]
            respond: { body: "served {sni}\\n" }
        """

    @Test("openssl s_client gets the certificate the lookup order says", arguments: [
        ("exact.test", "exact.test"),
        ("EXACT.Test", "exact.test"),
        ("exact.test.", "exact.test"),
        ("a.wild.test", "a.wild.test"),
        ("b.a.wild.test", "fallback.test"),
        ("unknown.test", "fallback.test"),
        (nil, "by-ip"),
    ] as [(String?, String)])
    func sniSelection(serverName: String?, expected: String) async throws {
        let folder = try Self.fixture()
        defer { folder.remove() }
        let gateway = try await GatewayProcess(config: Self.config(), folder: folder)
        defer { gateway.stop() }
        let (cn, output) = try await servedCommonName(port: gateway.port, serverName: serverName, folder: folder)
        // A wildcard certificate's CN is its first SAN.
        let expectedCN = expected == "a.wild.test" ? "*.wild.test" : expected
        #expect(cn == expectedCN, "\(output)")
        #expect(output.contains("Verify return code: 0 (ok)"))
    }

    @Test("an unknown name without a default fails the handshake, and it is logged with the SNI")
    func unknownNameWithoutDefault() async throws {
        let folder = try Self.fixture()
        defer { folder.remove() }
        let gateway = try await GatewayProcess(config: Self.config(withDefault: false), folder: folder)
        defer { gateway.stop() }
        let (cn, output) = try await servedCommonName(port: gateway.port, serverName: "nobody.test", folder: folder)
        #expect(cn == nil, "\(output)")
        #expect(try await gateway.waitForLog("sni=nobody.test"))
        #expect(gateway.logText.contains("TLS handshake failed"))
        // Known names still work.
        #expect(try await servedCommonName(port: gateway.port, serverName: "exact.test", folder: folder).cn == "exact.test")
    }

    @Test("curl reaches an upstream through the gateway: a 10 MB body both ways, intact")
    func curlThroughUpstream() async throws {
        let folder = try Self.fixture()
        defer { folder.remove() }
        let upstream = try await HTTPEchoUpstream(group: Self.group)
        let routes = """
              - server_names: ["exact.test"]
                upstream: 127.0.0.1:\(upstream.port)
              - server_names: ["*"]
                respond: { body: "served {sni}\\n" }
            """
        let gateway = try await GatewayProcess(config: Self.config(routes: routes), folder: folder)
        defer { gateway.stop() }
        var payload = [UInt8](repeating: 0, count: 10 * 1024 * 1024)
        var generator = SystemRandomNumberGenerator()
        for index in payload.indices { payload[index] = UInt8.random(in: 0...255, using: &generator) }
        try Data(payload).write(to: folder.url.appendingPathComponent("payload.bin"))
        let (status, output) = try await runTool("/usr/bin/curl", [
            "-sS", "--fail", "--cacert", folder.url.appendingPathComponent("ca.pem").path,
            "--resolve", "exact.test:\(gateway.port):127.0.0.1",
            "--data-binary", "@" + folder.url.appendingPathComponent("payload.bin").path,
            "-o", folder.url.appendingPathComponent("echoed.bin").path,
            "https://exact.test:\(gateway.port)/echo",
        ])
        #expect(status == 0, "\(output)")
        let echoed = try Data(contentsOf: folder.url.appendingPathComponent("echoed.bin"))
        #expect(echoed.count == payload.count)
        #expect(echoed == Data(payload))
        // The built-in responder answers the other names.
        let (_, other) = try await runTool("/usr/bin/curl", [
            "-sS", "--cacert", folder.url.appendingPathComponent("ca.pem").path,
            "--resolve", "x.wild.test:\(gateway.port):127.0.0.1", "https://x.wild.test:\(gateway.port)/",
        ])
        #expect(other == "served x.wild.test\n")
        await upstream.close()
    }

    @Test("a client's half-close reaches the upstream, and the upstream's answer still reaches the client")
    func halfClose() async throws {
        let folder = try Self.fixture()
        defer { folder.remove() }
        let upstream = try await EchoUpstream(group: Self.group)
        let routes = """
              - server_names: ["*.wild.test"]
                upstream: 127.0.0.1:\(upstream.port)
            """
        let gateway = try await GatewayProcess(config: Self.config(routes: routes), folder: folder)
        defer { gateway.stop() }
        let client = TestTLSClient(group: Self.group, trustRoots: [try NIOSSLCertificate(bytes: Self.authority.parsed.der, format: .der)])
        let payload = Array((0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        // The echo upstream closes its side only after it sees our EOF; everything arrives before that.
        let (received, _) = try await client.exchange(port: gateway.port, serverName: "h.wild.test", payload: payload)
        #expect(received == payload)
        await upstream.close()
    }

    @Test("a PROXY header tells the upstream the client's address and port; v2 also the ALPN protocol and the served name, byte for byte", arguments: ["v1", "v2"])
    func proxyProtocol(version: String) async throws {
        let folder = try Self.fixture()
        defer { folder.remove() }
        let upstream = try await EchoUpstream(group: Self.group, expectProxyHeader: version == "v2" ? .v2 : .v1)
        let routes = """
              - server_names: ["exact.test"]
                upstream: 127.0.0.1:\(upstream.port)
                proxy_protocol: \(version)
            """
        let gateway = try await GatewayProcess(config: Self.config(routes: routes), folder: folder)
        defer { gateway.stop() }
        var client = TestTLSClient(group: Self.group, trustRoots: [try NIOSSLCertificate(bytes: Self.authority.parsed.der, format: .der)])
        client.applicationProtocols = ["http/1.1"]  // the listener's default ALPN list
        let (received, connection) = try await client.exchange(port: gateway.port, serverName: "exact.test", payload: Array("hello".utf8))
        #expect(received == Array("hello".utf8))
        let header = try #require(upstream.recorded.all.first)
        let clientPort = try #require(connection.localAddress?.port)
        if version == "v2" {
            // HAProxy's proxy-protocol.txt §2.2: signature, version 2 + PROXY, TCP over IPv4,
            // length 36 = 12 address bytes + PP2_TYPE_ALPN (3 + 8) + PP2_TYPE_AUTHORITY (3 + 10).
            let port = { (value: Int) -> [UInt8] in [UInt8(value >> 8), UInt8(value & 0xff)] }
            let expected: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]
                + [0x21, 0x11, 0x00, 36]
                + [127, 0, 0, 1] + [127, 0, 0, 1] + port(clientPort) + port(gateway.port)
                + [0x01, 0x00, 8] + Array("http/1.1".utf8)
                + [0x02, 0x00, 10] + Array("exact.test".utf8)
            #expect(header == expected)
        } else {
            #expect(String(decoding: header, as: UTF8.self) == "PROXY TCP4 127.0.0.1 127.0.0.1 \(clientPort) \(gateway.port)\r\n")
        }
        await upstream.close()
    }

    @Test("SIGHUP applies a new log_level: a failed handshake (logged at info) is silent at notice, logged after the reload to info")
    func reloadChangesLogLevel() async throws {
        let folder = try Self.fixture()
        defer { folder.remove() }
        let quiet = Self.config(withDefault: false).replacingOccurrences(of: "log_level: info", with: "log_level: notice")
        let gateway = try await GatewayProcess(config: quiet, folder: folder)
        defer { gateway.stop() }
        #expect(try await servedCommonName(port: gateway.port, serverName: "nobody.test", folder: folder).cn == nil)
        // A reload of the same file, logged at notice after the handshake has failed: by
        // then an info line for the failure would be there.
        gateway.signal(SIGHUP)
        #expect(try await gateway.waitForLog("configuration reloaded"))
        #expect(!gateway.logText.contains("TLS handshake failed"))

        try folder.write(Self.config(withDefault: false).replacingOccurrences(of: "PORT", with: String(gateway.port)), to: "certgate.yaml")
        gateway.signal(SIGHUP)
        #expect(try await gateway.waitForLog("log level changed"))
        #expect(try await servedCommonName(port: gateway.port, serverName: "nobody.test", folder: folder).cn == nil)
        #expect(try await gateway.waitForLog("TLS handshake failed"))
    }

    @Test("SIGHUP swaps a certificate: new handshakes get the new one, an open connection keeps working; a broken file keeps the old set")
    func reloadOnHangup() async throws {
        let folder = try Self.fixture()
        defer { folder.remove() }
        let gateway = try await GatewayProcess(config: Self.config(), folder: folder)
        defer { gateway.stop() }
        let trust = [try NIOSSLCertificate(bytes: Self.authority.parsed.der, format: .der)]
        let client = TestTLSClient(group: Self.group, trustRoots: trust)

        let open = try await client.connect(port: gateway.port, serverName: "exact.test")
        let before = try #require(open.servedCertificate).toDERBytes()
        try await open.channel.executeThenClose { inbound, outbound in
            var responses = inbound.makeAsyncIterator()
            func request() async throws -> String {
                try await outbound.write(ByteBuffer(string: "GET / HTTP/1.1\r\nHost: exact.test\r\n\r\n"))
                var text = ""
                while !text.hasSuffix("served exact.test\n") {
                    guard var buffer = try await responses.next() else { break }
                    text += buffer.readString(length: buffer.readableBytes) ?? ""
                }
                return text
            }
            #expect(try await request().hasPrefix("HTTP/1.1 200 OK"))

            // New certificate for exact.test, then SIGHUP.
            let replacement = Self.authority.leaf(dnsNames: ["exact.test"])
            try folder.write(replacement.pem, to: "certs/exact.pem")
            try folder.write(replacement.key.pkcs8PEM, to: "certs/exact.key")
            gateway.signal(SIGHUP)
            #expect(try await gateway.waitForLog("configuration reloaded"))

            let fresh = try await client.connect(port: gateway.port, serverName: "exact.test")
            #expect(try fresh.servedCertificate?.toDERBytes() == replacement.parsed.der)
            #expect(try fresh.servedCertificate?.toDERBytes() != before)
            await fresh.close()

            // The connection opened before the reload still answers.
            #expect(try await request().hasPrefix("HTTP/1.1 200 OK"))

            // A broken file on SIGHUP: rejected, the current set keeps serving.
            try folder.write("certificates: [unclosed\n", to: "certgate.yaml")
            gateway.signal(SIGHUP)
            #expect(try await gateway.waitForLog("reload rejected"))
            let after = try await client.connect(port: gateway.port, serverName: "exact.test")
            #expect(try after.servedCertificate?.toDERBytes() == replacement.parsed.der)
            await after.close()
        }
    }

    @Test("the handshake timeout closes a client that sends nothing, after the listener's 300 ms (its log says which timeout cut it)")
    func handshakeTimeout() async throws {
        let folder = try Self.fixture()
        defer { folder.remove() }
        let gateway = try await GatewayProcess(config: Self.config(handshakeTimeout: "300ms"), folder: folder)
        defer { gateway.stop() }
        // Timed from before the connect: the gateway's clock starts at its accept, which comes
        // after this; a start taken once the connect has returned may be late on a loaded machine.
        let start = ContinuousClock.now
        let channel = try await ClientBootstrap(group: Self.group).connect(host: "127.0.0.1", port: gateway.port).get()
        let closed = channel.closeFuture
        // Closed by the gateway, before our own 20 s guard (twice the default handshake timeout).
        let guardTask = Task { try await Task.sleep(for: .seconds(20)); try await channel.close() }
        try await closed.get()
        guardTask.cancel()
        let elapsed = ContinuousClock.now - start
        #expect(elapsed >= .milliseconds(300), "closed after \(elapsed)")
        // 300 ms configured, not the 10 s default: the gateway's own log says which timeout cut
        // it (a wall-clock bound here needed room for a loaded 2-core machine: 7 s was seen).
        #expect(try await gateway.waitForLog("timeout=300ms [Gateway] TLS handshake timed out; closing"), "\(gateway.logText)")
    }

    @Test("SIGTERM stops accepting, lets an open proxied connection finish, and exits 0")
    func gracefulShutdown() async throws {
        let folder = try Self.fixture()
        defer { folder.remove() }
        let upstream = try await EchoUpstream(group: Self.group)
        let routes = """
              - server_names: ["exact.test"]
                upstream: 127.0.0.1:\(upstream.port)
            """
        // A drain long enough that a loaded machine cannot reach it: the connection must end by itself.
        let config = Self.config(routes: routes).replacingOccurrences(of: "shutdown_timeout: 5s", with: "shutdown_timeout: 60s")
        let gateway = try await GatewayProcess(config: config, folder: folder)
        let client = TestTLSClient(group: Self.group, trustRoots: [try NIOSSLCertificate(bytes: Self.authority.parsed.der, format: .der)])
        let connection = try await client.connect(port: gateway.port, serverName: "exact.test")
        try await connection.channel.executeThenClose { inbound, outbound in
            var iterator = inbound.makeAsyncIterator()
            try await outbound.write(ByteBuffer(string: "one"))
            var first = try #require(try await iterator.next())
            #expect(first.readString(length: first.readableBytes) == "one")
            gateway.signal(SIGTERM)
            #expect(try await gateway.waitForLog("draining"))
            // New connections are refused while the open one still carries data.
            await #expect(throws: (any Error).self) { _ = try await client.connect(port: gateway.port, serverName: "exact.test") }
            try await outbound.write(ByteBuffer(string: "two"))
            var second = try #require(try await iterator.next())
            #expect(second.readString(length: second.readableBytes) == "two")
            outbound.finish()
            while try await iterator.next() != nil {}
        }
        #expect(gateway.process.waitForExit())
        #expect(gateway.process.terminationStatus == 0)
        #expect(!gateway.logText.contains("drain timeout"))
        await upstream.close()
    }

    @Test("an upstream that refuses closes the client cleanly and is logged once, not per connection")
    func refusingUpstream() async throws {
        let folder = try Self.fixture()
        defer { folder.remove() }
        let dead = try ReservedPort()
        defer { withExtendedLifetime(dead) {} }  // held until the test ends
        let deadPort = dead.port
        let routes = """
              - server_names: ["exact.test"]
                upstream: 127.0.0.1:\(deadPort)
            """
        let gateway = try await GatewayProcess(config: Self.config(routes: routes), folder: folder)
        defer { gateway.stop() }
        let client = TestTLSClient(group: Self.group, trustRoots: [try NIOSSLCertificate(bytes: Self.authority.parsed.der, format: .der)])
        for _ in 0..<3 {
            let (received, _) = try await client.exchange(port: gateway.port, serverName: "exact.test", payload: Array("hi".utf8))
            #expect(received.isEmpty)
        }
        #expect(try await gateway.waitForLog("upstream unreachable"))
        #expect(gateway.logText.components(separatedBy: "upstream unreachable").count - 1 == 1)
    }

    /// The shipped `config/certgate.yaml`, its listener moved to `listen` (with `PORT`), started
    /// from its own folder layout in `folder` (`config/`, and `state/` beside it).
    static func startShipped(listen: String, in folder: FixtureFolder) async throws -> GatewayProcess {
        try FileManager.default.createDirectory(at: folder.url.appendingPathComponent("config"), withIntermediateDirectories: true)
        let shipped = try String(contentsOf: CertgateProcess.packageRoot.appendingPathComponent("config/certgate.yaml"), encoding: .utf8)
        #expect(shipped.contains("127.0.0.1:8443"))
        return try await GatewayProcess(
            config: shipped.replacingOccurrences(of: "127.0.0.1:8443", with: listen), folder: folder, configPath: "config/certgate.yaml")
    }

    @Test("out of the box: the default config serves https://localhost with the certificate it creates in state/ (a self-signed P-256 CA, its key 0600)")
    func defaultConfiguration() async throws {
        let folder = try FixtureFolder()
        defer { folder.remove() }
        let gateway = try await Self.startShipped(listen: "127.0.0.1:PORT", in: folder)
        defer { gateway.stop() }
        let caFile = folder.url.appendingPathComponent("state/ca.pem").path
        for name in ["anything.localhost", "localhost"] {
            let (status, output) = try await runTool("/usr/bin/curl", [
                "-sS", "--cacert", caFile, "--resolve", "\(name):\(gateway.port):127.0.0.1", "https://\(name):\(gateway.port)/",
            ])
            #expect(status == 0, "\(output)")
            #expect(output == "certgate is serving \(name)\n")
        }
        // No SNI (an IP in the URL): the leaf carries the local address as an IP SAN.
        let (ipStatus, ipOutput) = try await runTool("/usr/bin/curl", ["-sS", "--cacert", caFile, "https://127.0.0.1:\(gateway.port)/"])
        #expect(ipStatus == 0, "\(ipOutput)")
        // A name outside the CA's domains gets no leaf.
        let (refusedStatus, _) = try await runTool("/usr/bin/curl", [
            "-sS", "--cacert", caFile, "--resolve", "evil.test:\(gateway.port):127.0.0.1", "https://evil.test:\(gateway.port)/",
        ])
        #expect(refusedStatus != 0)
        let attributes = try FileManager.default.attributesOfItem(atPath: folder.url.appendingPathComponent("state/ca.key").path)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        // What create_if_missing made: a self-signed CA whose key is P-256.
        let ca = try Certificate(pemEncoded: try String(contentsOfFile: caFile, encoding: .utf8))
        #expect(ca.issuer == ca.subject)
        #expect(ca.publicKey.isValidSignature(ca.signature, for: ca))
        #expect(P256.Signing.PublicKey(ca.publicKey) != nil)
        #expect(ca.isCertificateAuthority)
        let key = try P256.Signing.PrivateKey(pemRepresentation: try String(contentsOfFile: folder.url.appendingPathComponent("state/ca.key").path, encoding: .utf8))
        #expect(Certificate.PublicKey(key.publicKey) == ca.publicKey)
    }

    @Test("the default config with its listener moved to [::1]: a client without SNI over IPv6 gets a leaf for ::1 from the CA in state/",
          .enabled(if: ipv6LoopbackAvailable, "this machine has no IPv6 loopback (::1) to bind"))
    func defaultConfigurationOverIPv6() async throws {
        let folder = try FixtureFolder()
        defer { folder.remove() }
        let gateway = try await Self.startShipped(listen: "\"[::1]:PORT\"", in: folder)
        defer { gateway.stop() }
        let caFile = folder.url.appendingPathComponent("state/ca.pem").path
        // curl checks the leaf's IP SAN against ::1; the responder's {sni} is empty.
        let (status, output) = try await runTool("/usr/bin/curl", ["-sS", "--cacert", caFile, "https://[::1]:\(gateway.port)/"])
        #expect(status == 0, "\(output)")
        #expect(output == "certgate is serving \n")
    }

    @Test("a burst of 2,000 distinct allowed names: every served leaf verifies against the CA and matches its SNI; outside names get none")
    func issuingBurst() async throws {
        let folder = try Self.fixture()
        defer { folder.remove() }
        let ca = TestCertificate.authority(commonName: "Burst CA")
        try folder.write(ca.pem, to: "burst-ca.pem")
        try folder.write(ca.key.pkcs8PEM, to: "burst-ca.key")
        let config = """
            log_level: notice
            listeners:
              - listen: 127.0.0.1:PORT
            routes:
              - server_names: ["*"]
                respond: { body: "ok" }
            issuing: { rate_per_second: 100000, burst: 100000 }
            certificates:
              burst-ca: { tls_cert: burst-ca.pem, tls_key: burst-ca.key, is_ca: true, is_default: true, domains: "*.burst.test" }
            """
        let gateway = try await GatewayProcess(config: config, folder: folder)
        defer { gateway.stop() }
        let client = TestTLSClient(group: Self.group, trustRoots: [try NIOSSLCertificate(bytes: ca.parsed.der, format: .der)])
        let port = gateway.port
        let verified = try await withThrowingTaskGroup(of: Int.self) { group in
            for worker in 0..<16 {
                group.addTask {
                    var count = 0
                    for index in stride(from: worker, to: 2_000, by: 16) {
                        // fullVerification: chain to the CA and hostname = the SNI.
                        let connection = try await client.connect(port: port, serverName: "n\(index).burst.test")
                        let served = try #require(connection.servedCertificate)
                        let leaf = try Certificate(derEncoded: try served.toDERBytes())
                        if leaf.dnsNames == ["n\(index).burst.test"] && leaf.isIssued(by: ca.certificate) { count += 1 }
                        await connection.close()
                    }
                    return count
                }
            }
            return try await group.reduce(0, +)
        }
        #expect(verified == 2_000)
        for name in ["x.other.test", "a.b.burst.test", "burst.test"] {
            await #expect(throws: (any Error).self) { _ = try await client.connect(port: port, serverName: name) }
        }
    }

    @Test("a name the issuer refuses (rate limited) gets the static default; a name it signed is still served from its cache")
    func refusedNameFallsBackToDefault() async throws {
        let folder = try Self.fixture()
        defer { folder.remove() }
        let ca = TestCertificate.authority(commonName: "Limited CA")
        try folder.write(ca.pem, to: "limited-ca.pem")
        try folder.write(ca.key.pkcs8PEM, to: "limited-ca.key")
        let extra = "  limited-ca: { tls_cert: limited-ca.pem, tls_key: limited-ca.key, is_ca: true, domains: \"*.dev.test\" }"
        let config = Self.config(extraCertificates: extra) + "\nissuing: { rate_per_second: 0, burst: 1 }\n"
        let gateway = try await GatewayProcess(config: config, folder: folder)
        defer { gateway.stop() }
        let client = TestTLSClient(group: Self.group, trustRoots: [
            try NIOSSLCertificate(bytes: ca.parsed.der, format: .der),
            try NIOSSLCertificate(bytes: Self.authority.parsed.der, format: .der),
        ])
        // The first new name is signed by the issuer.
        let first = try await client.connect(port: gateway.port, serverName: "one.dev.test")
        let firstLeaf = try Certificate(derEncoded: try #require(first.servedCertificate).toDERBytes())
        #expect(firstLeaf.dnsNames == ["one.dev.test"])
        await first.close()
        // The bucket is empty: the next new name gets the static default (fallback.test).
        let (cn, output) = try await servedCommonName(port: gateway.port, serverName: "two.dev.test", folder: folder)
        #expect(cn == "fallback.test", "\(output)")
        // The signed name is still served from the cache.
        let again = try await client.connect(port: gateway.port, serverName: "one.dev.test")
        #expect(try again.servedCertificate?.toDERBytes() == first.servedCertificate?.toDERBytes())
        await again.close()
    }
}
