import Foundation

/// `on_demand:` — the bounds of on-demand ACME (entries with `on_demand: true`, DESIGN
/// "On demand"): how long a first handshake waits, how many orders run and how fast new
/// ones start (in all and per client address), how many certificates are kept in memory,
/// when an unused one stops being renewed, and how `ask` answers and failures are remembered.
public struct OnDemandConfiguration: Sendable, Decodable, Equatable {
    /// How long a handshake for a name with no certificate yet waits for its order; past
    /// it the handshake gets the default (the order goes on; a later handshake gets it).
    public var handshakeWait: ConfigDuration
    /// Orders running at once (others wait for a slot while their handshake waits).
    public var maxConcurrent: Int
    /// New orders per minute, sustained (a token bucket), and the burst above it.
    public var ordersPerMinute: Int
    public var burst: Int
    /// New orders one client address may cause per hour.
    public var perClientPerHour: Int
    /// On-demand certificates kept ready to serve in memory; the least recently served goes
    /// first (it stays in the state and is loaded again, without an order, when asked for).
    public var maxCertificates: Int
    /// A certificate not served this long is no longer renewed, and is removed from the
    /// state once it has expired.
    public var idleTimeout: ConfigDuration
    /// How long the `ask` endpoint has to answer (no answer in time is a no).
    public var askTimeout: ConfigDuration
    /// How long an `ask` yes is remembered.
    public var askCache: ConfigDuration
    /// How long a refused or failed name is refused without trying again at first; it
    /// doubles with each further failure, up to a day.
    public var failureBackoff: ConfigDuration

    public init() {
        handshakeWait = ConfigDuration(.seconds(10), text: "10s")
        maxConcurrent = 4
        ordersPerMinute = 10
        burst = 20
        perClientPerHour = 20
        maxCertificates = 10_000
        idleTimeout = ConfigDuration(.seconds(30 * 86_400), text: "30d")
        askTimeout = ConfigDuration(.seconds(3), text: "3s")
        askCache = ConfigDuration(.seconds(600), text: "10m")
        failureBackoff = ConfigDuration(.seconds(300), text: "5m")
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case handshakeWait = "handshake_wait"
        case maxConcurrent = "max_concurrent"
        case ordersPerMinute = "orders_per_minute"
        case burst
        case perClientPerHour = "per_client_per_hour"
        case maxCertificates = "max_certificates"
        case idleTimeout = "idle_timeout"
        case askTimeout = "ask_timeout"
        case askCache = "ask_cache"
        case failureBackoff = "failure_backoff"
    }

    public init(from decoder: any Decoder) throws {
        let defaults = OnDemandConfiguration()
        let container = try decoder.container(keyedBy: CodingKeys.self)
        handshakeWait = try container.decodeIfPresent(ConfigDuration.self, forKey: .handshakeWait) ?? defaults.handshakeWait
        maxConcurrent = try container.decodeIfPresent(Int.self, forKey: .maxConcurrent) ?? defaults.maxConcurrent
        ordersPerMinute = try container.decodeIfPresent(Int.self, forKey: .ordersPerMinute) ?? defaults.ordersPerMinute
        burst = try container.decodeIfPresent(Int.self, forKey: .burst) ?? defaults.burst
        perClientPerHour = try container.decodeIfPresent(Int.self, forKey: .perClientPerHour) ?? defaults.perClientPerHour
        maxCertificates = try container.decodeIfPresent(Int.self, forKey: .maxCertificates) ?? defaults.maxCertificates
        idleTimeout = try container.decodeIfPresent(ConfigDuration.self, forKey: .idleTimeout) ?? defaults.idleTimeout
        askTimeout = try container.decodeIfPresent(ConfigDuration.self, forKey: .askTimeout) ?? defaults.askTimeout
        askCache = try container.decodeIfPresent(ConfigDuration.self, forKey: .askCache) ?? defaults.askCache
        failureBackoff = try container.decodeIfPresent(ConfigDuration.self, forKey: .failureBackoff) ?? defaults.failureBackoff
    }

    /// The limits these settings make (see ``OnDemandLimits``).
    var limits: OnDemandLimits.Policy {
        OnDemandLimits.Policy(
            maxConcurrent: maxConcurrent, ordersPerMinute: Double(ordersPerMinute), burst: Double(burst),
            perClientPerHour: perClientPerHour, failureBackoff: Self.seconds(failureBackoff))
    }

    static func seconds(_ value: ConfigDuration) -> TimeInterval {
        let (seconds, attoseconds) = value.duration.components
        return TimeInterval(seconds) + TimeInterval(attoseconds) / 1e18
    }
}
