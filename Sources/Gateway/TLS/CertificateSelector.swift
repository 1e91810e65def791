import CertificateKit
import CertificateKitNIO
import Logging
import NIOCore
import NIOPosix
import NIOSSL

/// The `sslContextCallback` of every listener: picks the certificate for one handshake
/// from the store's current set, on the event loop, with no allocation beyond NIOSSL's
/// own promise (the NIOSSL objects of each entry were made when its set was built).
final class CertificateSelector: Sendable {
    /// Why a handshake got no certificate.
    struct NoCertificate: Error, CustomStringConvertible {
        let reason: String
        var description: String { reason }
    }

    private let store: CertificateKit.CertificateStore
    /// One store reader per event loop thread; each reader is only touched by its own
    /// thread (that is what the thread-specific variable guarantees).
    nonisolated(unsafe) private let readers = ThreadSpecificVariable<CertificateStoreReader>()
    /// The connection whose ClientHello is being read on this thread.
    let currentFacts = ThreadSpecificVariable<HandshakeFacts>()

    init(store: CertificateKit.CertificateStore) {
        self.store = store
    }

    /// The callback for `TLSConfiguration.sslContextCallback`.
    func callback(counters: GatewayMetrics.ListenerCounters) -> NIOSSLContextCallback {
        { [self] values, promise in
            let facts = currentFacts.currentValue
            let reader: CertificateStoreReader
            if let existing = readers.currentValue {
                reader = existing
            } else {
                reader = store.makeReader()
                readers.currentValue = reader
            }
            facts?.requestedName = values.serverHostname
            guard let match = reader.lookup(serverName: values.serverHostname, localAddress: facts?.localAddress) else {
                counters.record(nil)
                facts?.refusal = "no certificate for this name and no default"
                promise.fail(NoCertificate(reason: "no certificate for this name and no default"))
                return
            }
            facts?.serverName = match.serverName
            facts?.matchKind = match.kind
            facts?.entryName = match.entry.name
            guard match.entry.kind == .static, let material = match.entry.nioServingMaterial else {
                counters.record(nil)
                let reason = match.entry.kind == .issuer
                    ? "entry '\(match.entry.name)' is an issuer; signing leaves on the fly is not available in this version"
                    : "entry '\(match.entry.name)' has no TLS objects"
                facts?.refusal = reason
                promise.fail(NoCertificate(reason: reason))
                return
            }
            counters.record(match.kind)
            promise.succeed(material.contextOverride)
        }
    }
}
