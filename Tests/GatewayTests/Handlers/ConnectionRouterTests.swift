@testable import Gateway
import CertificateKit
import Logging
import NIOCore
import NIOSSL
import NIOEmbedded
import NIOHTTP1
import NIOPosix
import NIOTLS
import Testing

/// `ConnectionRouter` (and `ConnectionErrorHandler`). On an `EmbeddedChannel` the pipeline is
/// [HeadRecorder, HandshakeFactsPublisher, ConnectionRouter] — the gateway's, without NIOSSL
/// and the handshake timeout: the test fires NIOSSL's `TLSUserEvent.handshakeCompleted` itself.
/// The upstream route needs real sockets (see `UpstreamConnectorTests`).
@Suite("ConnectionRouter", .timeLimit(.minutes(2)))
struct ConnectionRouterTests {
    static let remote = try! SocketAddress(ipAddress: "198.51.100.7", port: 50_123)
    static let local = try! SocketAddress(ipAddress: "192.0.2.1", port: 443)

    static func respond(_ names: [String], body: String) -> RouteConfiguration {
        RouteConfiguration(serverNames: names, action: .respond(.init(status: 200, headers: [:], body: body)))
    }

    static let routes = RouteTable([
        respond(["a.test"], body: "exact {sni}"),
        respond(["*.apps.test"], body: "wildcard {sni}"),
        respond(["*"], body: "any [{sni}]"),
    ])

    /// The response bytes for `body` as the responder writes them (content-type, content-length).
    static func ok(_ body: String) -> String {
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: \(body.utf8.count)\r\n\r\n\(body)"
    }

    final class Connection {
        let channel: EmbeddedChannel
        let head = HeadRecorder()
        let facts: HandshakeFacts
        let logs = LogStore()

        /// `sni` is what the client sent; the router reads the normalised `serverName`.
        init(sni: String?, routes: RouteTable = ConnectionRouterTests.routes, tail: TailRecorder? = nil) throws {
            channel = EmbeddedChannel(loop: EmbeddedEventLoop())
            facts = HandshakeFacts(listener: "main", localAddress: ConnectionRouterTests.local, remoteAddress: ConnectionRouterTests.remote)
            facts.requestedName = sni
            facts.serverName = sni.flatMap(ServerName.normalize)
            let publisher = HandshakeFactsPublisher(facts: facts, slot: ThreadSpecificVariable())
            let router = ConnectionRouter(
                facts: facts, publisher: publisher, routes: routes,
                upstreamLog: UpstreamFailureLog(logger: logs.makeLogger()), logger: logs.makeLogger())
            try channel.pipeline.syncOperations.addHandlers([head, publisher, router])
            if let tail { try channel.pipeline.syncOperations.addHandler(tail) }
            try channel.connect(to: ConnectionRouterTests.local).wait()
        }

        func handshakeCompleted(alpn: String?) {
            channel.pipeline.syncOperations.fireUserInboundEventTriggered(TLSUserEvent.handshakeCompleted(negotiatedProtocol: alpn))
        }

        var types: [String] { get throws { try handlerTypes(of: channel.pipeline) } }

        /// The metadata every router log line carries.
        var baseMetadata: [String: String] {
            ["listener": "main", "client": "\(ConnectionRouterTests.remote)", "sni": facts.requestedName ?? "-"]
        }
    }

    /// A client that left during the handshake (as NIOSSL reports it).
    static let handshakeFailure = NIOSSLError.uncleanShutdown

    /// What `configureHTTPServerPipeline(withPipeliningAssistance: true, withErrorHandling: true)`
    /// adds, in order (HTTPRequestDecoder is a typealias, so its type prints in full).
    static let httpServerHandlers = [
        "HTTPResponseEncoder", "\(ByteToMessageHandler<HTTPRequestDecoder>.self)", "HTTPServerPipelineHandler",
        "NIOHTTPResponseHeadersValidator", "HTTPServerProtocolErrorHandler",
    ]

