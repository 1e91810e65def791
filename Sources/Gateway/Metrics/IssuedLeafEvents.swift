import CertificateKit
import CertificateKitNIO
import Logging

extension IssuedCertificateCache {
    /// The gateway's cache of issued leaves, with NIOSSL objects made at signing, leaves
    /// written through `persistence`, and each event counted (`certgate_issued_*`) and a
    /// failed signing logged.
    static func forGateway(
        policy: Policy, persistence: (any IssuedLeafPersistence)?, metrics: GatewayMetrics, logger: Logger
    ) -> IssuedCertificateCache {
        let holder = CacheCountHolder()
        let cache = IssuedCertificateCache(
            policy: policy, servingMaterialFactory: NIOServingMaterial.issuedLeafFactory(), persistence: persistence
        ) { event in
            metrics.record(event, cached: holder.count)
            if case .failed(let name, let reason) = event {
                logger.error("signing a leaf failed", metadata: ["name": "\(name)", "reason": "\(reason)"])
            }
        }
        holder.cache = cache
        return cache
    }
}

/// Lets the cache's event hook read the cache's size (the hook is made before the cache).
private final class CacheCountHolder: @unchecked Sendable {
    // Written once, before the cache can emit an event.
    var cache: IssuedCertificateCache?
    var count: Int { cache?.count ?? 0 }
}
