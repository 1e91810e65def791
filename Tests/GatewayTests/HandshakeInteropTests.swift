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

/// The listener's TLS settings and ALPN at run time and across SIGHUP, the responder and
/// the route order through curl, P-521 material, and an IPv6 listener — the real binary
/// against openssl s_client, curl and NIO clients.
@Suite("Handshakes, ALPN and routes (the real binary)", .serialized, .timeLimit(.minutes(3)))
struct HandshakeInteropTests {
    static let authority = GatewayInteropTests.authority
    static let group = MultiThreadedEventLoopGroup.singleton

    /// The standard fixture's certificates behind one listener named `https` with
    /// `settings` (lines under the listener, e.g. `min_tls_version: tls1.3`).
    static func config(
        listen: String = "127.0.0.1:PORT", settings: [String] = [], routes: String = GatewayInteropTests.respondEverything,
        extraCertificates: String = "", extra: String = ""
    ) -> String {
        """
        log_level: info
        shutdown_timeout: 1s
        listeners:
          - name: https
            listen: "\(listen)"
        \(settings.map { "    " + $0 }.joined(separator: "\n"))
        routes:
        \(routes)
        certificates:
          exact: { tls_cert: certs/exact.pem, tls_key: certs/exact.key }
          wild: { tls_cert: certs/wild.pem, tls_key: certs/wild.key }
          by-ip: { tls_cert: certs/by-ip.pem, tls_key: certs/by-ip.key }
          fallback: { tls_cert: certs/fallback.pem, tls_key: certs/fallback.key, is_default: true }
        \(extraCertificates)
        \(extra)
        """
    }

    static func sClient(port: Int, host: String = "127.0.0.1", serverName: String?, caFile: String, _ options: [String] = []) async throws -> String {
        var arguments = ["s_client", "-connect", "\(host):\(port)", "-CAfile", caFile, "-verify_return_error", "-showcerts"] + options
        if let serverName { arguments += ["-servername", serverName] } else { arguments += ["-noservername"] }
        return try await runTool("/usr/bin/openssl", arguments, input: Data("Q\n".utf8)).output
    }

    /// The certificates `openssl s_client -showcerts` printed, in order, as DER.
    static func shownCertificates(_ output: String) -> [[UInt8]] {
        ((try? PEMDocument.parseMultiple(pemString: output)) ?? []).map(\.derBytes)
    }

    static func trust() throws -> [NIOSSLCertificate] {
        [try NIOSSLCertificate(bytes: authority.parsed.der, format: .der)]
    }

    static let request = Array("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".utf8)

    /// What the standard `respond` route ("served {sni}\n") answers a `Connection: close` request.
    static func servedClose(_ sni: String) -> String {
        let body = "served \(sni)\n"
        return "HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: \(body.utf8.count)\r\nconnection: close\r\n\r\n" + body
    }

    // MARK: - TLS versions

