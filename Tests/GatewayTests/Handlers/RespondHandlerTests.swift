@testable import Gateway
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

/// `RespondHandler`, the built-in responder: the exact bytes it answers with and when it closes.
///
/// Two set-ups: the pipeline `ConnectionRouter` installs (NIO's HTTP/1 server handlers, then
/// the responder; raw request bytes in, response bytes out), and the responder alone behind an
/// `HTTPResponseEncoder` (request parts in, so a request can be left half received).
/// Expected responses are written out by hand (RFC 9112 §4 status line, §5 field lines).
@Suite("RespondHandler", .timeLimit(.minutes(2)))
struct RespondHandlerTests {
    /// [HeadRecorder, HTTPResponseEncoder, ByteToMessageHandler<HTTPRequestDecoder>,
    ///  HTTPServerPipelineHandler, NIOHTTPResponseHeadersValidator, HTTPServerProtocolErrorHandler,
    ///  RespondHandler], connected.
    static func serverPipeline(_ response: RouteConfiguration.Response, serverName: String) throws -> (EmbeddedChannel, HeadRecorder) {
        let channel = EmbeddedChannel(loop: EmbeddedEventLoop())
        let head = HeadRecorder()
        let pipeline = channel.pipeline.syncOperations
        try pipeline.addHandler(head)
        try pipeline.configureHTTPServerPipeline(position: .last, withPipeliningAssistance: true, withErrorHandling: true)
        try pipeline.addHandler(RespondHandler(response: response, serverName: serverName, allocator: channel.allocator))
        try channel.connect(to: SocketAddress(ipAddress: "192.0.2.1", port: 443)).wait()
        return (channel, head)
    }

    /// [HeadRecorder, HTTPResponseEncoder, RespondHandler, TailRecorder], connected.
    static func responderAlone(_ response: RouteConfiguration.Response, serverName: String) throws -> (EmbeddedChannel, HeadRecorder, TailRecorder) {
        let channel = EmbeddedChannel(loop: EmbeddedEventLoop())
        let head = HeadRecorder()
        let tail = TailRecorder()
        try channel.pipeline.syncOperations.addHandlers([
            head, HTTPResponseEncoder(),
            RespondHandler(response: response, serverName: serverName, allocator: channel.allocator), tail,
        ])
        try channel.connect(to: SocketAddress(ipAddress: "192.0.2.1", port: 443)).wait()
        return (channel, head, tail)
    }

    static func post(contentLength: Int) -> HTTPServerRequestPart {
        .head(HTTPRequestHead(version: .http1_1, method: .POST, uri: "/", headers: ["host": "a.test", "content-length": "\(contentLength)"]))
    }

