import CertificateKit
import Logging
import NIOCore
import NIOTLS
import NIOHTTP1
import NIOSSL

/// Waits for a connection's handshake, then sets the connection up for its route:
/// the built-in responder or the upstream proxy. Logs a failed handshake with the
/// client's SNI and the reason.
final class ConnectionRouter: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    private let facts: HandshakeFacts
    private let publisher: HandshakeFactsPublisher
    private let routes: RouteTable
    private let upstreamLog: UpstreamFailureLog
    private let logger: Logger

    init(facts: HandshakeFacts, publisher: HandshakeFactsPublisher, routes: RouteTable, upstreamLog: UpstreamFailureLog, logger: Logger) {
        self.facts = facts
        self.publisher = publisher
        self.routes = routes
        self.upstreamLog = upstreamLog
        self.logger = logger
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard case TLSUserEvent.handshakeCompleted(let negotiatedProtocol) = event else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        let pipeline = context.pipeline.syncOperations
        pipeline.removeHandler(publisher, promise: nil)
        let route = routes.route(for: facts.serverName)
        do {
            switch route?.action {
            case nil:
                logger.info("no route for the served name; closing", metadata: metadata(["alpn": "\(negotiatedProtocol ?? "-")"]))
                context.close(promise: nil)
                return
            case .respond(let response):
                if let negotiatedProtocol, negotiatedProtocol != "http/1.1" {
                    logger.info("the built-in responder speaks HTTP/1.1 only; closing", metadata: metadata(["alpn": "\(negotiatedProtocol)"]))
                    context.close(promise: nil)
                    return
                }
                try pipeline.configureHTTPServerPipeline(position: .last, withPipeliningAssistance: true, withErrorHandling: true)
                try pipeline.addHandler(RespondHandler(
                    response: response, serverName: facts.serverName?.text ?? "", allocator: context.channel.allocator))
            case .upstream(let address, let proxyProtocol, let connectTimeout):
                try pipeline.addHandler(UpstreamConnector(
                    target: .init(
                        address: address, proxyProtocol: proxyProtocol,
                        connectTimeout: .nanoseconds(Int64(connectTimeout.duration.components.seconds) * 1_000_000_000
                            + connectTimeout.duration.components.attoseconds / 1_000_000_000),
                        serverName: facts.serverName?.text, negotiatedProtocol: negotiatedProtocol),
                    upstreamLog: upstreamLog))
            }
            try pipeline.addHandler(ConnectionErrorHandler(logger: logger))
        } catch {
            logger.error("cannot set up the connection", metadata: metadata(["error": "\(error)"]))
            context.close(promise: nil)
            return
        }
        pipeline.removeHandler(context: context, promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        var reason = "\(error)"
        if let refusal = facts.refusal { reason = refusal }
        logger.info("TLS handshake failed", metadata: metadata(["reason": "\(reason)"]))
        context.close(promise: nil)
    }

    private func metadata(_ extra: Logger.Metadata) -> Logger.Metadata {
        var metadata: Logger.Metadata = [
            "listener": "\(facts.listener)",
            "client": "\(facts.remoteAddress.map { "\($0)" } ?? "-")",
            "sni": "\(facts.requestedName ?? "-")",
        ]
        metadata.merge(extra) { $1 }
        return metadata
    }
}

/// The last handler of an established connection: an error closes it (logged at debug:
/// resets and aborted clients are routine).
final class ConnectionErrorHandler: ChannelInboundHandler {
    typealias InboundIn = NIOAny
    private let logger: Logger

    init(logger: Logger) {
        self.logger = logger
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.debug("connection error; closing", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }
}
