import NIOCore

/// PROXY protocol headers (HAProxy's spec, v1 text and v2 binary) that tell an upstream
/// the client's address. The v2 header also carries the served name (PP2_TYPE_AUTHORITY)
/// and the negotiated ALPN protocol (PP2_TYPE_ALPN), as HAProxy sends them.
enum ProxyProtocolHeader {
    static let v2Signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]

    static func v1(source: SocketAddress?, destination: SocketAddress?) -> String {
        guard let source, let destination, let family = family(source, destination),
              let sourceIP = source.ipAddress, let destinationIP = destination.ipAddress,
              let sourcePort = source.port, let destinationPort = destination.port else {
            return "PROXY UNKNOWN\r\n"
        }
        return "PROXY \(family == .v4 ? "TCP4" : "TCP6") \(sourceIP) \(destinationIP) \(sourcePort) \(destinationPort)\r\n"
    }

    static func v2(source: SocketAddress?, destination: SocketAddress?, authority: String?, alpn: String?) -> [UInt8] {
        var addressBlock: [UInt8] = []
        var familyByte: UInt8 = 0x00  // AF_UNSPEC
        if let source, let destination, let family = family(source, destination),
           let sourcePort = source.port, let destinationPort = destination.port {
            switch (source, destination, family) {
            case (.v4(let s), .v4(let d), .v4):
                familyByte = 0x11  // TCP over IPv4
                addressBlock += withUnsafeBytes(of: s.address.sin_addr) { Array($0) }
                addressBlock += withUnsafeBytes(of: d.address.sin_addr) { Array($0) }
            case (.v6(let s), .v6(let d), .v6):
                familyByte = 0x21  // TCP over IPv6
                addressBlock += withUnsafeBytes(of: s.address.sin6_addr) { Array($0) }
                addressBlock += withUnsafeBytes(of: d.address.sin6_addr) { Array($0) }
            default:
                break
            }
            if familyByte != 0 {
                addressBlock += bigEndian16(sourcePort) + bigEndian16(destinationPort)
            }
        }
        var tlvs: [UInt8] = []
        if let alpn, !alpn.isEmpty { tlvs += tlv(type: 0x01, value: Array(alpn.utf8)) }
        if let authority, !authority.isEmpty { tlvs += tlv(type: 0x02, value: Array(authority.utf8)) }
        let body = addressBlock + tlvs
        // Version 2, command PROXY (or LOCAL when the addresses are unknown).
        let versionCommand: UInt8 = familyByte == 0 ? 0x20 : 0x21
        return v2Signature + [versionCommand, familyByte] + bigEndian16(body.count) + body
    }

    private enum Family { case v4, v6 }

    private static func family(_ source: SocketAddress, _ destination: SocketAddress) -> Family? {
        switch (source, destination) {
        case (.v4, .v4): return .v4
        case (.v6, .v6): return .v6
        default: return nil
        }
    }

    private static func tlv(type: UInt8, value: [UInt8]) -> [UInt8] {
        [type] + bigEndian16(value.count) + value
    }

    private static func bigEndian16(_ value: Int) -> [UInt8] {
        [UInt8(truncatingIfNeeded: value >> 8), UInt8(truncatingIfNeeded: value)]
    }
}
