/// One `listeners:` item: where to accept TLS and how.
public struct ListenerConfiguration: Hashable, Sendable, Decodable {
    public enum TLSVersion: String, Hashable, Sendable, Decodable, Comparable, CaseIterable {
        case tls1_0 = "tls1.0"
        case tls1_1 = "tls1.1"
        case tls1_2 = "tls1.2"
        case tls1_3 = "tls1.3"

        public init(from decoder: any Decoder) throws {
            self = try ConfigEnum.decode(from: decoder)
        }

        private var order: Int {
            switch self {
            case .tls1_0: return 0
            case .tls1_1: return 1
            case .tls1_2: return 2
            case .tls1_3: return 3
            }
        }

        public static func < (lhs: TLSVersion, rhs: TLSVersion) -> Bool { lhs.order < rhs.order }
    }

    public var name: String
    public var listen: HostAndPort
    /// Protocols offered in ALPN, in order of preference; none → no ALPN.
    public var alpn: [String]
    public var minTLSVersion: TLSVersion
    public var maxTLSVersion: TLSVersion
    /// A client that has not finished its handshake by then is disconnected.
    public var handshakeTimeout: ConfigDuration
    /// `tls` (default) or `http` (ACME http-01 answers and redirects to https).
    public var `protocol`: ListenerProtocol

    public static let defaultHandshakeTimeout = ConfigDuration(.seconds(10), text: "10s")

    public init(
        name: String, listen: HostAndPort, alpn: [String] = ["http/1.1"], minTLSVersion: TLSVersion = .tls1_2,
        maxTLSVersion: TLSVersion = .tls1_3, handshakeTimeout: ConfigDuration = ListenerConfiguration.defaultHandshakeTimeout,
        protocol: ListenerProtocol = .tls
    ) {
        self.protocol = `protocol`
        self.name = name
        self.listen = listen
        self.alpn = alpn
        self.minTLSVersion = minTLSVersion
        self.maxTLSVersion = maxTLSVersion
        self.handshakeTimeout = handshakeTimeout
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case name, listen, alpn
        case minTLSVersion = "min_tls_version"
        case maxTLSVersion = "max_tls_version"
        case handshakeTimeout = "handshake_timeout"
        case `protocol`
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        listen = try container.decode(HostAndPort.self, forKey: .listen)
        name = try container.decodeIfPresent(String.self, forKey: .name) ?? listen.description
        alpn = try container.decodeIfPresent([String].self, forKey: .alpn) ?? ["http/1.1"]
        minTLSVersion = try container.decodeIfPresent(TLSVersion.self, forKey: .minTLSVersion) ?? .tls1_2
        maxTLSVersion = try container.decodeIfPresent(TLSVersion.self, forKey: .maxTLSVersion) ?? .tls1_3
        handshakeTimeout = try container.decodeIfPresent(ConfigDuration.self, forKey: .handshakeTimeout) ?? Self.defaultHandshakeTimeout
        `protocol` = try container.decodeIfPresent(ListenerProtocol.self, forKey: .protocol) ?? .tls
    }
}
