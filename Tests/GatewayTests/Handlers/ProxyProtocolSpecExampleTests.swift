@testable import Gateway
import NIOCore
import Testing

/// `ProxyProtocolHeader` against the examples and byte layouts of HAProxy's PROXY protocol
/// specification, doc/proxy-protocol.txt (haproxy/haproxy repository, read for this file):
/// §2.1 (version 1: the example line "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n", the
/// longest TCP4/TCP6 lines of 56 and 104 characters, "PROXY UNKNOWN\r\n" of 15) and §2.2
/// (version 2: the 12-byte signature, ver/cmd 0x21, family 0x11/0x21, big-endian length,
/// "the length of the protocol header in bytes is always exactly 16 + this value", TLVs
/// type/length_hi/length_lo/value with PP2_TYPE_ALPN 0x01 and PP2_TYPE_AUTHORITY 0x02).
/// Every expected byte is written out here from the spec, not taken from the code.
@Suite("PROXY protocol: the spec's examples", .timeLimit(.minutes(2)))
struct ProxyProtocolSpecExampleTests {
    /// §2.2: "\x0D \x0A \x0D \x0A \x00 \x0D \x0A \x51 \x55 \x49 \x54 \x0A"
    static let signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]

    static let ffff = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"

    @Test("v1: the spec's example line for 192.168.0.1:56324 → 192.168.0.11:443")
    func v1SpecExample() throws {
        let line = ProxyProtocolHeader.v1(
            source: try SocketAddress(ipAddress: "192.168.0.1", port: 56_324),
            destination: try SocketAddress(ipAddress: "192.168.0.11", port: 443))
        #expect(line == "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n")
        // "PROXY" = 50 52 4F 58 59, " " = 20, "TCP4" = 54 43 50 34, and the line ends with CRLF 0D 0A.
        #expect(Array(line.utf8.prefix(11)) == [0x50, 0x52, 0x4F, 0x58, 0x59, 0x20, 0x54, 0x43, 0x50, 0x34, 0x20])
        #expect(Array(line.utf8.suffix(2)) == [0x0D, 0x0A])
    }

    @Test("v1: the longest TCP/IPv4 line, 56 characters")
    func v1LongestTCP4() throws {
        let line = ProxyProtocolHeader.v1(
            source: try SocketAddress(ipAddress: "255.255.255.255", port: 65_535),
            destination: try SocketAddress(ipAddress: "255.255.255.255", port: 65_535))
        #expect(line == "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n")
        #expect(line.utf8.count == 56)
    }

    @Test("v1: the longest TCP/IPv6 line (ffff:f...f:ffff twice, ports 65535), 104 characters")
    func v1LongestTCP6() throws {
        let line = ProxyProtocolHeader.v1(
            source: try SocketAddress(ipAddress: Self.ffff, port: 65_535),
            destination: try SocketAddress(ipAddress: Self.ffff, port: 65_535))
        #expect(line == "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n")
        #expect(line.utf8.count == 104)
    }

    @Test("v1: no heading zeroes in addresses or ports")
    func v1NoHeadingZeroes() throws {
        let line = ProxyProtocolHeader.v1(
            source: try SocketAddress(ipAddress: "10.0.0.1", port: 80),
            destination: try SocketAddress(ipAddress: "10.0.10.100", port: 8))
        #expect(line == "PROXY TCP4 10.0.0.1 10.0.10.100 80 8\r\n")
    }

    @Test("v1: the short UNKNOWN form, 15 characters, when the addresses are unknown or of different families")
    func v1Unknown() throws {
        #expect(ProxyProtocolHeader.v1(source: nil, destination: nil) == "PROXY UNKNOWN\r\n")
        #expect(ProxyProtocolHeader.v1(source: nil, destination: nil).utf8.count == 15)
        #expect(ProxyProtocolHeader.v1(
            source: try SocketAddress(ipAddress: "192.168.0.1", port: 56_324),
            destination: try SocketAddress(ipAddress: "::1", port: 443)) == "PROXY UNKNOWN\r\n")
    }

    @Test("v2: the spec's example connection over TCP/IPv4: ver/cmd 0x21, family 0x11, length 12, 28 bytes in all")
    func v2SpecExampleIPv4() throws {
        let header = ProxyProtocolHeader.v2(
            source: try SocketAddress(ipAddress: "192.168.0.1", port: 56_324),
            destination: try SocketAddress(ipAddress: "192.168.0.11", port: 443),
            authority: nil, alpn: nil)
        let expected: [UInt8] = [
            0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,  // signature
            0x21,  // version 2, command PROXY
            0x11,  // AF_INET, STREAM
            0x00, 0x0C,  // 2*4 + 2*2 = 12 address bytes
            0xC0, 0xA8, 0x00, 0x01,  // 192.168.0.1
            0xC0, 0xA8, 0x00, 0x0B,  // 192.168.0.11
            0xDC, 0x04,  // 56324
            0x01, 0xBB,  // 443
        ]
        #expect(header == expected)
        #expect(header.count == 16 + 12)
    }

    @Test("v2: the longest TCP/IPv6 connection: family 0x21, length 36, all-ones addresses and ports")
    func v2IPv6AllOnes() throws {
        let header = ProxyProtocolHeader.v2(
            source: try SocketAddress(ipAddress: Self.ffff, port: 65_535),
            destination: try SocketAddress(ipAddress: Self.ffff, port: 65_535),
            authority: nil, alpn: nil)
        let expected: [UInt8] = Self.signature
            + [0x21, 0x21, 0x00, 0x24]  // v2 PROXY, AF_INET6 STREAM, 2*16 + 2*2 = 36
            + [UInt8](repeating: 0xFF, count: 16) + [UInt8](repeating: 0xFF, count: 16)
            + [0xFF, 0xFF, 0xFF, 0xFF]
        #expect(header == expected)
        #expect(header.count == 16 + 36)
    }

    @Test("v2: the first 13 bytes are what the spec tells receivers to look for (\\x0D\\x0A\\x0D\\x0A\\x00\\x0D\\x0A\\x51\\x55\\x49\\x54\\x0A\\x2_)")
    func v2Detection() throws {
        let header = ProxyProtocolHeader.v2(
            source: try SocketAddress(ipAddress: "192.168.0.1", port: 1), destination: try SocketAddress(ipAddress: "192.168.0.11", port: 2),
            authority: nil, alpn: nil)
        #expect(Array(header.prefix(12)) == [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A])
        #expect(header[12] >> 4 == 0x2)  // version in the high nibble
        #expect(header[12] & 0x0F == 0x1)  // PROXY command in the low nibble
    }

    @Test("v2 TLVs: PP2_TYPE_ALPN (0x01) then PP2_TYPE_AUTHORITY (0x02), each type, length_hi, length_lo, value")
    func v2TLVs() throws {
        let header = ProxyProtocolHeader.v2(
            source: try SocketAddress(ipAddress: "192.168.0.1", port: 56_324),
            destination: try SocketAddress(ipAddress: "192.168.0.11", port: 443),
            authority: "example.com", alpn: "http/1.1")
        let expected: [UInt8] = Self.signature + [0x21, 0x11]
            + [0x00, 0x25]  // 12 address bytes + ALPN TLV (3 + 8) + authority TLV (3 + 11) = 37
            + [0xC0, 0xA8, 0x00, 0x01, 0xC0, 0xA8, 0x00, 0x0B, 0xDC, 0x04, 0x01, 0xBB]
            + [0x01, 0x00, 0x08, 0x68, 0x74, 0x74, 0x70, 0x2F, 0x31, 0x2E, 0x31]  // "http/1.1"
            + [0x02, 0x00, 0x0B, 0x65, 0x78, 0x61, 0x6D, 0x70, 0x6C, 0x65, 0x2E, 0x63, 0x6F, 0x6D]  // "example.com"
        #expect(header == expected)
    }

    @Test("v2 lengths are big-endian 16-bit: an authority of 300 bytes gives TLV length 0x01 0x2C and header length 0x01 0x3B")
    func v2BigEndianLengths() throws {
        let authority = String(repeating: "a", count: 300)
        let header = ProxyProtocolHeader.v2(
            source: try SocketAddress(ipAddress: "192.168.0.1", port: 56_324),
            destination: try SocketAddress(ipAddress: "192.168.0.11", port: 443),
            authority: authority, alpn: nil)
        // 12 address bytes + 3 + 300 = 315 = 0x013B.
        let expected: [UInt8] = Self.signature + [0x21, 0x11, 0x01, 0x3B]
            + [0xC0, 0xA8, 0x00, 0x01, 0xC0, 0xA8, 0x00, 0x0B, 0xDC, 0x04, 0x01, 0xBB]
            + [0x02, 0x01, 0x2C] + [UInt8](repeating: 0x61, count: 300)
        #expect(header == expected)
        #expect(header.count == 16 + 315)
    }

    @Test("v2 with unknown addresses: LOCAL (0x20), AF_UNSPEC (0x00), no address block, length 0")
    func v2Local() {
        #expect(ProxyProtocolHeader.v2(source: nil, destination: nil, authority: nil, alpn: nil)
            == [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, 0x20, 0x00, 0x00, 0x00])
    }
}