    @Test("min_tls_version tls1.3 refuses openssl -tls1_2 with a protocol_version alert; SIGHUP to tls1.2 serves it TLS 1.2; SIGHUP back refuses it again while the TLS 1.2 connection opened before keeps answering")
    func minimumVersionAndReload() async throws {
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        let caFile = folder.url.appendingPathComponent("ca.pem").path
        let strict = Self.config(settings: ["min_tls_version: tls1.3"])
        let gateway = try await GatewayProcess(config: strict, folder: folder)
        defer { gateway.stop() }

        var output = try await Self.sClient(port: gateway.port, serverName: "exact.test", caFile: caFile, ["-tls1_2"])
        #expect(output.contains("SSL alert number 70"), "\(output)")  // protocol_version
        #expect(Self.shownCertificates(output).isEmpty)
        #expect(try await gateway.waitForLog("TLS handshake failed"))
        output = try await Self.sClient(port: gateway.port, serverName: "exact.test", caFile: caFile, ["-tls1_3"])
        #expect(output.contains("New, TLSv1.3, Cipher is "), "\(output)")
        #expect(output.contains("Verify return code: 0 (ok)"))

        try gateway.reload(with: Self.config(settings: ["min_tls_version: tls1.2"]))
        #expect(try await gateway.waitForLog("configuration reloaded"))
        output = try await Self.sClient(port: gateway.port, serverName: "exact.test", caFile: caFile, ["-tls1_2"])
        #expect(output.contains("New, TLSv1.2, Cipher is "), "\(output)")
        #expect(output.contains("Verify return code: 0 (ok)"))

        // A TLS 1.2 connection made now, kept open across the next reload.
        var probe = TLSProbe(group: Self.group, trustRoots: try Self.trust(), applicationProtocols: ["http/1.1"])
        probe.maximumTLSVersion = .tlsv12
        let open = try await probe.connect(port: gateway.port, serverName: "exact.test")
        #expect(open.tlsVersion == .tlsv12)
        let answer = "HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 18\r\n\r\nserved exact.test\n"
        try await open.channel.executeThenClose { inbound, outbound in
            var responses = inbound.makeAsyncIterator()
            func ask() async throws -> String {
                try await outbound.write(ByteBuffer(string: "GET / HTTP/1.1\r\nHost: exact.test\r\n\r\n"))
                var text = ""
                while text.utf8.count < answer.utf8.count, var buffer = try await responses.next() {
                    text += buffer.readString(length: buffer.readableBytes) ?? ""
                }
                return text
            }
            #expect(try await ask() == answer)

            try gateway.reload(with: strict)
            #expect(try await gateway.waitForLog("configuration reloaded", occurrences: 2))
            let refused = try await Self.sClient(port: gateway.port, serverName: "exact.test", caFile: caFile, ["-tls1_2"])
            #expect(refused.contains("SSL alert number 70"), "\(refused)")
            // Open connections keep the settings they were made with.
            #expect(try await ask() == answer)
        }
    }

    @Test("max_tls_version tls1.2: openssl gets TLS 1.2, an openssl -tls1_3 client gets a protocol_version alert; SIGHUP to tls1.3 serves TLS 1.3 to new connections")
    func maximumVersionAndReload() async throws {
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        let caFile = folder.url.appendingPathComponent("ca.pem").path
        let gateway = try await GatewayProcess(config: Self.config(settings: ["max_tls_version: tls1.2"]), folder: folder)
        defer { gateway.stop() }

        var output = try await Self.sClient(port: gateway.port, serverName: "exact.test", caFile: caFile)
        #expect(output.contains("New, TLSv1.2, Cipher is "), "\(output)")
        #expect(output.contains("Verify return code: 0 (ok)"))
        output = try await Self.sClient(port: gateway.port, serverName: "exact.test", caFile: caFile, ["-tls1_3"])
        #expect(output.contains("SSL alert number 70"), "\(output)")
        #expect(Self.shownCertificates(output).isEmpty)

        try gateway.reload(with: Self.config(settings: ["max_tls_version: tls1.3"]))
        #expect(try await gateway.waitForLog("configuration reloaded"))
        output = try await Self.sClient(port: gateway.port, serverName: "exact.test", caFile: caFile)
        #expect(output.contains("New, TLSv1.3, Cipher is "), "\(output)")
        output = try await Self.sClient(port: gateway.port, serverName: "exact.test", caFile: caFile, ["-tls1_3"])
        #expect(output.contains("Verify return code: 0 (ok)"), "\(output)")
    }

    // MARK: - ALPN

