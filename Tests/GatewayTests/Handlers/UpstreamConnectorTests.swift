@testable import Gateway
import Logging
import NIOCore
import NIOPosix
import Testing

/// `UpstreamConnector` and `UpstreamFailureLog`.
///
/// The connector opens its upstream with `ClientBootstrap(group: context.eventLoop)`, which
/// stops the process (preconditionFailure) on an `EmbeddedEventLoop`; so these tests run it
/// on real loopback sockets: client → gateway listener (connector on the accepted channel) →
/// upstream listener. "Bytes that arrived while connecting" are fired into the accepted
/// channel's pipeline right after the connector is added, as NIOSSL does with application data
/// that comes in the same read as the end of the handshake.
@Suite("UpstreamConnector", .timeLimit(.minutes(2)))
struct UpstreamConnectorTests {
    static func target(port: Int, proxyProtocol: RouteConfiguration.ProxyProtocolVersion?, serverName: String? = nil, alpn: String? = nil)
        -> UpstreamConnector.Target {
        .init(
            address: HostAndPort(host: "127.0.0.1", port: port), proxyProtocol: proxyProtocol, connectTimeout: .seconds(5),
            serverName: serverName, negotiatedProtocol: alpn)
    }

    /// A gateway listener whose accepted connections get an `UpstreamConnector` for `target`,
    /// then `early` as if read before the upstream answered (and the client's half-close if asked).
    static func gateway(
        group: any EventLoopGroup, target: UpstreamConnector.Target, log: UpstreamFailureLog,
        early: [String] = [], earlyHalfClose: Bool = false, closeAtOnce: Bool = false
    ) async throws -> LoopbackListener {
        try await LoopbackListener(group: group) { channel in
            let pipeline = channel.pipeline.syncOperations
            try pipeline.addHandler(UpstreamConnector(target: target, upstreamLog: log))
            for text in early { pipeline.fireChannelRead(NIOAny(channel.allocator.buffer(string: text))) }
            if earlyHalfClose { pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed) }
            if closeAtOnce { channel.eventLoop.execute { channel.close(promise: nil) } }
        }
    }

    static func bigEndian(_ port: Int) -> [UInt8] { [UInt8(port >> 8), UInt8(port & 0xFF)] }

    @Test("PROXY v1 header first, then the bytes held while connecting, then later bytes, in order; the upstream's answer reaches the client")
    func v1HeaderHeldBytesThenStream() async throws {
        try await withEventLoopGroup { group in
            let store = LogStore()
            let (upstream, upstreamConnections) = try await LoopbackListener.recording(group: group)
            let gateway = try await Self.gateway(
                group: group, target: Self.target(port: upstream.port, proxyProtocol: .v1),
                log: UpstreamFailureLog(logger: store.makeLogger()), early: ["early-1,", "early-2,"])
            let (client, fromUpstream) = try await connectRecordingClient(group: group, port: gateway.port)
            let clientPort = try #require(client.localAddress?.port)
            try await client.writeAndFlush(client.allocator.buffer(string: "late")).get()

            // PROXY TCP4 <client address> <address the client connected to> <client port> <gateway port>\r\n (spec §2.1)
            let expected = "PROXY TCP4 127.0.0.1 127.0.0.1 \(clientPort) \(gateway.port)\r\n" + "early-1,early-2,late"
            try await eventually { upstreamConnections.all.first?.bytes.count ?? 0 >= expected.utf8.count }
            #expect(upstreamConnections.all.count == 1)
            #expect(upstreamConnections.all.first?.text == expected)

            let upstreamSide = try #require(upstream.accepted.all.first)
            try await upstreamSide.writeAndFlush(upstreamSide.allocator.buffer(string: "pong")).get()
            try await eventually { fromUpstream.text == "pong" }
            #expect(fromUpstream.text == "pong")
            #expect(store.all == [])  // a success after no failure logs nothing
        }
    }

    @Test("PROXY v2 header: signature, 0x21, 0x11, length 26, addresses, ports, then ALPN and authority TLVs")
    func v2Header() async throws {
        try await withEventLoopGroup { group in
            let (upstream, upstreamConnections) = try await LoopbackListener.recording(group: group)
            let gateway = try await Self.gateway(
                group: group, target: Self.target(port: upstream.port, proxyProtocol: .v2, serverName: "a.test", alpn: "h2"),
                log: UpstreamFailureLog(logger: LogStore().makeLogger()))
            let (client, _) = try await connectRecordingClient(group: group, port: gateway.port)
            let clientPort = try #require(client.localAddress?.port)
            try await client.writeAndFlush(client.allocator.buffer(string: "hi")).get()

            // proxy-protocol.txt §2.2: 12-byte signature, ver/cmd 0x21 (v2, PROXY), fam 0x11 (TCP/IPv4),
            // length = 12 address bytes + PP2_TYPE_ALPN (1+2+2) + PP2_TYPE_AUTHORITY (1+2+6) = 26.
            let expected: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, 0x21, 0x11, 0x00, 26]
                + [127, 0, 0, 1, 127, 0, 0, 1] + Self.bigEndian(clientPort) + Self.bigEndian(gateway.port)
                + [0x01, 0x00, 0x02, 0x68, 0x32]  // ALPN "h2"
                + [0x02, 0x00, 0x06, 0x61, 0x2E, 0x74, 0x65, 0x73, 0x74]  // authority "a.test"
                + [0x68, 0x69]  // then the client's "hi"
            try await eventually { upstreamConnections.all.first?.bytes.count ?? 0 >= expected.count }
            #expect(upstreamConnections.all.first?.bytes == expected)
        }
    }

    @Test("no PROXY protocol configured: the upstream receives the client's bytes alone")
    func noHeader() async throws {
        try await withEventLoopGroup { group in
            let (upstream, upstreamConnections) = try await LoopbackListener.recording(group: group)
            let gateway = try await Self.gateway(
                group: group, target: Self.target(port: upstream.port, proxyProtocol: nil),
                log: UpstreamFailureLog(logger: LogStore().makeLogger()), early: ["held "])
            let (client, _) = try await connectRecordingClient(group: group, port: gateway.port)
            try await client.writeAndFlush(client.allocator.buffer(string: "then streamed")).get()
            try await eventually { upstreamConnections.all.first?.text == "held then streamed" }
            #expect(upstreamConnections.all.first?.text == "held then streamed")
        }
    }

    @Test("a client half-close that arrives while connecting is handed over after the held bytes; the upstream can still answer")
    func earlyHalfClose() async throws {
        try await withEventLoopGroup { group in
            let (upstream, upstreamConnections) = try await LoopbackListener.recording(group: group)
            let gateway = try await Self.gateway(
                group: group, target: Self.target(port: upstream.port, proxyProtocol: nil),
                log: UpstreamFailureLog(logger: LogStore().makeLogger()), early: ["last words"], earlyHalfClose: true)
            let (_, fromUpstream) = try await connectRecordingClient(group: group, port: gateway.port)

            try await eventually { upstreamConnections.all.first?.inputClosed == true }
            let seen = try #require(upstreamConnections.all.first)
            #expect(seen.text == "last words")
            #expect(seen.inputClosed)
            #expect(!seen.inactive)

            let upstreamSide = try #require(upstream.accepted.all.first)
            try await upstreamSide.writeAndFlush(upstreamSide.allocator.buffer(string: "reply")).get()
            try await eventually { fromUpstream.text == "reply" }
            #expect(fromUpstream.text == "reply")
            #expect(!fromUpstream.inactive)
        }
    }

    @Test("the client's half-close after the join travels to the upstream; the upstream's full close then closes the client")
    func halfCloseThenClose() async throws {
        try await withEventLoopGroup { group in
            let (upstream, upstreamConnections) = try await LoopbackListener.recording(group: group)
            let gateway = try await Self.gateway(
                group: group, target: Self.target(port: upstream.port, proxyProtocol: nil),
                log: UpstreamFailureLog(logger: LogStore().makeLogger()))
            let (client, fromUpstream) = try await connectRecordingClient(group: group, port: gateway.port)
            try await client.writeAndFlush(client.allocator.buffer(string: "request")).get()
            // Each step checked, so that a slow or stuck one names itself.
            #expect(try await eventually { upstreamConnections.all.first?.text == "request" }, "upstream connections: \(upstreamConnections.all.count)")
            try await client.close(mode: .output).get()

            #expect(try await eventually { upstreamConnections.all.first?.inputClosed == true })
            #expect(!fromUpstream.inactive)
            #expect(upstream.accepted.all.count == 1 && gateway.accepted.all.count == 1, "\(upstream.accepted.all.count) upstream, \(gateway.accepted.all.count) gateway connections")

            let upstreamSide = try #require(upstream.accepted.all.first)
            try await upstreamSide.writeAndFlush(upstreamSide.allocator.buffer(string: "response")).get()
            try await upstreamSide.close().get()
            try await eventually { fromUpstream.inactive }
            #expect(fromUpstream.text == "response")
            #expect(fromUpstream.inactive, "gateway's client side active: \(String(describing: gateway.accepted.all.first?.isActive)), client active: \(client.isActive)")
        }
    }

    /// The header is made once the upstream has connected, from the client channel's addresses;
    /// a closed channel has none, so it is the short UNKNOWN form (spec §2.1: "only when it is
    /// not possible to correctly fill the PROXY line").
    @Test("a client gone before the upstream answers: the new upstream connection gets only 'PROXY UNKNOWN\\r\\n', then is ended")
    func clientGoneWhileConnecting() async throws {
        try await withEventLoopGroup { group in
            let (upstream, upstreamConnections) = try await LoopbackListener.recording(group: group)
            let gateway = try await Self.gateway(
                group: group, target: Self.target(port: upstream.port, proxyProtocol: .v1),
                log: UpstreamFailureLog(logger: LogStore().makeLogger()), closeAtOnce: true)
            let (_, fromGateway) = try await connectRecordingClient(group: group, port: gateway.port)

            // The gateway ends its upstream connection: the upstream reads the header, then end of stream.
            try await eventually { upstreamConnections.all.first?.inputClosed == true }
            #expect(upstreamConnections.all.first?.text == "PROXY UNKNOWN\r\n")
            #expect(upstreamConnections.all.first?.inputClosed == true)
            try await eventually { fromGateway.inactive }
            #expect(fromGateway.bytes == [])
        }
    }

    @Test("an unreachable upstream: each client is closed without a byte; one warning for any number of clients, one notice when it answers again")
    func failureClosesAndLogsOnce() async throws {
        try await withEventLoopGroup { group in
            let store = LogStore()
            let log = UpstreamFailureLog(logger: store.makeLogger())
            // Bound but not listening: refused, and no other test can take the port.
            let reserved = try refusedPort()
            let port = reserved.port
            let gateway = try await Self.gateway(group: group, target: Self.target(port: port, proxyProtocol: .v1), log: log)

            for _ in 0..<2 {
                let (_, fromGateway) = try await connectRecordingClient(group: group, port: gateway.port)
                try await eventually { fromGateway.inactive }
                #expect(fromGateway.inactive)
                #expect(fromGateway.bytes == [])
            }
            let warnings = store.all
            #expect(warnings.map(\.level) == [.warning])
            #expect(warnings.map(\.message) == ["upstream unreachable; client connections to it are closed (logged once until it answers again)"])
            #expect(warnings.first?.metadata["upstream"] == "127.0.0.1:\(port)")
            #expect(warnings.first.map { Set($0.metadata.keys) } == ["upstream", "reason"])
            #expect(warnings.first?.metadata["reason"] == "Connection refused (errno 111)")

            // The upstream comes up on the same port: the next client gets through, and that is logged once.
            let (upstream, upstreamConnections) = try await LoopbackListener.recording(group: group, reserved: reserved)
            for _ in 0..<2 {
                let (client, _) = try await connectRecordingClient(group: group, port: gateway.port)
                try await client.writeAndFlush(client.allocator.buffer(string: "x")).get()
            }
            try await eventually { upstreamConnections.all.count == 2 && upstreamConnections.all.allSatisfy { $0.text.hasSuffix("x") } }
            #expect(store.all.dropFirst() == [LogEntry(level: .notice, message: "upstream answers again", metadata: ["upstream": "127.0.0.1:\(port)"])])
            await upstream.close()
        }
    }
}

