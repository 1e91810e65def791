import NIOCore

/// What certgate reads from a ClientHello before TLS starts (RFC 8446 §4.1.2; RFC 6066 §3
/// `server_name`; RFC 7301 §3.1 `application_layer_protocol_negotiation`): enough to answer
/// a `tls-alpn-01` challenge (RFC 8737) with its own certificate and ALPN, which NIOSSL's
/// certificate callback cannot (it sees the name only and cannot change the ALPN).
struct ClientHello: Equatable {
    /// The host_name of `server_name`, as sent (not normalized).
    var serverName: String?
    /// The protocols offered in ALPN, in the client's order.
    var alpn: [String]

    /// The outcome of reading the first bytes of a connection.
    enum Parse: Equatable {
        /// More bytes are needed.
        case incomplete
        /// Not a TLS ClientHello (or one certgate cannot read): let TLS itself answer.
        case notClientHello
        case clientHello(ClientHello)
    }

    /// The largest ClientHello read (a handshake message may span several records).
    static let maxLength = 64 * 1024

    /// Reads a ClientHello from the start of `bytes` (TLS records as received).
    static func parse(_ bytes: ByteBuffer) -> Parse {
        var records = bytes
        var handshake = ByteBuffer()
        // Reassemble the handshake message from consecutive handshake records.
        while true {
            guard records.readableBytes >= 5 else { return .incomplete }
            guard let type = records.readInteger(as: UInt8.self), type == 22,
                  let major = records.readInteger(as: UInt8.self), major == 3,
                  records.readInteger(as: UInt8.self) != nil,
                  let length = records.readInteger(as: UInt16.self), length > 0, length <= 16_384 + 256 else {
                return .notClientHello
            }
            guard var fragment = records.readSlice(length: Int(length)) else { return .incomplete }
            handshake.writeBuffer(&fragment)
            guard handshake.readableBytes >= 4 else { continue }
            let messageType = handshake.getInteger(at: handshake.readerIndex, as: UInt8.self)
            guard messageType == 1 else { return .notClientHello }
            let messageLength = Int(handshake.getInteger(at: handshake.readerIndex + 1, as: UInt8.self)!) << 16
                | Int(handshake.getInteger(at: handshake.readerIndex + 2, as: UInt16.self)!)
            guard messageLength <= maxLength else { return .notClientHello }
            if handshake.readableBytes >= 4 + messageLength {
                handshake.moveReaderIndex(forwardBy: 4)
                guard let body = handshake.readSlice(length: messageLength), let hello = Self.body(body) else {
                    return .notClientHello
                }
                return .clientHello(hello)
            }
        }
    }

    /// The ClientHello body: version, random, session id, cipher suites, compression
    /// methods, extensions.
    private static func body(_ buffer: ByteBuffer) -> ClientHello? {
        var body = buffer
        guard body.readSlice(length: 2 + 32) != nil,
              let sessionLength = body.readInteger(as: UInt8.self), body.readSlice(length: Int(sessionLength)) != nil,
              let suitesLength = body.readInteger(as: UInt16.self), body.readSlice(length: Int(suitesLength)) != nil,
              let compressionLength = body.readInteger(as: UInt8.self), body.readSlice(length: Int(compressionLength)) != nil else {
            return nil
        }
        var hello = ClientHello(serverName: nil, alpn: [])
        guard body.readableBytes > 0 else { return hello }  // no extensions
        guard let extensionsLength = body.readInteger(as: UInt16.self), var extensions = body.readSlice(length: Int(extensionsLength)) else {
            return nil
        }
        while extensions.readableBytes > 0 {
            guard let type = extensions.readInteger(as: UInt16.self), let length = extensions.readInteger(as: UInt16.self),
                  var data = extensions.readSlice(length: Int(length)) else { return nil }
            switch type {
            case 0:  // server_name
                guard let listLength = data.readInteger(as: UInt16.self), var list = data.readSlice(length: Int(listLength)) else { return nil }
                while list.readableBytes > 0 {
                    guard let nameType = list.readInteger(as: UInt8.self), let nameLength = list.readInteger(as: UInt16.self),
                          let name = list.readString(length: Int(nameLength)) else { return nil }
                    if nameType == 0, hello.serverName == nil { hello.serverName = name }
                }
            case 16:  // application_layer_protocol_negotiation
                guard let listLength = data.readInteger(as: UInt16.self), var list = data.readSlice(length: Int(listLength)) else { return nil }
                while list.readableBytes > 0 {
                    guard let protocolLength = list.readInteger(as: UInt8.self), protocolLength > 0,
                          let name = list.readString(length: Int(protocolLength)) else { return nil }
                    hello.alpn.append(name)
                }
            default:
                break
            }
        }
        return hello
    }
}
