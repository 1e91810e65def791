import CertificateKit
import CertificateKitNIO
import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization

/// The `sslContextCallback` of every listener: picks the certificate for one handshake
/// from the store's current set, on the event loop, with no allocation beyond NIOSSL's
/// own promise. An entry's NIOSSL objects are made at its first handshake (tens of
/// microseconds, once) and kept; every later handshake takes them under one uncontended lock.
final class CertificateSelector: Sendable {
    /// Why a handshake got no certificate.
    struct NoCertificate: Error, CustomStringConvertible {
        let reason: String
        var description: String { reason }
    }

    private let store: CertificateKit.CertificateStore
    private let issued: IssuedCertificateCache
    /// Certificates obtained for names no entry claims (on-demand ACME entries), if any.
    private let onDemand: OnDemandCertificates?
    private let now: @Sendable () -> Date
    /// One store reader per event loop thread; each reader is only touched by its own
    /// thread (that is what the thread-specific variable guarantees).
    nonisolated(unsafe) private let readers = ThreadSpecificVariable<CertificateStoreReader>()
    /// The connection whose ClientHello is being read on this thread.
    let currentFacts = ThreadSpecificVariable<HandshakeFacts>()

    init(
        store: CertificateKit.CertificateStore, issued: IssuedCertificateCache, onDemand: OnDemandCertificates? = nil,
        now: @escaping @Sendable () -> Date
    ) {
        self.store = store
        self.issued = issued
        self.onDemand = onDemand
        self.now = now
    }

