import CertificateKit
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL

/// What one connection's handshake learned: the client's SNI, the entry chosen and how.
/// Filled in by the certificate callback, read by routing after the handshake.
/// Confined to its connection's event loop: created in the child channel initializer, written
/// by the certificate callback and read after the handshake, all on that loop.
final class HandshakeFacts: @unchecked Sendable {
    let listener: String
    let localAddress: IPAddress?
    let remoteAddress: SocketAddress?
    /// The SNI as the client sent it (`nil` without SNI).
    var requestedName: String?
    /// The normalised SNI (`nil` without SNI or with an invalid one).
    var serverName: ServerName?
    var matchKind: CertificateMatch.Kind?
    var entryName: String?
    /// Why no certificate was served, when none was.
    var refusal: String?
    /// A tls-alpn-01 validation (RFC 8737): it got the validation certificate and is closed
    /// after its handshake; how the CA's validator ends it is its own business (logged at
    /// debug, not as a failed handshake).
    var acmeValidation = false

    init(listener: String, localAddress: SocketAddress?, remoteAddress: SocketAddress?) {
        self.listener = listener
        self.remoteAddress = remoteAddress
        self.localAddress = localAddress.flatMap(HandshakeFacts.ipAddress(of:))
    }

    static func ipAddress(of address: SocketAddress) -> IPAddress? {
        switch address {
        case .v4(let v4):
            return IPAddress.v4(UInt32(bigEndian: v4.address.sin_addr.s_addr))
        case .v6(let v6):
            let bytes = withUnsafeBytes(of: v6.address.sin6_addr) { Array($0) }
            return IPAddress(bytes: bytes)
        case .unixDomainSocket:
            return nil
        }
    }
}

/// Hands a connection's ``HandshakeFacts`` to the certificate callback.
///
/// NIOSSL's `sslContextCallback` receives only the SNI, but it runs synchronously inside
/// `NIOSSLServerHandler.channelRead` on the connection's event loop thread. This handler
/// sits in front of it and publishes the connection's facts in a thread-specific slot
/// for exactly the duration of that read. It removes itself once the handshake is done.
final class HandshakeFactsPublisher: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    let facts: HandshakeFacts
    private let slot: ThreadSpecificVariable<HandshakeFacts>

    init(facts: HandshakeFacts, slot: ThreadSpecificVariable<HandshakeFacts>) {
        self.facts = facts
        self.slot = slot
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        slot.currentValue = facts
        context.fireChannelRead(data)
        slot.currentValue = nil
    }
}
