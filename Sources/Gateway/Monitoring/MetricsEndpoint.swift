import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus

/// The Prometheus endpoint: `GET /metrics` answers the registry in the text format.
enum MetricsEndpoint {
    static func bind(address: HostAndPort, registry: PrometheusCollectorRegistry, group: any EventLoopGroup) async throws -> any Channel {
        try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(MetricsHandler(registry: registry))
                }
            }
            .bind(host: address.host, port: address.port).get()
    }
}

private final class MetricsHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let registry: PrometheusCollectorRegistry
    private var request: HTTPRequestHead?

    init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            request = head
        case .body:
            break
        case .end:
            guard let request else { return }
            let path = request.uri.split(separator: "?").first.map(String.init) ?? request.uri
            let (status, body): (HTTPResponseStatus, [UInt8])
            if request.method == .GET && path == "/metrics" {
                (status, body) = (.ok, registry.emitToBuffer())
            } else {
                (status, body) = (.notFound, Array("not found; try /metrics\n".utf8))
            }
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
            self.request = nil
        }
    }
}
