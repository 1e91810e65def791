import Logging
import NIOCore
import NIOPosix
import Synchronization

/// Placed on a client connection once its handshake is done and its route says
/// `upstream`: connects to the upstream, sends the PROXY header when configured, then
/// glues the two channels together. What the client sends meanwhile is held, in order,
/// and handed over; a client half-close that arrives early is handed over too.
final class UpstreamConnector: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    struct Target {
        let address: HostAndPort
        let proxyProtocol: RouteConfiguration.ProxyProtocolVersion?
        let connectTimeout: TimeAmount
        let serverName: String?
        let negotiatedProtocol: String?
    }

    private let target: Target
    private let upstreamLog: UpstreamFailureLog
    private var held: [ByteBuffer] = []
    private var clientInputClosed = false

    init(target: Target, upstreamLog: UpstreamFailureLog) {
        self.target = target
        self.upstreamLog = upstreamLog
    }

    func handlerAdded(context: ChannelHandlerContext) {
        // Read nothing more from the client until the upstream can take it.
        try? context.channel.syncOptions?.setOption(.autoRead, value: false)
        let clientChannel = context.channel
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let target = self.target
        ClientBootstrap(group: context.eventLoop)
            .channelOption(.allowRemoteHalfClosure, value: true)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(target.connectTimeout)
            .connect(host: target.address.host, port: target.address.port)
            .flatMap { upstream -> EventLoopFuture<Channel> in
                guard let header = Self.proxyHeader(target: target, client: clientChannel, upstream: upstream) else {
                    return upstream.eventLoop.makeSucceededFuture(upstream)
                }
                return upstream.writeAndFlush(header).map { upstream }
            }
            .whenComplete { result in
                let (handler, context) = loopBound.value
                switch result {
                case .success(let upstream):
                    handler.upstreamLog.recordSuccess(target.address)
                    handler.join(context: context, upstream: upstream)
                case .failure(let error):
                    handler.upstreamLog.recordFailure(target.address, error: error)
                    context.close(promise: nil)
                }
            }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        held.append(unwrapInboundIn(data))
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event {
            clientInputClosed = true
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    private func join(context: ChannelHandlerContext, upstream: Channel) {
        guard context.channel.isActive else {
            upstream.close(promise: nil)
            return
        }
        let (clientGlue, upstreamGlue) = GlueHandler.matchedPair()
        do {
            try upstream.pipeline.syncOperations.addHandler(upstreamGlue)
            try context.pipeline.syncOperations.addHandler(clientGlue, position: .after(self))
        } catch {
            upstream.close(promise: nil)
            context.close(promise: nil)
            return
        }
        // Hand what arrived while connecting to the glue, then step aside.
        let early = held
        held.removeAll()
        for buffer in early { context.fireChannelRead(wrapInboundOut(buffer)) }
        if !early.isEmpty { context.fireChannelReadComplete() }
        if clientInputClosed { context.fireUserInboundEventTriggered(ChannelEvent.inputClosed) }
        let channel = context.channel
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        try? channel.syncOptions?.setOption(.autoRead, value: true)
        channel.read()
    }

    private static func proxyHeader(target: Target, client: Channel, upstream: Channel) -> ByteBuffer? {
        switch target.proxyProtocol {
        case nil:
            return nil
        case .v1:
            return upstream.allocator.buffer(string: ProxyProtocolHeader.v1(source: client.remoteAddress, destination: client.localAddress))
        case .v2:
            return upstream.allocator.buffer(bytes: ProxyProtocolHeader.v2(
                source: client.remoteAddress, destination: client.localAddress,
                authority: target.serverName, alpn: target.negotiatedProtocol))
        }
    }

    typealias InboundOut = ByteBuffer
}

/// Logs an unreachable upstream once, when it starts failing, and once when it answers
/// again — not once per client connection.
final class UpstreamFailureLog: Sendable {
    private let failing = Mutex<Set<HostAndPort>>([])
    private let logger: Logger

    init(logger: Logger) {
        self.logger = logger
    }

    func recordFailure(_ upstream: HostAndPort, error: any Error) {
        let first = failing.withLock { $0.insert(upstream).inserted }
        if first {
            logger.warning("upstream unreachable; client connections to it are closed (logged once until it answers again)",
                           metadata: ["upstream": "\(upstream)", "reason": "\(SocketFailure.describe(error))"])
        }
    }

    func recordSuccess(_ upstream: HostAndPort) {
        let recovered = failing.withLock { $0.remove(upstream) != nil }
        if recovered {
            logger.notice("upstream answers again", metadata: ["upstream": "\(upstream)"])
        }
    }
}