    @Test("respond route: after the handshake the facts publisher is removed and the router waits for bytes; nothing written, nothing closed")
    func respondWaitsForBytes() throws {
        let connection = try Connection(sni: "a.test")
        #expect(try connection.types == ["HeadRecorder", "HandshakeFactsPublisher", "ConnectionRouter"])
        connection.handshakeCompleted(alpn: nil)
        #expect(try connection.types == ["HeadRecorder", "ConnectionRouter"])
        #expect(try outboundText(connection.channel) == "")
        #expect(connection.head.closes == [])
        #expect(connection.channel.isActive)
    }

    @Test("respond route: the first bytes install NIO's HTTP/1 server handlers, RespondHandler and ConnectionErrorHandler, the router steps aside, and the request is answered")
    func respondInstallsAndAnswers() throws {
        let connection = try Connection(sni: "a.test")
        connection.handshakeCompleted(alpn: nil)
        try connection.channel.writeInbound(ByteBuffer(string: "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n"))
        let types = try connection.types
        #expect(types == ["HeadRecorder"] + Self.httpServerHandlers + ["RespondHandler", "ConnectionErrorHandler"])
        #expect(try outboundText(connection.channel) == Self.ok("exact a.test"))
        #expect(connection.channel.isActive)
        #expect(connection.logs.all == [])
    }

    @Test("a request split over two reads is answered once, after the second")
    func requestInTwoReads() throws {
        let connection = try Connection(sni: "a.test")
        connection.handshakeCompleted(alpn: nil)
        try connection.channel.writeInbound(ByteBuffer(string: "GET / HTTP/1.1\r\nHo"))
        #expect(try outboundText(connection.channel) == "")
        try connection.channel.writeInbound(ByteBuffer(string: "st: a.test\r\n\r\n"))
        #expect(try outboundText(connection.channel) == Self.ok("exact a.test"))
    }

