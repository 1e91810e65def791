import CertificateTestSupport
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization

/// An ACME directory in front of a real Pebble that adds ARI (RFC 9773), which Pebble 2.4
/// lacks: `GET /dir` answers Pebble's own directory plus `renewalInfo` pointing here, and
/// `GET /renewal-info/ID` answers the window the test sets, with its `Retry-After`. Every
/// other ACME request goes to Pebble itself (the directory's URLs are Pebble's). Each
/// certificate gets the default window unless the test set one for its identifier, as a CA
/// answers per certificate.
final class RenewalInfoDirectory: Sendable {
    struct Window: Sendable {
        var start: Date
        var end: Date
    }

    let channel: any Channel
    let port: Int
    /// The CA of this server's HTTPS certificate (PEM), for the gateway's `ca_roots`.
    let rootPEM: String
    /// The certificate identifiers asked for, in order.
    let asked = Collected<String>()
    private let shared: Responder.Shared

    var directoryURL: String { "https://127.0.0.1:\(port)/dir" }

    /// - Parameter pebbleDirectory: Pebble's directory object (JSON).
    init(pebbleDirectory: Data, window: Window, retryAfter: Int, group: any EventLoopGroup) async throws {
        let authority = TestCertificate.authority(commonName: "ARI directory test CA")
        let serving = authority.leaf(dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"])
        rootPEM = authority.pem
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: [.certificate(try NIOSSLCertificate(bytes: Array(serving.pem.utf8), format: .pem))],
            privateKey: .privateKey(try NIOSSLPrivateKey(bytes: Array(serving.key.pkcs8PEM.utf8), format: .pem)))
        configuration.minimumTLSVersion = .tlsv12
        let context = try NIOSSLContext(configuration: configuration)
        let handler = Responder.Shared(pebbleDirectory: pebbleDirectory, window: window, retryAfter: retryAfter, asked: asked)
        shared = handler
        channel = try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context))
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(Responder(shared: handler))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        port = channel.localAddress!.port!
        handler.port.withLock { $0 = port }
    }

    /// The window answered from now on for the certificate `identifier` (RFC 9773 §4.1).
    func setWindow(_ window: Window, for identifier: String) {
        shared.windows.withLock { $0.byIdentifier[identifier] = window }
    }

    func close() async { try? await channel.close() }

    private final class Responder: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart

        final class Shared: Sendable {
            let pebbleDirectory: Data
            let windows: Mutex<(byIdentifier: [String: Window], otherwise: Window)>
            let retryAfter: Int
            let asked: Collected<String>
            let port: Mutex<Int>

            init(pebbleDirectory: Data, window: Window, retryAfter: Int, asked: Collected<String>) {
                self.pebbleDirectory = pebbleDirectory
                self.windows = Mutex(([:], window))
                self.retryAfter = retryAfter
                self.asked = asked
                self.port = Mutex(0)
            }
        }

        let shared: Shared
        var uri = ""

        init(shared: Shared) { self.shared = shared }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let head): uri = head.uri
            case .body: break
            case .end: answer(context: context)
            }
        }

        private func answer(context: ChannelHandlerContext) {
            var headers = HTTPHeaders([("content-type", "application/json")])
            let body: Data
            var status = HTTPResponseStatus.ok
            if uri == "/dir", var directory = try? JSONSerialization.jsonObject(with: shared.pebbleDirectory) as? [String: Any] {
                directory["renewalInfo"] = "https://127.0.0.1:\(shared.port.withLock { $0 })/renewal-info/"
                body = (try? JSONSerialization.data(withJSONObject: directory)) ?? Data()
            } else if uri.hasPrefix("/renewal-info/") {
                let identifier = String(uri.dropFirst("/renewal-info/".count))
                shared.asked.append(identifier)
                let window = shared.windows.withLock { $0.byIdentifier[identifier] ?? $0.otherwise }
                let format = ISO8601DateFormatter()
                body = Data(#"{"suggestedWindow":{"start":"\#(format.string(from: window.start))","end":"\#(format.string(from: window.end))"}}"#.utf8)
                headers.add(name: "retry-after", value: String(shared.retryAfter))
            } else {
                status = .notFound
                body = Data()
            }
            headers.add(name: "content-length", value: String(body.count))
            context.write(wrapOutboundOut(.head(.init(version: .http1_1, status: status, headers: headers))), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: body)))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
    }
}
