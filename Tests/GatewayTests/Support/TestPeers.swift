import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOTLS
import Synchronization

/// A TCP upstream for the tests: echoes every byte back, closes its write side when the
/// peer closes its own (so half-close can be observed), and records a PROXY protocol
/// header when told to expect one.
final class EchoUpstream: Sendable {
    let channel: any Channel
    let port: Int
    /// The PROXY header bytes the upstream saw first on each connection (when expected).
    let recorded: RecordedHeaders

    final class RecordedHeaders: Sendable {
        let headers = Mutex<[[UInt8]]>([])
        var all: [[UInt8]] { headers.withLock { $0 } }
    }

    init(group: any EventLoopGroup, expectProxyHeader: ProxyHeaderKind? = nil) async throws {
        let recorded = RecordedHeaders()
        self.recorded = recorded
        channel = try await ServerBootstrap(group: group)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(EchoHandler(expect: expectProxyHeader) { header in
                        recorded.headers.withLock { $0.append(header) }
                    })
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        port = channel.localAddress!.port!
    }

    func close() async { try? await channel.close() }

    enum ProxyHeaderKind: Sendable { case v1, v2 }
}

private final class EchoHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    let expect: EchoUpstream.ProxyHeaderKind?
    let record: @Sendable ([UInt8]) -> Void
    var pending: [UInt8] = []
    var headerDone: Bool

    init(expect: EchoUpstream.ProxyHeaderKind?, record: @escaping @Sendable ([UInt8]) -> Void) {
        self.expect = expect
        self.record = record
        self.headerDone = expect == nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        if !headerDone {
            pending += buffer.readBytes(length: buffer.readableBytes) ?? []
            let length: Int?
            switch expect {
            case .v2 where pending.count >= 16: length = 16 + Int(pending[14]) << 8 + Int(pending[15])
            case .v1: length = pending.firstIndex(of: 0x0A).map { $0 + 1 }
            default: length = nil
            }
            guard let length, pending.count >= length else { return }
            record(Array(pending[..<length]))
            headerDone = true
            let rest = Array(pending[length...])
            pending = []
            guard !rest.isEmpty else { return }
            buffer = context.channel.allocator.buffer(bytes: rest)
        }
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event {
            context.close(mode: .output, promise: nil)
        }
    }
}

/// An HTTP/1.1 upstream that answers each request with its body (for curl).
final class HTTPEchoUpstream: Sendable {
    let channel: any Channel
    let port: Int

    init(group: any EventLoopGroup) async throws {
        channel = try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(HTTPEchoHandler())
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        port = channel.localAddress!.port!
    }

    func close() async { try? await channel.close() }
}

private final class HTTPEchoHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    var body: ByteBuffer?

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head: body = context.channel.allocator.buffer(capacity: 0)
        case .body(var part): body?.writeBuffer(&part)
        case .end:
            let body = self.body ?? context.channel.allocator.buffer(capacity: 0)
            var headers = HTTPHeaders()
            headers.add(name: "content-length", value: String(body.readableBytes))
            context.write(wrapOutboundOut(.head(.init(version: .http1_1, status: .ok, headers: headers))), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
    }
}

/// Completes when the TLS handshake does (fails with the handshake's error).
private final class HandshakeWaiter: ChannelInboundHandler {
    typealias InboundIn = NIOAny
    let promise: EventLoopPromise<Void>

    init(promise: EventLoopPromise<Void>) {
        self.promise = promise
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSUserEvent.handshakeCompleted = event { promise.succeed() }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise.fail(error)
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(ChannelError.ioOnClosedChannel)
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        promise.fail(ChannelError.ioOnClosedChannel)  // a no-op once completed
    }
}

/// A TLS client for the tests: connects with an SNI, trusts `trustRoots`, and reports
/// the certificate it was served.
struct TestTLSClient {
    let group: any EventLoopGroup
    let trustRoots: [NIOSSLCertificate]
    /// Protocols offered in ALPN (none by default).
    var applicationProtocols: [String] = []
    /// Whether the served leaf must name the SNI (the chain is verified either way).
    var verifyHostname = true

    struct Connection {
        let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>
        let servedCertificate: NIOSSLCertificate?
        let localAddress: SocketAddress?

        /// Closes a connection whose streams were not used.
        func close() async {
            try? await channel.executeThenClose { _, _ in }
        }
    }

    func connect(port: Int, serverName: String?) async throws -> Connection {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.trustRoots = .certificates(trustRoots)
        configuration.certificateVerification = serverName == nil || !verifyHostname ? .noHostnameVerification : .fullVerification
        // Tests close connections whose reads they never consumed: do not wait 5 s for the close_notify.
        configuration.shutdownTimeout = .milliseconds(200)
        configuration.applicationProtocols = applicationProtocols
        let context = try NIOSSLContext(configuration: configuration)
        let (channel, handshake) = try await ClientBootstrap(group: group)
            .channelOption(.allowRemoteHalfClosure, value: true)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let waiter = HandshakeWaiter(promise: channel.eventLoop.makePromise())
                    try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: serverName))
                    try channel.pipeline.syncOperations.addHandler(waiter)
                    let wrapped = try NIOAsyncChannel<ByteBuffer, ByteBuffer>(
                        wrappingChannelSynchronously: channel,
                        configuration: .init(isOutboundHalfClosureEnabled: true))
                    return (wrapped, waiter.promise.futureResult)
                }
            }
        do {
            try await handshake.get()
        } catch {
            try? await channel.executeThenClose { _, _ in }
            throw error
        }
        let served = try await channel.channel.nioSSL_peerCertificate().get()
        return Connection(channel: channel, servedCertificate: served, localAddress: channel.channel.localAddress)
    }

    /// Sends `payload`, half-closes, and returns everything received until the server closes.
    func exchange(port: Int, serverName: String?, payload: [UInt8]) async throws -> (received: [UInt8], connection: Connection) {
        let connection = try await connect(port: port, serverName: serverName)
        var received: [UInt8] = []
        try await connection.channel.executeThenClose { inbound, outbound in
            async let sending: Void = {
                var offset = 0
                while offset < payload.count {
                    let end = min(payload.count, offset + 65_536)
                    try await outbound.write(ByteBuffer(bytes: payload[offset..<end]))
                    offset = end
                }
                outbound.finish()
            }()
            for try await var buffer in inbound {
                received += buffer.readBytes(length: buffer.readableBytes) ?? []
            }
            try await sending
        }
        return (received, connection)
    }
}
