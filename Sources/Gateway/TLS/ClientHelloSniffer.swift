import CertificateKit
import NIOCore
import NIOSSL
import NIOTLS

/// Reads the ClientHello before TLS starts and chooses the TLS handler: a ClientHello that
/// offers `acme-tls/1` for a name with a pending `tls-alpn-01` challenge gets the
/// validation certificate (RFC 8737 §3) and the connection is closed once the handshake is
/// done; every other one gets the listener's own context, as if this handler were not
/// there. The bytes read are handed on untouched.
final class ClientHelloSniffer: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let listenerContext: NIOSSLContext
    private let challenges: ChallengeResponses
    private let facts: HandshakeFacts
    private var buffered: ByteBuffer?

    /// - Parameter facts: the connection's facts; a validation connection is marked there,
    ///   with the name it asked for.
    init(listenerContext: NIOSSLContext, challenges: ChallengeResponses, facts: HandshakeFacts) {
        self.listenerContext = listenerContext
        self.challenges = challenges
        self.facts = facts
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        if var buffered {
            buffered.writeBuffer(&bytes)
            self.buffered = buffered
        } else {
            buffered = bytes
        }
        guard let buffered else { return }
        switch ClientHello.parse(buffered) {
        case .incomplete where buffered.readableBytes <= ClientHello.maxLength + 5 * 8:
            return
        case .incomplete, .notClientHello:
            install(listenerContext, closeAfterHandshake: false, context: context)
        case .clientHello(let hello):
            if hello.alpn.contains(TLSALPNProtocol.name), let name = hello.serverName.flatMap(ServerName.normalize)?.text,
               let challenge = challenges.tlsALPN01(name: name) {
                facts.requestedName = hello.serverName
                facts.serverName = ServerName.normalize(name)
                facts.acmeValidation = true
                install(challenge, closeAfterHandshake: true, context: context)
            } else {
                install(listenerContext, closeAfterHandshake: false, context: context)
            }
        }
    }

    /// Puts the TLS handler after this one, hands it the bytes read so far, and leaves.
    private func install(_ tls: NIOSSLContext, closeAfterHandshake: Bool, context: ChannelHandlerContext) {
        let operations = context.pipeline.syncOperations
        do {
            if closeAfterHandshake {
                try operations.addHandler(CloseAfterHandshake(), position: .after(self))
            }
            try operations.addHandler(NIOSSLServerHandler(context: tls), position: .after(self))
        } catch {
            context.close(promise: nil)
            return
        }
        if let bytes = buffered {
            buffered = nil
            context.fireChannelRead(wrapInboundOut(bytes))
            context.fireChannelReadComplete()
        }
        operations.removeHandler(self, promise: nil)
    }
}

/// The `acme-tls/1` protocol id (RFC 8737 §6.2).
enum TLSALPNProtocol {
    static let name = "acme-tls/1"
}

/// After a `tls-alpn-01` handshake: nothing more is exchanged (RFC 8737 §3); the
/// connection is closed and the handshake is not passed on to routing.
final class CloseAfterHandshake: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSUserEvent.handshakeCompleted = event {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // Nothing is expected after the handshake; drop it.
    }
}
