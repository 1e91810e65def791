import NIOCore
import NIOHTTP1

/// The built-in responder: answers every HTTP/1.1 request on the connection with the
/// route's configured response (`{sni}` replaced), keeping the connection alive when the
/// client asks for it. While the gateway drains, it answers the request in flight with
/// `Connection: close` and closes idle connections at once.
final class RespondHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let head: HTTPResponseHead
    private var body: ByteBuffer
    private var keepAlive = true
    private var requestInFlight = false
    private var draining = false

    init(response: RouteConfiguration.Response, serverName: String, allocator: ByteBufferAllocator) {
        let text = response.body.replacingOccurrences(of: "{sni}", with: serverName)
        body = allocator.buffer(string: text)
        var headers = HTTPHeaders()
        for (name, value) in response.headers.sorted(by: { $0.key < $1.key }) {
            headers.add(name: name, value: value.replacingOccurrences(of: "{sni}", with: serverName))
        }
        if !headers.contains(name: "content-type") {
            headers.add(name: "content-type", value: "text/plain; charset=utf-8")
        }
        if Self.hasNoContent(status: response.status) {
            // No body and no length: the next bytes on the connection are the next response.
            body.clear()
        } else {
            headers.replaceOrAdd(name: "content-length", value: String(body.readableBytes))
        }
        head = HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: response.status), headers: headers)
    }

    /// 204 and 304 responses end at their head (RFC 9110 §15.3.5, §15.4.5).
    static func hasNoContent(status: Int) -> Bool {
        status == 204 || status == 304
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let request):
            requestInFlight = true
            keepAlive = request.isKeepAlive
        case .body:
            break
        case .end:
            requestInFlight = false
            var head = self.head
            head.version = .http1_1
            let close = !keepAlive || draining
            if close { head.headers.replaceOrAdd(name: "connection", value: "close") }
            context.write(wrapOutboundOut(.head(head)), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
            let written = context.writeAndFlushPromise(wrapOutboundOut(.end(nil)))
            if close {
                let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
                written.whenComplete { _ in loopBound.value.close(promise: nil) }
            }
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        switch event {
        case ConnectionEvent.drain, ChannelEvent.inputClosed:
            // Draining, or the client finished sending (TLS close_notify): answer what is
            // in flight, then close; an idle connection closes now.
            draining = true
            if !requestInFlight { context.close(promise: nil) }
        default:
            context.fireUserInboundEventTriggered(event)
        }
    }
}

private extension ChannelHandlerContext {
    func writeAndFlushPromise(_ data: NIOAny) -> EventLoopFuture<Void> {
        let promise = eventLoop.makePromise(of: Void.self)
        writeAndFlush(data, promise: promise)
        return promise.futureResult
    }
}
