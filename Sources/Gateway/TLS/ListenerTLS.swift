import NIOCore
import NIOTLS
import NIOSSL

/// Builds the NIOSSL context of one listener: its ALPN and TLS versions, and the
/// certificate callback. No certificate is configured up front: each handshake's comes
/// from the callback.
enum ListenerTLS {
    static func makeContext(
        for listener: ListenerConfiguration, selector: CertificateSelector, counters: GatewayMetrics.ListenerCounters
    ) throws -> NIOSSLContext {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.certificateVerification = .none
        configuration.minimumTLSVersion = tlsVersion(listener.minTLSVersion)
        configuration.maximumTLSVersion = tlsVersion(listener.maxTLSVersion)
        configuration.applicationProtocols = listener.alpn
        configuration.sslContextCallback = selector.callback(counters: counters)
        return try NIOSSLContext(configuration: configuration)
    }

    static func tlsVersion(_ version: ListenerConfiguration.TLSVersion) -> TLSVersion {
        switch version {
        case .tls1_0: return .tlsv1
        case .tls1_1: return .tlsv11
        case .tls1_2: return .tlsv12
        case .tls1_3: return .tlsv13
        }
    }
}

/// Disconnects a client whose handshake has not completed in time (NIOSSL has no
/// handshake timeout of its own: a client that sends nothing would hold the socket
/// forever).
final class HandshakeTimeoutHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    private let timeout: TimeAmount
    private let onTimeout: (ChannelHandlerContext) -> Void
    private var scheduled: Scheduled<Void>?

    init(timeout: TimeAmount, onTimeout: @escaping (ChannelHandlerContext) -> Void) {
        self.timeout = timeout
        self.onTimeout = onTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { schedule(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        schedule(context: context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        scheduled?.cancel()
        scheduled = nil
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard case TLSUserEvent.handshakeCompleted = event else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        scheduled?.cancel()
        scheduled = nil
        context.fireUserInboundEventTriggered(event)
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    private func schedule(context: ChannelHandlerContext) {
        guard scheduled == nil else { return }
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        let onTimeout = NIOLoopBound(self.onTimeout, eventLoop: context.eventLoop)
        scheduled = context.eventLoop.scheduleTask(in: timeout) {
            onTimeout.value(loopBound.value)
            loopBound.value.close(promise: nil)
        }
    }
}
