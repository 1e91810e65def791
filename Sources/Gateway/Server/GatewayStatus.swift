import Foundation

/// What `GetStatus` (and `certgate ctl status`) reports about the running gateway.
public struct GatewayStatus: Sendable, Equatable {
    public struct Listener: Sendable, Equatable {
        public var name: String
        /// The bound address (`[IPv4]127.0.0.1/127.0.0.1:8443`), or the configured one
        /// before binding.
        public var address: String
    }

    public var generation: UInt64
    public var certificates: Int
    /// Leaves signed on the fly and held in the cache.
    public var issuedCached: Int
    public var listeners: [Listener]
    /// When and by what the served set was committed.
    public var lastUpdate: Date
    public var lastUpdateSource: UpdateSource
    /// With `shared_state`: the node's name, the fleet's generation, the connection.
    public var sharedState: FleetMember.Status? = nil
    /// On-demand ACME: entries, certificates stored and in memory, orders running, limits.
    var onDemand: OnDemandCertificates.Status? = nil
}
