import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// An HTTP receiver for webhook notifications: records each POST body.
final class WebhookReceiver: Sendable {
    let channel: any Channel
    let port: Int
    let bodies: Bodies

    final class Bodies: Sendable {
        let received = Mutex<[Data]>([])
        var all: [[String: Any]] {
            received.withLock { $0 }.compactMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] }
        }
    }

    init(group: any EventLoopGroup) async throws {
        let bodies = Bodies()
        self.bodies = bodies
        channel = try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(Handler(bodies: bodies))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        port = channel.localAddress!.port!
    }

    private final class Handler: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let bodies: Bodies
        var buffer = ByteBuffer()

        init(bodies: Bodies) { self.bodies = bodies }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head: buffer.clear()
            case .body(var part): buffer.writeBuffer(&part)
            case .end:
                let body = Data(buffer.readableBytesView)
                bodies.received.withLock { $0.append(body) }
                var headers = HTTPHeaders()
                headers.add(name: "content-length", value: "0")
                context.write(wrapOutboundOut(.head(.init(version: .http1_1, status: .noContent, headers: headers))), promise: nil)
                context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            }
        }
    }
}
