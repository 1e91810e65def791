/// `metrics:` — where the Prometheus endpoint listens (path `/metrics`); absent → none.
public struct MetricsConfiguration: Sendable, Decodable, Equatable {
    public var listen: HostAndPort

    enum CodingKeys: String, CodingKey, CaseIterable { case listen }
}

/// `validity:` — how often the validity monitor looks at every entry.
public struct ValidityConfiguration: Sendable, Decodable, Equatable {
    public var interval: ConfigDuration
    /// Told of every change of an entry's validity state.
    public var notify: [NotifierConfiguration]

    public static let defaultInterval = ConfigDuration(.seconds(3_600), text: "1h")

    public init(interval: ConfigDuration = ValidityConfiguration.defaultInterval, notify: [NotifierConfiguration] = []) {
        self.interval = interval
        self.notify = notify
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case interval, notify }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        interval = try container.decodeIfPresent(ConfigDuration.self, forKey: .interval) ?? Self.defaultInterval
        notify = try container.decodeIfPresent([NotifierConfiguration].self, forKey: .notify) ?? []
    }
}
