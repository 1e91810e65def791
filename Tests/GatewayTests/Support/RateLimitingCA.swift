import CertificateTestSupport
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization

/// An ACME server that refuses every request signed with a key (RFC 8555 §6.7,
/// `rateLimited`, HTTP 429), with a `Retry-After` of `retryAfter` seconds when set: its
/// directory and nonces are answered, so that the client's first POST (the account) is
/// what fails. Over HTTPS with a CA of its own (`rootPEM`, for `ca_roots`).
final class RateLimitingCA: Sendable {
    let channel: any Channel
    let port: Int
    let rootPEM: String
    /// How many POSTs it refused.
    var refused: Int { counter.value.load(ordering: .relaxed) }
    private let counter = Counter()

    var directoryURL: String { "https://127.0.0.1:\(port)/dir" }

    init(retryAfter: Int?, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws {
        let authority = TestCertificate.authority(commonName: "rate-limiting CA")
        let serving = authority.leaf(dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"])
        rootPEM = authority.pem
        let context = try NIOSSLContext(configuration: .makeServerConfiguration(
            certificateChain: [.certificate(try NIOSSLCertificate(bytes: serving.parsed.der, format: .der))],
            privateKey: .privateKey(try NIOSSLPrivateKey(bytes: Array(serving.key.pkcs8PEM.utf8), format: .pem))))
        let counter = self.counter
        channel = try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context))
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(Responder(retryAfter: retryAfter, counter: counter))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        port = channel.localAddress!.port!
    }

    func close() async { try? await channel.close() }

    final class Counter: Sendable {
        let value = Atomic<Int>(0)
    }

    private final class Responder: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let retryAfter: Int?
        let counter: Counter
        var head: HTTPRequestHead?

        init(retryAfter: Int?, counter: Counter) {
            self.retryAfter = retryAfter
            self.counter = counter
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let head): self.head = head
            case .body: break
            case .end: answer(context: context)
            }
        }

        private func answer(context: ChannelHandlerContext) {
            guard let head else { return }
            let base = "https://\(head.headers.first(name: "host") ?? "127.0.0.1")"
            var headers = HTTPHeaders([("replay-nonce", UUID().uuidString.replacingOccurrences(of: "-", with: ""))])
            let status: HTTPResponseStatus
            var body = ""
            switch (head.method, head.uri) {
            case (.GET, "/dir"):
                status = .ok
                headers.add(name: "content-type", value: "application/json")
                body = #"{"newNonce":"\#(base)/nonce","newAccount":"\#(base)/account","newOrder":"\#(base)/order","revokeCert":"\#(base)/revoke","keyChange":"\#(base)/key"}"#
            case (.HEAD, "/nonce"), (.GET, "/nonce"):
                status = .ok
            case (.POST, _):
                counter.value.add(1, ordering: .relaxed)
                status = .tooManyRequests
                headers.add(name: "content-type", value: "application/problem+json")
                if let retryAfter { headers.add(name: "retry-after", value: String(retryAfter)) }
                body = #"{"type":"urn:ietf:params:acme:error:rateLimited","detail":"too many new accounts from this address"}"#
            default:
                status = .notFound
            }
            headers.add(name: "content-length", value: String(body.utf8.count))
            context.write(wrapOutboundOut(.head(.init(version: .http1_1, status: status, headers: headers))), promise: nil)
            if !body.isEmpty { context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: body)))), promise: nil) }
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
    }
}