    @Test("ALPN: a client offering only h2 to a listener offering [http/1.1] negotiates nothing and is answered in HTTP/1.1; after SIGHUP to [h2, http/1.1] it negotiates h2 and the responder closes it")
    func alpnAndReload() async throws {
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        let caFile = folder.url.appendingPathComponent("ca.pem").path
        let gateway = try await GatewayProcess(config: Self.config(), folder: folder)
        defer { gateway.stop() }
        let h2Only = TLSProbe(group: Self.group, trustRoots: try Self.trust(), applicationProtocols: ["h2"])

        var output = try await Self.sClient(port: gateway.port, serverName: "exact.test", caFile: caFile, ["-alpn", "h2"])
        #expect(output.contains("No ALPN negotiated"), "\(output)")
        #expect(output.contains("Verify return code: 0 (ok)"))
        let before = try await h2Only.connect(port: gateway.port, serverName: "exact.test")
        #expect(before.negotiatedProtocol == nil)
        let (answered, _) = try await before.readToEnd(sending: Self.request)
        #expect(String(decoding: answered, as: UTF8.self) == Self.servedClose("exact.test"))

        try gateway.reload(with: Self.config(settings: ["alpn: [h2, http/1.1]"]))
        #expect(try await gateway.waitForLog("configuration reloaded"))
        output = try await Self.sClient(port: gateway.port, serverName: "exact.test", caFile: caFile, ["-alpn", "h2"])
        #expect(output.contains("ALPN protocol: h2"), "\(output)")
        let after = try await h2Only.connect(port: gateway.port, serverName: "exact.test")
        #expect(after.negotiatedProtocol == "h2")
        let (nothing, closed) = try await after.readToEnd(sending: Self.request)
        #expect(nothing.isEmpty)
        #expect(closed)
        let line = "info certgate: alpn=h2 client=[IPv4]127.0.0.1/127.0.0.1:\(after.localPort) entry=exact listener=https match=exact sni=exact.test [Gateway] the built-in responder speaks HTTP/1.1 only; closing"
        #expect(try await gateway.waitForLine(line), "\(gateway.logText)")
        // The listener's order decides: a client preferring http/1.1 but also offering h2 gets h2.
        let both = TLSProbe(group: Self.group, trustRoots: try Self.trust(), applicationProtocols: ["http/1.1", "h2"])
        let preferred = try await both.connect(port: gateway.port, serverName: "exact.test")
        #expect(preferred.negotiatedProtocol == "h2")
        await preferred.close()
        let http11 = TLSProbe(group: Self.group, trustRoots: try Self.trust(), applicationProtocols: ["http/1.1"])
        let plain = try await http11.connect(port: gateway.port, serverName: "exact.test")
        #expect(plain.negotiatedProtocol == "http/1.1")
        #expect(String(decoding: try await plain.readToEnd(sending: Self.request).received, as: UTF8.self) == Self.servedClose("exact.test"))
    }

    @Test("a respond route closes a client that negotiated h2 without answering its request; an upstream route carries the same client's bytes; http/1.1 is answered")
    func respondClosesOtherProtocols() async throws {
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        let upstream = try await EchoUpstream(group: Self.group)
        let routes = """
              - server_names: ["exact.test"]
                upstream: 127.0.0.1:\(upstream.port)
              - server_names: ["*"]
                respond: { body: "served {sni}\\n" }
            """
        let gateway = try await GatewayProcess(config: Self.config(settings: ["alpn: [h2, http/1.1]"], routes: routes), folder: folder)
        defer { gateway.stop() }
        let h2 = TLSProbe(group: Self.group, trustRoots: try Self.trust(), applicationProtocols: ["h2"])

        let refused = try await h2.connect(port: gateway.port, serverName: "a.wild.test")
        #expect(refused.negotiatedProtocol == "h2")
        let (nothing, closed) = try await refused.readToEnd(sending: Self.request)
        #expect(nothing.isEmpty)
        #expect(closed)
        let line = "info certgate: alpn=h2 client=[IPv4]127.0.0.1/127.0.0.1:\(refused.localPort) entry=wild listener=https match=wildcard sni=a.wild.test [Gateway] the built-in responder speaks HTTP/1.1 only; closing"
        #expect(try await gateway.waitForLine(line), "\(gateway.logText)")

        // The same protocol on an upstream route: proxied, bytes intact.
        let proxied = try await h2.connect(port: gateway.port, serverName: "exact.test")
        #expect(proxied.negotiatedProtocol == "h2")
        let payload = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)
        let (echoed, _) = try await proxied.readToEnd(sending: payload, halfClose: true)
        #expect(echoed == payload)