    @Test("route choice by served name: exact, then one-level wildcard, then '*'; '*' also takes a client without SNI (and {sni} is then empty)",
          arguments: [
              ("a.test", "exact a.test"),
              ("A.Test.", "exact a.test"),
              ("api.apps.test", "wildcard api.apps.test"),
              ("deep.api.apps.test", "any [deep.api.apps.test]"),
              ("b.test", "any [b.test]"),
              (nil, "any []"),
          ] as [(String?, String)])
    func routeChoice(sni: String?, body: String) throws {
        let connection = try Connection(sni: sni)
        connection.handshakeCompleted(alpn: nil)
        try connection.channel.writeInbound(ByteBuffer(string: "GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
        #expect(try outboundText(connection.channel) == Self.ok(body))
    }

    @Test("respond route with ALPN http/1.1 is answered like one without ALPN")
    func respondHTTP11() throws {
        let connection = try Connection(sni: "a.test")
        connection.handshakeCompleted(alpn: "http/1.1")
        #expect(try connection.types == ["HeadRecorder", "ConnectionRouter"])
        try connection.channel.writeInbound(ByteBuffer(string: "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n"))
        #expect(try outboundText(connection.channel) == Self.ok("exact a.test"))
    }

    @Test("respond route with ALPN h2: closed at once, logged at info with the ALPN")
    func respondRefusesH2() throws {
        let connection = try Connection(sni: "a.test")
        connection.handshakeCompleted(alpn: "h2")
        #expect(connection.head.closes == [.all])
        #expect(!connection.channel.isActive)
        #expect(try outboundText(connection.channel) == "")
        #expect(connection.logs.all == [LogEntry(
            level: .info, message: "the built-in responder speaks HTTP/1.1 only; closing",
            metadata: connection.baseMetadata.merging(["alpn": "h2"]) { $1 })])
    }

    @Test("no route for the served name: closed at once, logged at info")
    func noRoute() throws {
        let connection = try Connection(sni: "other.test", routes: RouteTable([Self.respond(["a.test"], body: "x")]))
        connection.facts.entryName = "fallback"
        connection.facts.matchKind = .exact
        connection.handshakeCompleted(alpn: nil)
        #expect(connection.head.closes == [.all])
        #expect(!connection.channel.isActive)
        #expect(connection.logs.all == [LogEntry(
            level: .info, message: "no route for the served name; closing",
            metadata: connection.baseMetadata.merging(["alpn": "-", "entry": "fallback", "match": CertificateMatch.Kind.exact.rawValue]) { $1 })])
    }

    @Test("the client half-closes right after the handshake, before asking anything: the router closes the connection")
    func inputClosedAfterHandshake() throws {
        let tail = TailRecorder()
        let connection = try Connection(sni: "a.test", tail: tail)
        connection.handshakeCompleted(alpn: nil)
        connection.channel.pipeline.syncOperations.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        #expect(connection.head.closes == [.all])
        // The router consumes handshakeCompleted and this inputClosed: only the close reaches the tail.
        #expect(tail.seen == [.inactive])
    }

    @Test("before the handshake: bytes, inputClosed and other events pass through the router untouched")
    func passThroughBeforeHandshake() throws {
        let tail = TailRecorder()
        let connection = try Connection(sni: "a.test", tail: tail)
        try connection.channel.writeInbound(ByteBuffer(string: "ciphertext"))
        #expect(try connection.channel.readInbound(as: ByteBuffer.self) == ByteBuffer(string: "ciphertext"))
        connection.channel.pipeline.syncOperations.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        connection.channel.pipeline.syncOperations.fireUserInboundEventTriggered(UnrelatedEvent())
        #expect(tail.seen == [.inputClosed, .other("UnrelatedEvent()")])
        #expect(connection.head.closes == [])
        #expect(try connection.types == ["HeadRecorder", "HandshakeFactsPublisher", "ConnectionRouter", "TailRecorder"])
    }

    @Test("a refused handshake: closed, logged once at info as 'TLS handshake failed' with the refusal as reason, though NIOSSL reports it twice")
    func refusedHandshake() throws {
        let connection = try Connection(sni: "X.Test")
        connection.facts.refusal = "no certificate for 'x.test'"
        connection.channel.pipeline.syncOperations.fireErrorCaught(Self.handshakeFailure)
        connection.channel.pipeline.syncOperations.fireErrorCaught(Self.handshakeFailure)
        #expect(connection.head.closes == [.all])
        #expect(!connection.channel.isActive)
        #expect(connection.logs.all == [LogEntry(
            level: .info, message: "TLS handshake failed",
            metadata: connection.baseMetadata.merging(["reason": "no certificate for 'x.test'"]) { $1 })])
        #expect(connection.baseMetadata["sni"] == "X.Test")  // the SNI as sent, not normalised
    }

    @Test("a failed handshake without a refusal: the reason in certgate's words, not NIOSSL's text")
    func failedHandshake() throws {
        let connection = try Connection(sni: nil)
        connection.channel.pipeline.syncOperations.fireErrorCaught(Self.handshakeFailure)
        #expect(connection.head.closes == [.all])
        #expect(connection.logs.all == [LogEntry(
            level: .info, message: "TLS handshake failed",
            metadata: ["listener": "main", "client": "\(Self.remote)", "sni": "-", "reason": "the client closed the connection during the handshake"])])
    }

    @Test("an error after the handshake: closed, logged at debug only")
    func errorAfterHandshake() throws {
        let connection = try Connection(sni: "a.test")
        connection.handshakeCompleted(alpn: nil)
        connection.channel.pipeline.syncOperations.fireErrorCaught(Self.handshakeFailure)
        #expect(connection.head.closes == [.all])
        #expect(connection.logs.all == [LogEntry(
            level: .debug, message: "connection error; closing",
            metadata: connection.baseMetadata.merging(["reason": "the client closed the connection during the handshake"]) { $1 })])
    }

    @Test("upstream route: the router hands over to UpstreamConnector (+ ConnectionErrorHandler) at once; once joined the pipeline is [GlueHandler, ConnectionErrorHandler] and the upstream got the v2 header with the served name and ALPN")
    func upstreamRoute() async throws {
        try await withEventLoopGroup { group in
            let (upstream, upstreamConnections) = try await LoopbackListener.recording(group: group)
            let routes = RouteTable([RouteConfiguration(
                serverNames: ["a.test"],
                action: .upstream(HostAndPort(host: "127.0.0.1", port: upstream.port), proxyProtocol: .v2, connectTimeout: RouteConfiguration.defaultConnectTimeout))])
            let atHandshake = Collected<[String]>()
            let logs = LogStore()
            let gateway = try await LoopbackListener(group: group) { channel in
                let facts = HandshakeFacts(listener: "main", localAddress: channel.localAddress, remoteAddress: channel.remoteAddress)
                facts.requestedName = "a.test"
                facts.serverName = ServerName.normalize("a.test")
                let publisher = HandshakeFactsPublisher(facts: facts, slot: ThreadSpecificVariable())
                let pipeline = channel.pipeline.syncOperations
                try pipeline.addHandler(publisher)
                try pipeline.addHandler(ConnectionRouter(
                    facts: facts, publisher: publisher, routes: routes,
                    upstreamLog: UpstreamFailureLog(logger: logs.makeLogger()), logger: logs.makeLogger()))
                pipeline.fireUserInboundEventTriggered(TLSUserEvent.handshakeCompleted(negotiatedProtocol: "h2"))
                atHandshake.append(try handlerTypes(of: channel.pipeline))
            }
            let (client, _) = try await connectRecordingClient(group: group, port: gateway.port)
            let clientPort = try #require(client.localAddress?.port)

            // proxy-protocol.txt §2.2, TCP over IPv4; length 12 + ALPN TLV 5 + authority TLV 9 = 26.
            let expected: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, 0x21, 0x11, 0x00, 26]
                + [127, 0, 0, 1, 127, 0, 0, 1, UInt8(clientPort >> 8), UInt8(clientPort & 0xFF), UInt8(gateway.port >> 8), UInt8(gateway.port & 0xFF)]
                + [0x01, 0x00, 0x02] + Array("h2".utf8)
                + [0x02, 0x00, 0x06] + Array("a.test".utf8)
            try await eventually { upstreamConnections.all.first?.bytes.count ?? 0 >= expected.count }
            #expect(upstreamConnections.all.first?.bytes == expected)
            #expect(atHandshake.all == [["UpstreamConnector", "ConnectionErrorHandler"]])

            let child = try #require(gateway.accepted.all.first)
            try await eventually { try await child.eventLoop.submit { try handlerTypes(of: child.pipeline) }.get() == ["GlueHandler", "ConnectionErrorHandler"] }
            #expect(try await child.eventLoop.submit { try handlerTypes(of: child.pipeline) }.get() == ["GlueHandler", "ConnectionErrorHandler"])
            #expect(logs.all == [])
        }
    }
}

@Suite("ConnectionErrorHandler", .timeLimit(.minutes(2)))
struct ConnectionErrorHandlerTests {
    /// A connection reset, as NIO reports it.
    static let reset = IOError(errnoCode: 104, reason: "read")

    @Test("any error closes the connection and is logged at debug with its reason in the system's words")
    func closesOnError() throws {
        let channel = EmbeddedChannel(loop: EmbeddedEventLoop())
        let head = HeadRecorder()
        let logs = LogStore()
        try channel.pipeline.syncOperations.addHandlers([head, ConnectionErrorHandler(logger: logs.makeLogger())])
        try channel.connect(to: SocketAddress(ipAddress: "192.0.2.1", port: 443)).wait()
        channel.pipeline.syncOperations.fireErrorCaught(Self.reset)
        #expect(head.closes == [.all])
        #expect(!channel.isActive)
        #expect(logs.all == [LogEntry(level: .debug, message: "connection error; closing", metadata: ["reason": "Connection reset by peer (errno 104)"])])
        #expect(throws: Never.self) { try channel.throwIfErrorCaught() }  // not passed on
    }
}
