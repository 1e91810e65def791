@testable import Gateway
import NIOCore
import Testing

/// The PROXY protocol headers byte for byte, against HAProxy's proxy-protocol.txt (§2.1 text,
/// §2.2 binary: signature, version/command, family, length, addresses, ports, TLVs).
@Suite("PROXY protocol headers", .timeLimit(.minutes(2)))
struct ProxyProtocolHeaderTests {
    static let signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]

    @Test("v2 over IPv6: addresses, ports, then PP2_TYPE_ALPN and PP2_TYPE_AUTHORITY")
    func v2IPv6() throws {
        let source = try SocketAddress(ipAddress: "2001:db8::1", port: 56_324)
        let destination = try SocketAddress(ipAddress: "2001:db8::2", port: 443)
        let header = ProxyProtocolHeader.v2(source: source, destination: destination, authority: "a.test", alpn: "h2")
        // 36 address bytes + ALPN TLV (3 + 2) + authority TLV (3 + 6) = 50.
        let expected: [UInt8] = Self.signature + [0x21, 0x21, 0x00, 50]
            + [0x20, 0x01, 0x0D, 0xB8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01]
            + [0x20, 0x01, 0x0D, 0xB8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02]
            + [0xDC, 0x04, 0x01, 0xBB]
            + [0x01, 0x00, 0x02] + Array("h2".utf8)
            + [0x02, 0x00, 0x06] + Array("a.test".utf8)
        #expect(header == expected)
    }

    @Test("v2 over IPv4 without ALPN or a name carries the addresses alone")
    func v2IPv4Bare() throws {
        let source = try SocketAddress(ipAddress: "192.0.2.10", port: 1_234)
        let destination = try SocketAddress(ipAddress: "198.51.100.7", port: 8_443)
        let header = ProxyProtocolHeader.v2(source: source, destination: destination, authority: nil, alpn: "")
        #expect(header == Self.signature + [0x21, 0x11, 0x00, 12, 192, 0, 2, 10, 198, 51, 100, 7, 0x04, 0xD2, 0x20, 0xFB])
    }

    @Test("v2 with unknown or mixed-family addresses is LOCAL with no address block")
    func v2Local() throws {
        #expect(ProxyProtocolHeader.v2(source: nil, destination: nil, authority: nil, alpn: nil) == Self.signature + [0x20, 0x00, 0x00, 0x00])
        let mixed = ProxyProtocolHeader.v2(
            source: try SocketAddress(ipAddress: "192.0.2.10", port: 1), destination: try SocketAddress(ipAddress: "::1", port: 2),
            authority: "a.test", alpn: nil)
        #expect(mixed == Self.signature + [0x20, 0x00, 0x00, 9, 0x02, 0x00, 0x06] + Array("a.test".utf8))
    }

    @Test("v1 is one text line: TCP4, TCP6, or UNKNOWN")
    func v1() throws {
        #expect(ProxyProtocolHeader.v1(
            source: try SocketAddress(ipAddress: "192.0.2.10", port: 1_234), destination: try SocketAddress(ipAddress: "198.51.100.7", port: 443))
            == "PROXY TCP4 192.0.2.10 198.51.100.7 1234 443\r\n")
        #expect(ProxyProtocolHeader.v1(
            source: try SocketAddress(ipAddress: "2001:db8::1", port: 56_324), destination: try SocketAddress(ipAddress: "2001:db8::2", port: 443))
            == "PROXY TCP6 2001:db8::1 2001:db8::2 56324 443\r\n")
        #expect(ProxyProtocolHeader.v1(source: nil, destination: nil) == "PROXY UNKNOWN\r\n")
    }
}