        // curl speaking HTTP/1.1 on the respond route is answered.
        let (status, body) = try await runTool("/usr/bin/curl", [
            "-sS", "--http1.1", "--cacert", folder.url.appendingPathComponent("ca.pem").path,
            "--resolve", "b.wild.test:\(gateway.port):127.0.0.1", "https://b.wild.test:\(gateway.port)/",
        ])
        #expect(status == 0)
        #expect(body == "served b.wild.test\n")
        await upstream.close()
    }

    // MARK: - Routes and the responder

    @Test("routes: exact, then *.wildcard, then \"*\", whatever their order in the file; {sni} is the served name and \"\" without SNI; status and headers exactly as configured (curl -i)")
    func routeOrderThroughCurl() async throws {
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        let deep = Self.authority.leaf(dnsNames: ["deep.b.wild.test"])
        try folder.write(deep.pem, to: "certs/deep.pem")
        try folder.write(deep.key.pkcs8PEM, to: "certs/deep.key")
        // Listed from the least to the most specific.
        let routes = """
              - server_names: ["*"]
                respond: { status: 203, headers: { x-sni: "{sni}", x-route: any }, body: "any {sni}\\n" }
              - server_names: ["*.wild.test"]
                respond: { status: 202, headers: { x-route: wildcard, content-type: application/json }, body: '{"sni":"{sni}"}' }
              - server_names: ["a.wild.test", "exact.test"]
                respond: { status: 201, headers: { x-route: exact }, body: "exact {sni}\\n" }
            """
        let gateway = try await GatewayProcess(
            config: Self.config(routes: routes, extraCertificates: "  deep: { tls_cert: certs/deep.pem, tls_key: certs/deep.key }"),
            folder: folder)
        defer { gateway.stop() }
        let caFile = folder.url.appendingPathComponent("ca.pem").path
        func curl(_ name: String?) async throws -> String {
            var arguments = ["-sS", "-i", "--cacert", caFile]
            if let name {
                arguments += ["--resolve", "\(name):\(gateway.port):127.0.0.1", "https://\(name):\(gateway.port)/"]
            } else {
                arguments += ["https://127.0.0.1:\(gateway.port)/"]  // an IP in the URL: no SNI
            }
            return try await runTool("/usr/bin/curl", arguments).output
        }
        await #expect(try curl("exact.test")
            == "HTTP/1.1 201 Created\r\nx-route: exact\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 17\r\n\r\nexact exact.test\n")
        // Both an exact route and the wildcard name a.wild.test: the exact one takes it.
        await #expect(try curl("a.wild.test")
            == "HTTP/1.1 201 Created\r\nx-route: exact\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 18\r\n\r\nexact a.wild.test\n")
        // A configured content-type replaces the default one.
        await #expect(try curl("b.wild.test")
            == "HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\nx-route: wildcard\r\ncontent-length: 21\r\n\r\n{\"sni\":\"b.wild.test\"}")
        // A wildcard covers one label: deep.b.wild.test falls to "*".
        await #expect(try curl("deep.b.wild.test")
            == "HTTP/1.1 203 Non-Authoritative Information\r\nx-route: any\r\nx-sni: deep.b.wild.test\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 21\r\n\r\nany deep.b.wild.test\n")
        // No SNI: "*", with {sni} empty in the header and the body.
        await #expect(try curl(nil)
            == "HTTP/1.1 203 Non-Authoritative Information\r\nx-route: any\r\nx-sni: \r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 5\r\n\r\nany \n")
    }

    // MARK: - P-521

    @Test("a P-521 leaf whose key is as `openssl ecparam -genkey -name secp521r1` writes it is served byte for byte and signs the handshake (ECDSA, SHA-512); a P-521 issuer signs leaves openssl verifies")
    func p521() async throws {
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        let ca = try P521Material.authority(commonName: "P-521 CA")
        try folder.write(ca.pem, to: "p521-ca.pem")
        try folder.write(ca.key.pemRepresentation, to: "p521-ca.key")
        let keyPath = folder.url.appendingPathComponent("certs/p521.key").path
        let (generated, generation) = try await runTool("/usr/bin/openssl", ["ecparam", "-name", "secp521r1", "-genkey", "-out", keyPath])
        #expect(generated == 0, "\(generation)")
        let keyFile = try String(contentsOfFile: keyPath, encoding: .utf8)
        #expect(keyFile.hasPrefix("-----BEGIN EC PARAMETERS-----\nBgUrgQQAIw==\n-----END EC PARAMETERS-----\n-----BEGIN EC PRIVATE KEY-----\n"))
        let sec1 = String(keyFile[keyFile.range(of: "-----BEGIN EC PRIVATE KEY-----")!.lowerBound...])
        let leafKey = try P521.Signing.PrivateKey(pemRepresentation: sec1)
        let leaf = try P521Material.leaf(publicKey: Certificate.PublicKey(leafKey.publicKey), dnsName: "p521.test", authority: ca)
        try folder.write(try leaf.serializeAsPEM().pemString, to: "certs/p521.pem")
        let extra = """
              p521: { tls_cert: certs/p521.pem, tls_key: certs/p521.key }
              p521-ca: { tls_cert: p521-ca.pem, tls_key: p521-ca.key, is_ca: true, domains: "*.p521.test" }
            """
        let gateway = try await GatewayProcess(config: Self.config(extraCertificates: extra), folder: folder)
        defer { gateway.stop() }
        let caFile = folder.url.appendingPathComponent("p521-ca.pem").path

        let output = try await Self.sClient(port: gateway.port, serverName: "p521.test", caFile: caFile, ["-sigalgs", "ecdsa_secp521r1_sha512"])
        #expect(output.contains("Verify return code: 0 (ok)"), "\(output)")
        #expect(output.contains("Server public key is 521 bit"))
        #expect(output.contains("Peer signing digest: SHA512"))
        #expect(output.contains("Peer signature type: ECDSA"))
        var serializer = DER.Serializer()
        try serializer.serialize(leaf)
        #expect(Self.shownCertificates(output) == [serializer.serializedBytes])

        // The P-521 CA as an issuer: a P-256 leaf for the name, chained to it.
        let issuedOutput = try await Self.sClient(port: gateway.port, serverName: "app.p521.test", caFile: caFile)
        #expect(issuedOutput.contains("Verify return code: 0 (ok)"), "\(issuedOutput)")
        let chain = Self.shownCertificates(issuedOutput)
        var caSerializer = DER.Serializer()
        try caSerializer.serialize(ca.certificate)
        #expect(chain.count == 2)
        #expect(chain.last == caSerializer.serializedBytes)
        let issued = try Certificate(derEncoded: try #require(chain.first))
        #expect(try issued.extensions.subjectAlternativeNames.map { Array($0) } == [GeneralName.dnsName("app.p521.test")])
        #expect(issued.issuer == ca.certificate.subject)
        #expect(P256.Signing.PublicKey(issued.publicKey) != nil)
    }

    // MARK: - IPv6

    @Test("a listener on [::1] serves curl over IPv6: without SNI the entry whose IP SAN is ::1, with SNI by name",
          .enabled(if: ipv6LoopbackAvailable, "this machine has no IPv6 loopback (::1) to bind"))
    func ipv6Listener() async throws {
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        let v6 = Self.authority.leaf(ipAddresses: ["::1"], commonName: "by-ipv6")
        try folder.write(v6.pem, to: "certs/v6.pem")
        try folder.write(v6.key.pkcs8PEM, to: "certs/v6.key")
        let gateway = try await GatewayProcess(
            config: Self.config(listen: "[::1]:PORT", extraCertificates: "  v6: { tls_cert: certs/v6.pem, tls_key: certs/v6.key }",
                                extra: "metrics: { listen: 127.0.0.1:0 }"),
            folder: folder)
        defer { gateway.stop() }
        #expect(gateway.count(ofLine: "notice certgate: address=[IPv6]::1/::1:\(gateway.port) listener=https [Gateway] listening") == 1)
        let caFile = folder.url.appendingPathComponent("ca.pem").path

        // curl verifies the IP SAN ::1 against the URL.
        let (status, output) = try await runTool("/usr/bin/curl", ["-sS", "-i", "-g", "--cacert", caFile, "https://[::1]:\(gateway.port)/"])
        #expect(status == 0, "\(output)")
        #expect(output == "HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 8\r\n\r\nserved \n")
        let (named, body) = try await runTool("/usr/bin/curl", [
            "-sS", "--cacert", caFile, "--resolve", "exact.test:\(gateway.port):[::1]", "https://exact.test:\(gateway.port)/",
        ])
        #expect(named == 0, "\(body)")
        #expect(body == "served exact.test\n")
        #expect(try await gateway.waitForLog("metrics endpoint listening"))
        let metrics = try await scrapeMetrics(port: try #require(gateway.metricsPort))
        #expect(metrics.value("certgate_handshakes_total", ["listener": "https", "match": "ip"]) == 1)
        #expect(metrics.value("certgate_handshakes_total", ["listener": "https", "match": "exact"]) == 1)
        #expect(metrics.value("certgate_handshakes_total", ["listener": "https", "match": "default"]) == 0)
    }

    @Test("PROXY v2 for a client on an IPv6 listener: TCP over IPv6 with the client's and the listener's address and port, then ALPN and the served name, byte for byte",
          .enabled(if: ipv6LoopbackAvailable, "this machine has no IPv6 loopback (::1) to bind"))
    func proxyV2OverIPv6() async throws {
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        let upstream = try await EchoUpstream(group: Self.group, expectProxyHeader: .v2)
        let routes = """
              - server_names: ["exact.test"]
                upstream: 127.0.0.1:\(upstream.port)
                proxy_protocol: v2
            """
        let gateway = try await GatewayProcess(config: Self.config(listen: "[::1]:PORT", routes: routes), folder: folder)
        defer { gateway.stop() }
        let probe = TLSProbe(group: Self.group, trustRoots: try Self.trust(), applicationProtocols: ["http/1.1"])
        let connection = try await probe.connect(host: "::1", port: gateway.port, serverName: "exact.test")
        let clientPort = connection.localPort
        #expect(connection.localAddress.ipAddress == "::1")
        let (echoed, _) = try await connection.readToEnd(sending: Array("hello".utf8), halfClose: true)
        #expect(echoed == Array("hello".utf8))

        let header = try #require(upstream.recorded.all.first)
        let loopback: [UInt8] = Array(repeating: 0, count: 15) + [1]
        let port = { (value: Int) -> [UInt8] in [UInt8(value >> 8), UInt8(value & 0xff)] }
        // Signature; version 2 + PROXY; TCP over IPv6; length 60 = 36 address bytes
        // + PP2_TYPE_ALPN (3 + 8) + PP2_TYPE_AUTHORITY (3 + 10).
        let expected: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]
            + [0x21, 0x21, 0x00, 60]
            + loopback + loopback + port(clientPort) + port(gateway.port)
            + [0x01, 0x00, 8] + Array("http/1.1".utf8)
            + [0x02, 0x00, 10] + Array("exact.test".utf8)
        #expect(header == expected)
        await upstream.close()
    }
}
