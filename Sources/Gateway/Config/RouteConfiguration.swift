/// One `routes:` item: which served names it takes and what it does with the plaintext.
public struct RouteConfiguration: Hashable, Sendable, Decodable {
    public enum ProxyProtocolVersion: String, Hashable, Sendable, Decodable, CaseIterable {
        case v1
        case v2

        public init(from decoder: any Decoder) throws {
            self = try ConfigEnum.decode(from: decoder)
        }
    }

    /// The built-in responder's answer; `{sni}` in the body or a header is replaced by
    /// the served name (or the empty string without SNI).
    public struct Response: Hashable, Sendable, Decodable {
        public var status: Int
        public var headers: [String: String]
        public var body: String

        public init(status: Int = 200, headers: [String: String] = [:], body: String = "") {
            self.status = status
            self.headers = headers
            self.body = body
        }

        enum CodingKeys: String, CodingKey, CaseIterable { case status, headers, body }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            status = try container.decodeIfPresent(Int.self, forKey: .status) ?? 200
            headers = try container.decodeIfPresent([String: String].self, forKey: .headers) ?? [:]
            body = try container.decodeIfPresent(String.self, forKey: .body) ?? ""
        }
    }

    public enum Action: Hashable, Sendable {
        case upstream(HostAndPort, proxyProtocol: ProxyProtocolVersion?, connectTimeout: ConfigDuration)
        case respond(Response)
    }

    /// `api.example.test`, `*.apps.example.test`, or `*` (every name, and no SNI).
    public var serverNames: [String]
    public var action: Action

    public static let defaultConnectTimeout = ConfigDuration(.seconds(5), text: "5s")

    public init(serverNames: [String], action: Action) {
        self.serverNames = serverNames
        self.action = action
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case serverNames = "server_names"
        case upstream, respond
        case proxyProtocol = "proxy_protocol"
        case connectTimeout = "connect_timeout"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        serverNames = try container.decode([String].self, forKey: .serverNames)
        let upstream = try container.decodeIfPresent(HostAndPort.self, forKey: .upstream)
        let respond = try container.decodeIfPresent(Response.self, forKey: .respond)
        switch (upstream, respond) {
        case (let upstream?, nil):
            action = .upstream(
                upstream,
                proxyProtocol: try container.decodeIfPresent(ProxyProtocolVersion.self, forKey: .proxyProtocol),
                connectTimeout: try container.decodeIfPresent(ConfigDuration.self, forKey: .connectTimeout) ?? Self.defaultConnectTimeout)
        case (nil, let respond?):
            action = .respond(respond)
        case (nil, nil):
            throw DecodingError.keyNotFound(CodingKeys.upstream, .init(
                codingPath: container.codingPath, debugDescription: "a route needs upstream or respond"))
        case (.some, .some):
            throw DecodingError.dataCorrupted(.init(
                codingPath: container.codingPath + [CodingKeys.respond], debugDescription: "a route has either upstream or respond, not both"))
        }
    }
}
