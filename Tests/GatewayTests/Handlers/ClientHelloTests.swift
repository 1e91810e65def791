import NIOCore
import NIOEmbedded
import NIOSSL
import Testing
@testable import Gateway

@Suite("Reading a ClientHello before TLS (SNI and ALPN), for tls-alpn-01", .timeLimit(.minutes(2)))
struct ClientHelloTests {
    /// The ClientHello BoringSSL sends for `name` offering `alpn`, as bytes on the wire.
    static func realClientHello(name: String?, alpn: [String]) throws -> ByteBuffer {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.applicationProtocols = alpn
        configuration.certificateVerification = .none
        let handler = try NIOSSLClientHandler(context: NIOSSLContext(configuration: configuration), serverHostname: name)
        let channel = EmbeddedChannel(handler: handler)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 443)).wait()
        var hello = ByteBuffer()
        while var part = try channel.readOutbound(as: ByteBuffer.self) { hello.writeBuffer(&part) }
        _ = try? channel.finish()
        return hello
    }

    /// A ClientHello written out by hand (RFC 8446 §4.1.2): TLS 1.2 legacy version, a zero
    /// random, no session id, one suite, null compression, then SNI "a.test" and ALPN
    /// ["acme-tls/1"].
    static let handMade: [UInt8] = {
        let sni: [UInt8] = [0x00, 0x00, 0x00, 0x0b, 0x00, 0x09, 0x00, 0x00, 0x06] + Array("a.test".utf8)
        let alpn: [UInt8] = [0x00, 0x10, 0x00, 0x0d, 0x00, 0x0b, 0x0a] + Array("acme-tls/1".utf8)
        let extensions = sni + alpn
        let body: [UInt8] = [0x03, 0x03] + Array(repeating: 0, count: 32) + [0x00] + [0x00, 0x02, 0x13, 0x01] + [0x01, 0x00]
            + [UInt8(extensions.count >> 8), UInt8(extensions.count & 0xff)] + extensions
        let handshake: [UInt8] = [0x01, 0x00, UInt8(body.count >> 8), UInt8(body.count & 0xff)] + body
        return [0x16, 0x03, 0x01, UInt8(handshake.count >> 8), UInt8(handshake.count & 0xff)] + handshake
    }()

    @Test("a hand-made ClientHello gives its SNI and ALPN; every shorter prefix is incomplete")
    func handMade() {
        #expect(ClientHello.parse(ByteBuffer(bytes: Self.handMade)) == .clientHello(ClientHello(serverName: "a.test", alpn: ["acme-tls/1"])))
        for length in 0..<Self.handMade.count {
            #expect(ClientHello.parse(ByteBuffer(bytes: Self.handMade.prefix(length))) == .incomplete, "prefix of \(length) bytes")
        }
    }

    @Test("BoringSSL's own ClientHello: the name and the offered protocols in order; none when not sent")
    func realHello() throws {
        #expect(ClientHello.parse(try Self.realClientHello(name: "shop.example.test", alpn: ["acme-tls/1"]))
            == .clientHello(ClientHello(serverName: "shop.example.test", alpn: ["acme-tls/1"])))
        #expect(ClientHello.parse(try Self.realClientHello(name: "x.test", alpn: ["h2", "http/1.1"]))
            == .clientHello(ClientHello(serverName: "x.test", alpn: ["h2", "http/1.1"])))
        #expect(ClientHello.parse(try Self.realClientHello(name: nil, alpn: [])) == .clientHello(ClientHello(serverName: nil, alpn: [])))
    }

    @Test("a ClientHello split over two records is reassembled")
    func fragmented() {
        let handshake = Array(Self.handMade.dropFirst(5))
        let first = Array(handshake.prefix(20)), second = Array(handshake.dropFirst(20))
        let records = [0x16, 0x03, 0x01, 0x00, UInt8(first.count)] + first + [0x16, 0x03, 0x01, 0x00, UInt8(second.count)] + second
        #expect(ClientHello.parse(ByteBuffer(bytes: records)) == .clientHello(ClientHello(serverName: "a.test", alpn: ["acme-tls/1"])))
    }

    @Test("plain HTTP, an SSLv2-style hello, a record that is not a handshake, and a lying length are not ClientHellos")
    func notHellos() {
        #expect(ClientHello.parse(ByteBuffer(string: "GET / HTTP/1.1\r\n\r\n")) == .notClientHello)
        #expect(ClientHello.parse(ByteBuffer(bytes: [0x80, 0x2e, 0x01, 0x03, 0x01, 0x00])) == .notClientHello)
        #expect(ClientHello.parse(ByteBuffer(bytes: [0x17, 0x03, 0x03, 0x00, 0x01, 0x00])) == .notClientHello)
        var lying = Self.handMade
        lying[5 + 4 + 2 + 32] = 0xff  // a session id "255 bytes long" runs past the body
        #expect(ClientHello.parse(ByteBuffer(bytes: lying)) == .notClientHello)
    }
}
