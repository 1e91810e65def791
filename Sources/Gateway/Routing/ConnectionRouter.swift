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

    /// Set once the handshake is done and the route is a `respond` one: the HTTP handlers
    /// are added when the first bytes arrive (a client that closes right after its
    /// handshake costs no HTTP state).
    private var pendingResponse: RouteConfiguration.Response?
    private var handshakeDone = false
    private var failureLogged = false

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard case TLSUserEvent.handshakeCompleted(let negotiatedProtocol) = event else {
            if case ChannelEvent.inputClosed = event, handshakeDone {
                context.close(promise: nil)  // the client left before asking anything
                return
            }
            context.fireUserInboundEventTriggered(event)
            return
        }
        handshakeDone = true
        let pipeline = context.pipeline.syncOperations
        pipeline.removeHandler(publisher, promise: nil)
        let route = routes.route(for: facts.serverName)
        switch route?.action {
        case nil:
            logger.info("no route for the served name; closing", metadata: metadata(["alpn": "\(negotiatedProtocol ?? "-")"]))
            context.close(promise: nil)
        case .respond(let response):
            if let negotiatedProtocol, negotiatedProtocol != "http/1.1" {
                logger.info("the built-in responder speaks HTTP/1.1 only; closing", metadata: metadata(["alpn": "\(negotiatedProtocol)"]))
                context.close(promise: nil)
                return
            }
            pendingResponse = response
        case .upstream(let address, let proxyProtocol, let connectTimeout):
            // Connect at once: with server-speaks-first protocols the client may send nothing.
            let installed = install(context: context) {
                try pipeline.addHandler(UpstreamConnector(
                    target: .init(
                        address: address, proxyProtocol: proxyProtocol, connectTimeout: TimeAmount(connectTimeout.duration),
                        serverName: facts.serverName?.text, negotiatedProtocol: negotiatedProtocol),
                    upstreamLog: upstreamLog))
            }
            if installed { pipeline.removeHandler(context: context, promise: nil) }
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let response = pendingResponse else {
            context.fireChannelRead(data)
            return
        }
        pendingResponse = nil
        let pipeline = context.pipeline.syncOperations
        let serverName = facts.serverName?.text ?? ""
        guard install(context: context, {
            try pipeline.configureHTTPServerPipeline(position: .last, withPipeliningAssistance: true, withErrorHandling: true)
            try pipeline.addHandler(RespondHandler(response: response, serverName: serverName, allocator: context.channel.allocator))
        }) else { return }
        // Hand the bytes on before stepping aside (a removed handler's events go nowhere).
        context.fireChannelRead(data)
        pipeline.removeHandler(context: context, promise: nil)
    }

    /// Adds a route's handlers and the closing error handler at the end of the pipeline;
    /// on failure closes the connection and returns false.
    private func install(context: ChannelHandlerContext, _ addHandlers: () throws -> Void) -> Bool {
        do {
            try addHandlers()
            try context.pipeline.syncOperations.addHandler(ConnectionErrorHandler(logger: logger))
            return true
        } catch {
            logger.error("cannot set up the connection", metadata: metadata(["reason": "\(SocketFailure.describe(error))"]))
            context.close(promise: nil)
            return false
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard !handshakeDone else {
            logger.debug("connection error; closing", metadata: metadata(["reason": "\(TLSFailure.describe(error))"]))
            context.close(promise: nil)
            return
        }
        // NIOSSL may report one failure more than once (the alert, then the unclean close).
        guard !failureLogged else { return }
        failureLogged = true
        if facts.acmeValidation {
            logger.debug("tls-alpn-01 validation connection ended", metadata: metadata(["reason": "\(TLSFailure.describe(error))"]))
            context.close(promise: nil)
            return
        }
        let reason = facts.refusal ?? TLSFailure.describe(error)
        logger.info("TLS handshake failed", metadata: metadata(["reason": "\(reason)"]))
        context.close(promise: nil)
    }

    private func metadata(_ extra: Logger.Metadata) -> Logger.Metadata {
        var metadata: Logger.Metadata = [
            "listener": "\(facts.listener)",
            "client": "\(facts.remoteAddress.map { "\($0)" } ?? "-")",
            "sni": "\(facts.requestedName ?? "-")",
        ]
        if let entry = facts.entryName { metadata["entry"] = "\(entry)" }
        if let match = facts.matchKind { metadata["match"] = "\(match.rawValue)" }
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
        logger.debug("connection error; closing", metadata: ["reason": "\(TLSFailure.describe(error))"])
        context.close(promise: nil)
    }
}
