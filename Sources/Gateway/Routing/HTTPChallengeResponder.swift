import NIOCore
import NIOHTTP1

/// What a `protocol: http` listener answers: ACME `http-01` challenges
/// (`GET /.well-known/acme-challenge/TOKEN` → the key authorization, RFC 8555 §8.3) and,
/// for every other request, a permanent redirect to the same path over https (308,
/// RFC 9110 §15.4.9, so the method and body are kept). One request per connection.
final class HTTPChallengeResponder: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    static let challengePrefix = "/.well-known/acme-challenge/"

    private let responses: ChallengeResponses
    /// The port of the TLS listener redirects go to (omitted when 443).
    private let httpsPort: Int
    private var answered = false

    init(responses: ChallengeResponses, httpsPort: Int) {
        self.responses = responses
        self.httpsPort = httpsPort
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(let request) = unwrapInboundIn(data), !answered else { return }
        answered = true
        var headers = HTTPHeaders()
        headers.add(name: "connection", value: "close")
        let status: HTTPResponseStatus
        var body = ByteBuffer()
        let path = request.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? request.uri
        if path.hasPrefix(Self.challengePrefix) {
            let token = String(path.dropFirst(Self.challengePrefix.count))
            if (request.method == .GET || request.method == .HEAD), let answer = responses.http01(token: token) {
                status = .ok
                body.writeString(answer)
                headers.add(name: "content-type", value: "text/plain")
            } else {
                status = .notFound
            }
        } else if let host = Self.host(request.headers["host"].first) {
            status = .permanentRedirect
            let port = httpsPort == 443 ? "" : ":\(httpsPort)"
            headers.add(name: "location", value: "https://\(host)\(port)\(request.uri.hasPrefix("/") ? request.uri : "/")")
        } else {
            status = .badRequest
        }
        headers.add(name: "content-length", value: "\(body.readableBytes)")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        if request.method != .HEAD, body.readableBytes > 0 {
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        }
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in loopBound.value.close(promise: nil) }
    }

    /// The Host header's name without its port; nil when absent or not a plain host name
    /// (a redirect never carries what the client sent verbatim).
    static func host(_ header: String?) -> String? {
        guard var host = header?.lowercased(), !host.isEmpty else { return nil }
        if host.hasPrefix("[") {
            guard let end = host.firstIndex(of: "]") else { return nil }
            host = String(host[...end])
        } else if let colon = host.firstIndex(of: ":") {
            host = String(host[..<colon])
        }
        let allowed = host.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || "-.[]:".unicodeScalars.contains($0) }
        return allowed && host.count <= 253 ? host : nil
    }
}
