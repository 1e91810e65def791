import Dispatch
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus

/// The Prometheus endpoint: `GET /metrics` answers the registry in the text format, then
/// what `render` appends (series derived from the served set at scrape time). The body
/// is made on a dispatch thread: a large set's series never stall an event loop.
enum MetricsEndpoint {
    typealias Render = @Sendable (_ output: inout [UInt8]) -> Void

    static func bind(
        address: HostAndPort, registry: PrometheusCollectorRegistry, group: any EventLoopGroup,
        render: @escaping Render = { _ in }
    ) async throws -> any Channel {
        try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(MetricsHandler(registry: registry, render: render))
                }
            }
            .bind(host: address.host, port: address.port).get()
    }
}

private final class MetricsHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let registry: PrometheusCollectorRegistry
    private let render: MetricsEndpoint.Render
    /// One per connection, serial: pipelined requests are answered in order.
    private let renderQueue = DispatchQueue(label: "certgate.metrics.render")
    private var request: HTTPRequestHead?

    init(registry: PrometheusCollectorRegistry, render: @escaping MetricsEndpoint.Render) {
        self.registry = registry
        self.render = render
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            request = head
        case .body:
            break
        case .end:
            guard let request else { return }
            self.request = nil
            let path = request.uri.split(separator: "?").first.map(String.init) ?? request.uri
            guard request.method == .GET && path == "/metrics" else {
                respond(context: context, request: request, status: .notFound, body: Array("not found; try /metrics\n".utf8))
                return
            }
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            let (registry, render) = (self.registry, self.render)
            renderQueue.async {
                var output = registry.emitToBuffer()
                render(&output)
                let body = output
                loopBound.eventLoop.execute {
                    let (handler, context) = loopBound.value
                    handler.respond(context: context, request: request, status: .ok, body: body)
                }
            }
        }
    }

    private func respond(context: ChannelHandlerContext, request: HTTPRequestHead, status: HTTPResponseStatus, body: [UInt8]) {
        var headers = HTTPHeaders()
        headers.add(name: "content-type", value: status == .ok ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain")
        headers.add(name: "content-length", value: String(body.count))
        if !request.isKeepAlive { headers.add(name: "connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
        let keepAlive = request.isKeepAlive
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
            if !keepAlive { loopBound.value.close(promise: nil) }
        }
    }
}
