import CertificateTestSupport
import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Upstream connections through the real binary: `connect_timeout` against an upstream
/// that never answers, and the log lines when it fails and when it answers again.
@Suite("Upstreams (the real binary)", .serialized, .timeLimit(.minutes(3)))
struct UpstreamInteropTests {
    static let group = MultiThreadedEventLoopGroup.singleton

    @Test("connect_timeout 400ms: a client routed to an upstream that never answers its SYN is closed after 400 ms (not the 5 s default), logged once; once the upstream accepts, \"upstream answers again\" is logged once and bytes flow")
    func connectTimeoutAndRecovery() async throws {
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        let upstream = try await BacklogUpstream(group: Self.group)
        try #require(try await upstream.fill(), "the kernel answered a connect to a full accept queue; no black hole on this machine")
        let routes = """
              - server_names: ["exact.test"]
                upstream: 127.0.0.1:\(upstream.port)
                connect_timeout: 400ms
            """
        let gateway = try await GatewayProcess(config: GatewayInteropTests.config(routes: routes), folder: folder)
        defer { gateway.stop() }
        let probe = TLSProbe(group: Self.group, trustRoots: [try NIOSSLCertificate(bytes: GatewayInteropTests.authority.parsed.der, format: .der)])

        for attempt in 1...2 {
            // Timed from before the TCP connect: the gateway starts its own clock later, once its
            // side of the handshake is done (which may be a little before this client's side).
            let start = ContinuousClock.now
            let connection = try await probe.connect(port: gateway.port, serverName: "exact.test")
            let (received, closed) = try await connection.readToEnd(sending: Array("ping".utf8), timeout: .seconds(10))
            let elapsed = ContinuousClock.now - start
            #expect(received.isEmpty)
            #expect(closed)
            #expect(elapsed >= .milliseconds(400), "attempt \(attempt): closed after \(elapsed)")
            // That the 400 ms setting (not the 5 s default) cut it is the gateway's own log reason
            // below, "no answer within 400 ms": a wall-clock bound here failed under a loaded
            // full run in CI (closed 6.3 s after this client's handshake, the machine saturated).
        }
        let unreachable = "warning certgate: reason=no answer within 400 ms upstream=127.0.0.1:\(upstream.port) [Gateway] "
            + "upstream unreachable; client connections to it are closed (logged once until it answers again)"
        #expect(try await gateway.waitForLine(unreachable), "\(gateway.logText)")
        #expect(gateway.logText.components(separatedBy: "upstream unreachable").count - 1 == 1)

        // The upstream accepts again: the next client gets through.
        try await upstream.open()
        let recovered = try await probe.connect(port: gateway.port, serverName: "exact.test")
        let (echoed, _) = try await recovered.readToEnd(sending: Array("ping".utf8), halfClose: true)
        #expect(echoed == Array("ping".utf8))
        let answers = "notice certgate: upstream=127.0.0.1:\(upstream.port) [Gateway] upstream answers again"
        #expect(try await gateway.waitForLine(answers), "\(gateway.logText)")
        // Once, not per connection: a further client, then the count.
        let further = try await probe.connect(port: gateway.port, serverName: "exact.test")
        #expect(try await further.readToEnd(sending: Array("pong".utf8), halfClose: true).received == Array("pong".utf8))
        #expect(gateway.count(ofLine: answers) == 1)
        await upstream.close()
    }
}
