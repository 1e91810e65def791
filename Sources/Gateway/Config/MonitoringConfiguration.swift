/// `metrics:` — where the Prometheus endpoint listens (path `/metrics`); absent → none.
public struct MetricsConfiguration: Sendable, Decodable, Equatable {
    public var listen: HostAndPort
}

/// `validity:` — how often the validity monitor looks at every entry.
public struct ValidityConfiguration: Sendable, Decodable, Equatable {
    public var interval: ConfigDuration

    public static let defaultInterval = ConfigDuration(.seconds(3_600), text: "1h")

    public init(interval: ConfigDuration = ValidityConfiguration.defaultInterval) {
        self.interval = interval
    }

    enum CodingKeys: String, CodingKey { case interval }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        interval = try container.decodeIfPresent(ConfigDuration.self, forKey: .interval) ?? Self.defaultInterval
    }
}