@Suite("UpstreamFailureLog", .timeLimit(.minutes(2)))
struct UpstreamFailureLogTests {
    /// What NIO reports for a refused connect; logged in the system's words, not NIO's text.
    static func refused() -> IOError { IOError(errnoCode: 111, reason: "connect") }

    @Test("one warning per upstream when it starts failing, one notice when it answers again, nothing otherwise")
    func transitionsOnly() {
        let store = LogStore()
        let log = UpstreamFailureLog(logger: store.makeLogger())
        let a = HostAndPort(host: "10.0.0.1", port: 8_443)
        let b = HostAndPort(host: "::1", port: 9_000)

        log.recordSuccess(a)  // never failed: nothing
        log.recordFailure(a, error: Self.refused())
        log.recordFailure(a, error: Self.refused())
        log.recordFailure(b, error: Self.refused())
        log.recordSuccess(a)
        log.recordSuccess(a)
        log.recordFailure(a, error: Self.refused())

        let warning = "upstream unreachable; client connections to it are closed (logged once until it answers again)"
        #expect(store.all == [
            LogEntry(level: .warning, message: warning, metadata: ["upstream": "10.0.0.1:8443", "reason": "Connection refused (errno 111)"]),
            LogEntry(level: .warning, message: warning, metadata: ["upstream": "[::1]:9000", "reason": "Connection refused (errno 111)"]),
            LogEntry(level: .notice, message: "upstream answers again", metadata: ["upstream": "10.0.0.1:8443"]),
            LogEntry(level: .warning, message: warning, metadata: ["upstream": "10.0.0.1:8443", "reason": "Connection refused (errno 111)"]),
        ])
    }
}
