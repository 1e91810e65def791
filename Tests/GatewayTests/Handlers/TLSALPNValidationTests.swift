import CertificateKit
import CertificateTestSupport
import Foundation
import NIOCore
import NIOEmbedded
import NIOSSL
import NIOTLS
import Testing
import X509
@testable import Gateway

/// A connection whose ClientHello is read before TLS (`ClientHelloSniffer`): a tls-alpn-01
/// validation gets the challenge's certificate and is closed after its handshake (RFC 8737
/// §3); every other connection gets the listener's context and goes on.
@Suite("tls-alpn-01 validation connections (EmbeddedChannel)", .timeLimit(.minutes(1)))
struct TLSALPNValidationTests {
    static let authority = TestCertificate.authority(commonName: "tls-alpn test CA")
    static let validation = authority.leaf(dnsNames: ["shop.example.test"], commonName: "validation")
    static let listener = authority.leaf(dnsNames: ["shop.example.test"], commonName: "listener")

    static func listenerContext() throws -> NIOSSLContext {
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: [.certificate(try NIOSSLCertificate(bytes: listener.parsed.der, format: .der))],
            privateKey: .privateKey(try NIOSSLPrivateKey(bytes: Array(listener.key.pkcs8PEM.utf8), format: .pem)))
        configuration.applicationProtocols = ["h2", "http/1.1"]
        return try NIOSSLContext(configuration: configuration)
    }

    /// Answers with the validation certificate pending for shop.example.test.
    static func pendingChallenge() throws -> ChallengeResponses {
        let keyBase64 = validation.key.pkcs8PEM.split(separator: "\n").filter { !$0.hasPrefix("-----") }.joined()
        let responses = ChallengeResponses()
        responses.setTLSALPN01(name: "shop.example.test", context: try ListenerTLS.makeChallengeContext(
            certificateDER: validation.parsed.der, privateKeyDER: Array(try #require(Data(base64Encoded: keyBase64)))))
        return responses
    }

    /// The client's view of its handshake.
    final class ClientEvents: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        var negotiated: String??
        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if case TLSUserEvent.handshakeCompleted(let protocolName) = event { negotiated = .some(protocolName) }
            context.fireUserInboundEventTriggered(event)
        }
    }

    struct Outcome: Equatable {
        /// The served leaf's CN (nil: no handshake).
        var commonName: String?
        /// The protocol ALPN agreed (nil: none).
        var alpn: String?
        /// Whether the server's side is still open after the handshake and a request.
        var serverOpen: Bool
        var markedAsValidation: Bool
    }

    static func connect(name: String, alpn: [String], challenges: ChallengeResponses) throws -> Outcome {
        let facts = HandshakeFacts(listener: "https", localAddress: nil, remoteAddress: nil)
        let server = EmbeddedChannel()
        try server.pipeline.syncOperations.addHandler(ClientHelloSniffer(listenerContext: try listenerContext(), challenges: challenges, facts: facts))
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.certificateVerification = .none
        configuration.applicationProtocols = alpn
        let tls = try NIOSSLClientHandler(context: NIOSSLContext(configuration: configuration), serverHostname: name)
        let events = ClientEvents()
        let client = EmbeddedChannel()
        try client.pipeline.syncOperations.addHandler(tls)
        try client.pipeline.syncOperations.addHandler(events)
        try server.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 50_000)).wait()
        try client.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 443)).wait()
        // Bytes both ways until neither side has more to say.
        func shuttle() throws {
            var moved = true
            while moved {
                moved = false
                while let bytes = try client.readOutbound(as: ByteBuffer.self) {
                    moved = true
                    if server.isActive { try server.writeInbound(bytes) }
                }
                while let bytes = try server.readOutbound(as: ByteBuffer.self) {
                    moved = true
                    if client.isActive { try client.writeInbound(bytes) }
                }
            }
        }
        try shuttle()
        let leaf = try tls.peerCertificate.map { try Certificate(derEncoded: try $0.toDERBytes()).subject.commonName }
        if client.isActive, events.negotiated != nil {
            client.writeAndFlush(ByteBuffer(string: "GET / HTTP/1.1\r\nHost: \(name)\r\n\r\n"), promise: nil)
            try shuttle()
        }
        let outcome = Outcome(commonName: leaf ?? nil, alpn: events.negotiated ?? nil, serverOpen: server.isActive, markedAsValidation: facts.acmeValidation)
        // An orderly end (close_notify both ways; a close waits for the peer's), so that
        // neither channel is left waiting.
        client.close(promise: nil)
        try shuttle()
        for loop in [client.embeddedEventLoop, server.embeddedEventLoop] { loop.advanceTime(by: .seconds(10)) }
        _ = try? server.finish()
        _ = try? client.finish()
        return outcome
    }

    @Test("a ClientHello offering acme-tls/1 for the name with a pending challenge gets the validation certificate and acme-tls/1; the server closes the connection once the handshake is done, reading nothing after it")
    func validationClosedAfterHandshake() throws {
        let outcome = try Self.connect(name: "shop.example.test", alpn: ["acme-tls/1"], challenges: try Self.pendingChallenge())
        #expect(outcome == Outcome(commonName: "validation", alpn: "acme-tls/1", serverOpen: false, markedAsValidation: true))
    }

    @Test("the same name without acme-tls/1, and acme-tls/1 for a name with no pending challenge, get the listener's certificate and the connection stays open")
    func otherConnectionsGoOn() throws {
        let challenges = try Self.pendingChallenge()
        #expect(try Self.connect(name: "shop.example.test", alpn: ["h2", "http/1.1"], challenges: challenges)
            == Outcome(commonName: "listener", alpn: "h2", serverOpen: true, markedAsValidation: false))
        #expect(try Self.connect(name: "other.example.test", alpn: ["acme-tls/1"], challenges: challenges)
            == Outcome(commonName: "listener", alpn: nil, serverOpen: true, markedAsValidation: false))
    }

    @Test("a ClientHello is read before TLS only while a tls-alpn-01 answer is pending: set, then removed")
    func pendingOnlyWhileAnswerIsUp() throws {
        let challenges = try Self.pendingChallenge()
        #expect(challenges.hasTLSALPN01)
        challenges.removeTLSALPN01(name: "shop.example.test")
        #expect(!challenges.hasTLSALPN01)
        #expect(challenges.tlsALPN01(name: "shop.example.test") == nil)
    }
}
