import CertificateKit

/// `control:` — the gRPC control socket.
public struct ControlConfiguration: Sendable, Decodable, Equatable {
    /// The Unix socket path, relative to the config file's folder.
    public var socket: String
    /// Permission bits of the socket file (octal text, default "0600").
    public var mode: Int
    /// Largest request accepted; larger gets RESOURCE_EXHAUSTED (default 64 MiB).
    public var maxMessageBytes: Int

    enum CodingKeys: String, CodingKey, CaseIterable {
        case socket, mode
        case maxMessageBytes = "max_message_bytes"
    }

    public init(socket: String, mode: Int = 0o600, maxMessageBytes: Int = 64 << 20) {
        self.socket = socket
        self.mode = mode
        self.maxMessageBytes = maxMessageBytes
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        socket = try container.decode(String.self, forKey: .socket)
        let modeText = try container.decodeIfPresent(String.self, forKey: .mode) ?? "0600"
        guard let mode = Int(modeText, radix: 8), (0...0o777).contains(mode) else {
            throw DecodingError.dataCorruptedError(forKey: .mode, in: container, debugDescription: "\(QuotedValue.quote(modeText)) is not an octal file mode like \"0600\"")
        }
        self.mode = mode
        maxMessageBytes = try container.decodeIfPresent(Int.self, forKey: .maxMessageBytes) ?? 64 << 20
    }
}
