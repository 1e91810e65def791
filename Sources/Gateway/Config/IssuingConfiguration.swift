import CertificateKit
import Foundation

/// `issuing:` — the limits of on-the-fly signing by issuer (`is_ca`) entries.
public struct IssuingConfiguration: Sendable, Decodable, Equatable {
    /// Leaves cached (least recently used evicted first).
    public var cacheSize: Int
    /// Signatures running at once.
    public var maxConcurrent: Int
    /// Signatures waiting for a free slot; past this, new names are refused (`cache_full`).
    public var maxQueued: Int
    /// New signatures per second, sustained, and the burst above it.
    public var ratePerSecond: Double
    public var burst: Int
    /// A cached leaf unused this long is dropped.
    public var idleTimeout: ConfigDuration

    public init() {
        let defaults = IssuedCertificateCache.Policy()
        cacheSize = defaults.capacity
        maxConcurrent = defaults.maxConcurrentSignings
        maxQueued = defaults.maxQueuedSignings
        ratePerSecond = defaults.signingsPerSecond
        burst = Int(defaults.burst)
        idleTimeout = ConfigDuration(.seconds(Int64(defaults.idleTimeout)), text: "24h")
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case cacheSize = "cache_size"
        case maxConcurrent = "max_concurrent"
        case maxQueued = "max_queued"
        case ratePerSecond = "rate_per_second"
        case burst
        case idleTimeout = "idle_timeout"
    }

    public init(from decoder: any Decoder) throws {
        let defaults = IssuingConfiguration()
        let container = try decoder.container(keyedBy: CodingKeys.self)
        cacheSize = try container.decodeIfPresent(Int.self, forKey: .cacheSize) ?? defaults.cacheSize
        maxConcurrent = try container.decodeIfPresent(Int.self, forKey: .maxConcurrent) ?? defaults.maxConcurrent
        maxQueued = try container.decodeIfPresent(Int.self, forKey: .maxQueued) ?? defaults.maxQueued
        ratePerSecond = try container.decodeIfPresent(Double.self, forKey: .ratePerSecond) ?? defaults.ratePerSecond
        burst = try container.decodeIfPresent(Int.self, forKey: .burst) ?? defaults.burst
        idleTimeout = try container.decodeIfPresent(ConfigDuration.self, forKey: .idleTimeout) ?? defaults.idleTimeout
    }

    /// The cache policy these settings make.
    public var policy: IssuedCertificateCache.Policy {
        var policy = IssuedCertificateCache.Policy()
        policy.capacity = cacheSize
        policy.maxConcurrentSignings = maxConcurrent
        policy.maxQueuedSignings = maxQueued
        policy.signingsPerSecond = ratePerSecond
        policy.burst = Double(burst)
        policy.idleTimeout = TimeInterval(idleTimeout.duration.components.seconds)
        return policy
    }
}