    /// After a swap: every event loop's reader takes the new snapshot, so that a loop with no
    /// handshake since does not hold the previous set (and its TLS objects) in memory.
    func releasePreviousSnapshots(on group: any EventLoopGroup) {
        for loop in group.makeIterator() {
            loop.execute { [self] in readers.currentValue?.catchUp() }
        }
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
            // One snapshot for the match and its fallback: never two generations in one answer.
            let set = reader.current.set
            let match = set.lookup(serverName: values.serverHostname, localAddress: facts?.localAddress)
            // A name no entry claims by its own names: an on-demand entry's patterns come
            // before a catch-all issuer and the default.
            if let onDemand, match?.kind != .exact, match?.kind != .wildcard, match?.kind != .ip,
               let name = match?.serverName ?? values.serverHostname.flatMap(ServerName.normalize), onDemand.mayTake(name),
               serveOnDemand(onDemand, name: name, fallback: match, set: set, facts: facts, counters: counters, promise: promise) {
                return
            }
            serve(match, set: set, facts: facts, counters: counters, promise: promise)
        }
    }

    /// The answer for `match` (the set's, or none).
    private func serve(
        _ match: CertificateMatch?, set: CertificateSet, facts: HandshakeFacts?, counters: GatewayMetrics.ListenerCounters,
        promise: EventLoopPromise<NIOSSLContextConfigurationOverride>
    ) {
        guard let match else {
            counters.record(nil)
            facts?.refusal = "no certificate for this name and no default"
            promise.fail(NoCertificate(reason: "no certificate for this name and no default"))
            return
        }
        facts?.serverName = match.serverName
        facts?.matchKind = match.kind
        facts?.entryName = match.entry.name
        if match.entry.kind == .issuer {
            serveIssued(match: match, facts: facts, fallback: set.defaultEntry, counters: counters, promise: promise)
            return
        }
        // Every set the gateway builds has NIOSSL material (NIOServingMaterial.factory);
        // making it can still fail at the first handshake (out of memory).
        guard let override = try? match.entry.nioServingMaterial?.contextOverride() else {
            let reason = "entry '\(match.entry.name)': the TLS library refused its certificate or key at this handshake"
            counters.record(nil)
            facts?.refusal = reason
            promise.fail(NoCertificate(reason: reason))
            return
        }
        counters.record(match.kind)
        promise.succeed(override)
    }

    /// An on-demand entry's pattern takes `name`: its certificate now, or when its lookup or
    /// order ends — at most `handshake_wait` later, after which `fallback` answers. Returns
    /// false when no on-demand entry takes the name (the caller serves `fallback`).
    private func serveOnDemand(
        _ onDemand: OnDemandCertificates, name: ServerName, fallback: CertificateMatch?, set: CertificateSet, facts: HandshakeFacts?,
        counters: GatewayMetrics.ListenerCounters, promise: EventLoopPromise<NIOSSLContextConfigurationOverride>
    ) -> Bool {
        let loop = promise.futureResult.eventLoop
        let once = OnDemandWait()
        let client = facts?.remoteAddress.flatMap(HandshakeFacts.ipAddress(of:))
        let lookup = onDemand.lookup(name, client: client) { [self] served in
            guard once.claim() else { return }
            once.cancelTimeout()
            loop.execute { [self] in
                self.answerOnDemand(served, name: name, fallback: fallback, set: set, facts: facts, counters: counters, promise: promise)
            }
        }
        switch lookup {
        case .notMatched:
            return false
        case .hit(let served):
            answerOnDemand(served, name: name, fallback: fallback, set: set, facts: facts, counters: counters, promise: promise)
        case .refused:
            facts?.serverName = name
            serve(fallback, set: set, facts: facts, counters: counters, promise: promise)
        case .pending:
            let scheduled = loop.scheduleTask(in: TimeAmount(onDemand.handshakeWait)) { [self] in
                guard once.claim() else { return }
                facts?.serverName = name
                self.serve(fallback, set: set, facts: facts, counters: counters, promise: promise)
            }
            once.setTimeout(scheduled)
        }
        return true
    }

    /// Serves a certificate obtained on demand, or `fallback` when there is none.
    private func answerOnDemand(
        _ served: OnDemandCertificates.Served?, name: ServerName, fallback: CertificateMatch?, set: CertificateSet,
        facts: HandshakeFacts?, counters: GatewayMetrics.ListenerCounters, promise: EventLoopPromise<NIOSSLContextConfigurationOverride>
    ) {
        guard let served, let override = try? served.material.contextOverride() else {
            facts?.serverName = name
            serve(fallback, set: set, facts: facts, counters: counters, promise: promise)
            return
        }
        facts?.serverName = name
        facts?.matchKind = .onDemand
        facts?.entryName = served.entry
        counters.record(.onDemand)
        promise.succeed(override)
    }

    /// An issuer entry matched: serve its cached leaf for the name (or, without SNI, the
    /// local address), or sign one off the event loop and complete the promise from there.
    /// A refused name falls back to a static default, else the handshake fails.
    private func serveIssued(
        match: CertificateMatch, facts: HandshakeFacts?, fallback: CertificateEntry?,
        counters: GatewayMetrics.ListenerCounters, promise: EventLoopPromise<NIOSSLContextConfigurationOverride>
    ) {
        let authority = LocalAuthority(entry: match.entry)
        let subject: LocalAuthority.Subject
        if let name = match.serverName {
            subject = .name(name)
        } else if let address = facts?.localAddress {
            subject = .address(address)
        } else {
            refuse(reason: "no server name and no local address to sign for", fallback: fallback, facts: facts, counters: counters, promise: promise)
            return
        }
        let lookup = issued.leaf(from: authority, for: subject, now: now()) { result in
            switch result {
            case .success(let cached):
                if let material = cached.servingMaterial as? NIOServingMaterial, let override = try? material.contextOverride() {
                    counters.record(nil, issued: true)
                    promise.succeed(override)
                } else {
                    counters.record(nil)
                    promise.fail(NoCertificate(reason: "the signed leaf for \(subject) has no TLS objects"))
                }
            case .failure:
                // The library's error is not quoted here; the cache reports the failure, and it is logged.
                counters.record(nil)
                promise.fail(NoCertificate(reason: "signing a leaf for \(subject) failed"))
            }
        }
        switch lookup {
        case .hit(let cached):
            guard let material = cached.servingMaterial as? NIOServingMaterial, let override = try? material.contextOverride() else {
                refuse(reason: "the cached leaf for \(subject) has no TLS objects", fallback: fallback, facts: facts, counters: counters, promise: promise)
                return
            }
            counters.record(nil, issued: true)
            promise.succeed(override)
        case .pending:
            break
        case .refused(let refusal):
            refuse(reason: "issuer '\(match.entry.name)' refused \(subject): \(refusal.rawValue)", fallback: fallback, facts: facts, counters: counters, promise: promise)
        }
    }

    private func refuse(
        reason: String, fallback: CertificateEntry?, facts: HandshakeFacts?,
        counters: GatewayMetrics.ListenerCounters, promise: EventLoopPromise<NIOSSLContextConfigurationOverride>
    ) {
        if let fallback, fallback.kind == .static, let override = try? fallback.nioServingMaterial?.contextOverride() {
            facts?.entryName = fallback.name
            facts?.matchKind = .default
            counters.record(.default)
            promise.succeed(override)
            return
        }
        facts?.refusal = reason
        counters.record(nil)
        promise.fail(NoCertificate(reason: reason))
    }
}

/// One handshake waiting for an on-demand certificate: answered once, by whichever comes
/// first — the certificate (or its refusal) or the wait running out.
private final class OnDemandWait: Sendable {
    private let done = Atomic<Bool>(false)
    private let timeout = Mutex<Scheduled<Void>?>(nil)

    /// True for the first caller only.
    func claim() -> Bool {
        !done.exchange(true, ordering: .acquiringAndReleasing)
    }

    func setTimeout(_ scheduled: Scheduled<Void>) {
        timeout.withLock { $0 = scheduled }
    }

    func cancelTimeout() {
        timeout.withLock { $0?.cancel() }
    }
}