    @Test("a keep-alive HTTP/1.1 GET: status line, default content-type, content-length, body with {sni} replaced; the connection stays open")
    func keepAliveGet() throws {
        let (channel, head) = try Self.serverPipeline(.init(status: 200, headers: [:], body: "hello {sni}"), serverName: "a.test")
        try channel.writeInbound(ByteBuffer(string: "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n"))
        #expect(try outboundText(channel) == "HTTP/1.1 200 OK\r\n"
            + "content-type: text/plain; charset=utf-8\r\n"
            + "content-length: 12\r\n"
            + "\r\n"
            + "hello a.test")
        #expect(channel.isActive)
        #expect(head.closes == [])
    }

    @Test("configured headers in name order with {sni} replaced; a configured Content-Type is kept; a configured content-length is replaced by the body's length, last")
    func configuredHeaders() throws {
        let response = RouteConfiguration.Response(
            status: 404,
            headers: ["x-served": "{sni}", "Content-Type": "text/html", "content-length": "999", "a-first": "1"],
            body: "<p>{sni}</p>")
        let (channel, _) = try Self.serverPipeline(response, serverName: "b.test")
        try channel.writeInbound(ByteBuffer(string: "GET /anything HTTP/1.1\r\nHost: b.test\r\n\r\n"))
        // Sorted by key: "Content-Type" < "a-first" < "content-length" < "x-served" (byte order);
        // content-length is then replaced (removed and appended) with 13 = "<p>b.test</p>".count.
        #expect(try outboundText(channel) == "HTTP/1.1 404 Not Found\r\n"
            + "Content-Type: text/html\r\n"
            + "a-first: 1\r\n"
            + "x-served: b.test\r\n"
            + "content-length: 13\r\n"
            + "\r\n"
            + "<p>b.test</p>")
    }

    @Test("without SNI, {sni} becomes the empty string")
    func noServerName() throws {
        let (channel, _) = try Self.serverPipeline(.init(status: 200, headers: ["x-name": "[{sni}]"], body: "<{sni}>"), serverName: "")
        try channel.writeInbound(ByteBuffer(string: "GET / HTTP/1.1\r\n\r\n"))
        #expect(try outboundText(channel) == "HTTP/1.1 200 OK\r\nx-name: []\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 2\r\n\r\n<>")
    }

    @Test("two pipelined requests in one read get two responses, in order, on the open connection")
    func pipelined() throws {
        let (channel, head) = try Self.serverPipeline(.init(status: 200, headers: [:], body: "ok"), serverName: "a.test")
        try channel.writeInbound(ByteBuffer(string: "GET /1 HTTP/1.1\r\nHost: a.test\r\n\r\nGET /2 HTTP/1.1\r\nHost: a.test\r\n\r\n"))
        let one = "HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 2\r\n\r\nok"
        #expect(try outboundText(channel) == one + one)
        #expect(channel.isActive)
        #expect(head.closes == [])
    }

    @Test("an HTTP/1.0 request (no keep-alive): answered as HTTP/1.1 with connection: close, then the connection is closed")
    func http10Closes() throws {
        let (channel, head) = try Self.serverPipeline(.init(status: 200, headers: [:], body: "ok"), serverName: "a.test")
        try channel.writeInbound(ByteBuffer(string: "GET / HTTP/1.0\r\n\r\n"))
        #expect(try outboundText(channel) == "HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
        #expect(head.closes == [.all])
        #expect(!channel.isActive)
    }

    @Test("an HTTP/1.1 request with Connection: close: answered with connection: close, then the connection is closed")
    func connectionCloseRequest() throws {
        let (channel, head) = try Self.serverPipeline(.init(status: 200, headers: [:], body: "ok"), serverName: "a.test")
        try channel.writeInbound(ByteBuffer(string: "GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"))
        #expect(try outboundText(channel) == "HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
        #expect(head.closes == [.all])
        #expect(!channel.isActive)
    }

    @Test("a HEAD request: the head (content-length of the body it would have) and no body bytes")
    func headRequest() throws {
        let (channel, _) = try Self.serverPipeline(.init(status: 200, headers: [:], body: "hello"), serverName: "a.test")
        try channel.writeInbound(ByteBuffer(string: "HEAD / HTTP/1.1\r\nHost: a.test\r\n\r\n"))
        #expect(try outboundText(channel) == "HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 5\r\n\r\n")
        #expect(channel.isActive)
    }

    @Test("a POST's body is read and ignored; the answer comes after the request's end")
    func postBody() throws {
        let (channel, _, _) = try Self.responderAlone(.init(status: 201, headers: [:], body: "made"), serverName: "a.test")
        try channel.writeInbound(Self.post(contentLength: 3))
        try channel.writeInbound(HTTPServerRequestPart.body(ByteBuffer(string: "abc")))
        #expect(try outboundText(channel) == "")
        try channel.writeInbound(HTTPServerRequestPart.end(nil))
        #expect(try outboundText(channel) == "HTTP/1.1 201 Created\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 4\r\n\r\nmade")
        #expect(channel.isActive)
    }

    @Test("drain while idle: the connection is closed at once, nothing written")
    func drainIdle() throws {
        let (channel, head, tail) = try Self.responderAlone(.init(status: 200, headers: [:], body: "ok"), serverName: "a.test")
        channel.pipeline.syncOperations.fireUserInboundEventTriggered(ConnectionEvent.drain)
        #expect(head.closes == [.all])
        #expect(!channel.isActive)
        #expect(try outboundText(channel) == "")
        #expect(tail.seen == [.inactive])  // the drain event itself is not passed on
    }

    @Test("drain with a request in flight: the request is answered with connection: close, then the connection is closed")
    func drainInFlight() throws {
        let (channel, head, _) = try Self.responderAlone(.init(status: 200, headers: [:], body: "ok"), serverName: "a.test")
        try channel.writeInbound(Self.post(contentLength: 1))
        channel.pipeline.syncOperations.fireUserInboundEventTriggered(ConnectionEvent.drain)
        #expect(channel.isActive)
        #expect(head.closes == [])

        try channel.writeInbound(HTTPServerRequestPart.body(ByteBuffer(string: "x")))
        try channel.writeInbound(HTTPServerRequestPart.end(nil))
        #expect(try outboundText(channel) == "HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
        #expect(head.closes == [.all])
        #expect(!channel.isActive)
    }

    @Test("the client's half-close (inputClosed) while idle: the connection is closed at once")
    func inputClosedIdle() throws {
        let (channel, head, tail) = try Self.responderAlone(.init(status: 200, headers: [:], body: "ok"), serverName: "a.test")
        // A first request answered on a kept-alive connection, then the client stops sending.
        try channel.writeInbound(HTTPServerRequestPart.head(HTTPRequestHead(version: .http1_1, method: .GET, uri: "/")))
        try channel.writeInbound(HTTPServerRequestPart.end(nil))
        #expect(try outboundText(channel) == "HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 2\r\n\r\nok")
        channel.pipeline.syncOperations.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        #expect(head.closes == [.all])
        #expect(!channel.isActive)
        #expect(tail.seen == [.inactive])
    }

    @Test("the client's half-close with a request in flight: answered with connection: close, then closed")
    func inputClosedInFlight() throws {
        let (channel, head, _) = try Self.responderAlone(.init(status: 200, headers: [:], body: "ok"), serverName: "a.test")
        try channel.writeInbound(Self.post(contentLength: 0))
        channel.pipeline.syncOperations.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        #expect(channel.isActive)
        try channel.writeInbound(HTTPServerRequestPart.end(nil))
        #expect(try outboundText(channel) == "HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
        #expect(head.closes == [.all])
        #expect(!channel.isActive)
    }

    @Test("user events other than drain and inputClosed are passed on untouched")
    func otherEventsPassOn() throws {
        let (channel, head, tail) = try Self.responderAlone(.init(status: 200, headers: [:], body: "ok"), serverName: "a.test")
        channel.pipeline.syncOperations.fireUserInboundEventTriggered(UnrelatedEvent())
        #expect(tail.seen == [.other("UnrelatedEvent()")])
        #expect(channel.isActive)
        #expect(head.closes == [])
    }

    /// The configuration refuses a body with 204 or 304; the handler never sends one anyway
    /// (the client would read it as the start of the next response).
    @Test("a 204 response carries no body bytes even when the route configures a body")
    func noContentHasNoBody() throws {
        let (channel, _) = try Self.serverPipeline(.init(status: 204, headers: [:], body: "gone"), serverName: "a.test")
        try channel.writeInbound(ByteBuffer(string: "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n"))
        let written = try outboundText(channel)
        #expect(written == "HTTP/1.1 204 No Content\r\ncontent-type: text/plain; charset=utf-8\r\n\r\n")
    }

    @Test("a 304 ends at its head: no body bytes and no content-length, and the next request on the connection is answered")
    func notModifiedHasNoBody() throws {
        let (channel, _) = try Self.serverPipeline(.init(status: 304, headers: [:], body: "same"), serverName: "a.test")
        try channel.writeInbound(ByteBuffer(string: "GET / HTTP/1.1\r\nHost: a.test\r\n\r\nGET / HTTP/1.1\r\nHost: a.test\r\n\r\n"))
        let head = "HTTP/1.1 304 Not Modified\r\ncontent-type: text/plain; charset=utf-8\r\n\r\n"
        #expect(try outboundText(channel) == head + head)
    }
}
