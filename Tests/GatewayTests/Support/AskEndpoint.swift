import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization

/// An on-demand `ask` endpoint for tests: answers `GET /allowed?domain=NAME` with 200 when
/// `allows(NAME)`, else 403, and records every name asked, in order. For a name `trickles`
/// takes, it sends a 200 head and a first chunk of its body, and never ends it; a name
/// starting with `redirect` gets a 302 to a URL that would allow it; one starting with `slow`
/// is answered after a second; `bodyN.…` gets 200 with a body of N bytes. With `tls` it
/// speaks HTTPS; with `reserved` it listens on that port's socket.
final class AskEndpoint: Sendable {
    let channel: any Channel
    let port: Int
    private let asked = AskedNames()

    final class AskedNames: Sendable {
        let names = Mutex<[String]>([])
    }

    private let scheme: String
    var url: String { "\(scheme)://127.0.0.1:\(port)/allowed" }
    var askedNames: [String] { asked.names.withLock { $0 } }

    init(
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, reserved: ReservedPort? = nil, tls: NIOSSLContext? = nil,
        trickles: @escaping @Sendable (String) -> Bool = { _ in false }, allows: @escaping @Sendable (String) -> Bool
    ) async throws {
        let asked = self.asked
        scheme = tls == nil ? "http" : "https"
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls)) }
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(Handler(asked: asked, allows: allows, trickles: trickles))
                }
            }
        if let reserved {
            // The reserved port's own socket, which refused connections until now.
            channel = try await bootstrap.withBoundSocket(try reserved.listen()).get()
        } else {
            channel = try await bootstrap.bind(host: "127.0.0.1", port: 0).get()
        }
        port = channel.localAddress!.port!
    }

    func close() async { try? await channel.close() }

    private final class Handler: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let asked: AskedNames
        let allows: @Sendable (String) -> Bool
        let trickles: @Sendable (String) -> Bool
        var name: String?

        init(asked: AskedNames, allows: @escaping @Sendable (String) -> Bool, trickles: @escaping @Sendable (String) -> Bool) {
            self.asked = asked
            self.allows = allows
            self.trickles = trickles
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let head):
                let components = URLComponents(string: head.uri)
                name = components?.path == "/allowed" ? components?.queryItems?.first(where: { $0.name == "domain" })?.value : nil
            case .body:
                break
            case .end:
                if let name { asked.names.withLock { $0.append(name) } }
                if let name, trickles(name) {
                    var headers = HTTPHeaders()
                    headers.add(name: "transfer-encoding", value: "chunked")
                    context.write(wrapOutboundOut(.head(.init(version: .http1_1, status: .ok, headers: headers))), promise: nil)
                    context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: "y")))), promise: nil)
                    return
                }
                if let name, name.hasPrefix("body"), let size = Int(name.dropFirst(4).prefix { $0.isNumber }) {
                    var headers = HTTPHeaders()
                    headers.add(name: "content-length", value: String(size))
                    context.write(wrapOutboundOut(.head(.init(version: .http1_1, status: .ok, headers: headers))), promise: nil)
                    context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(repeating: UInt8(ascii: "y"), count: size)))), promise: nil)
                    context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
                    return
                }
                if let name, name.hasPrefix("redirect") {
                    // A redirect to an address that would allow: not a 2xx, so a no.
                    var headers = HTTPHeaders()
                    headers.add(name: "location", value: "/allowed?domain=ok-\(name)")
                    headers.add(name: "content-length", value: "0")
                    context.write(wrapOutboundOut(.head(.init(version: .http1_1, status: .found, headers: headers))), promise: nil)
                    context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
                    return
                }
                let allowed = name.map(allows) ?? false
                var headers = HTTPHeaders()
                headers.add(name: "content-length", value: "0")
                let head = HTTPServerResponsePart.head(.init(version: .http1_1, status: allowed ? .ok : .forbidden, headers: headers))
                guard let name, name.hasPrefix("slow") else {
                    context.write(wrapOutboundOut(head), promise: nil)
                    context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
                    return
                }
                // A name starting with `slow` is answered after a second.
                let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
                context.eventLoop.scheduleTask(in: .seconds(1)) {
                    let context = loopBound.value
                    context.write(NIOAny(head), promise: nil)
                    context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil)), promise: nil)
                }
            }
        }
    }
}
