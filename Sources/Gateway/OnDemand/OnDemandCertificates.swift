import CertificateKit
import CertificateKitNIO
import Foundation
import Logging
import Metrics
import Synchronization

/// Certificates obtained by ACME at the first handshake for a name (DESIGN "On demand";
/// Caddy's on-demand TLS, bounded): for a name no set entry claims and an on-demand entry's
/// patterns match, the certificate kept in memory is served; else the stored one; else,
/// when the entry's `ask` endpoint allows it and the bounds leave room, one is ordered while
/// the handshake waits up to `handshake_wait` (one order per name at a time, fleet-wide
/// with `shared_state`). A handshake that gets none by then is served what it would have
/// been without the on-demand entry (a catch-all issuer, the default, or nothing).
///
/// Bounds (`on_demand:`): orders running at once, new orders per minute (token bucket) and
/// per client address per hour, a negative cache of refused or failed names (backoff
/// doubling to a day), and at most `max_certificates` kept in memory, the least recently
/// served going first (it stays stored and comes back without an order). A loop renews the
/// certificates served within `idle_timeout`, records when each was last served, and removes
/// from the state those idle past it once they have expired.
final class OnDemandCertificates: Sendable {
    /// An on-demand entry: its name, configuration and patterns.
    struct Entry: Sendable, Equatable {
        let name: String
        let conf: CertificateConf
        let patterns: [NamePattern]
    }

    /// What a handshake gets now.
    enum Lookup {
        /// No on-demand entry takes the name.
        case notMatched
        /// Served from memory.
        case hit(Served)
        /// Being looked up or ordered; the completion runs when it is (nil: none).
        case pending
        case refused(OnDemandLimits.Refusal)
    }

    typealias Completion = @Sendable (Served?) -> Void

    /// A certificate ready to serve, with what listings and renewals need.
    final class Served: Sendable {
        let host: String
        let entry: String
        let notAfter: Date
        /// When it is renewed (at a handshake from then on, or the loop's next turn).
        let renewAt: Date
        let material: NIOServingMaterial

        init(host: String, entry: String, notAfter: Date, renewAt: Date, material: NIOServingMaterial) {
            self.host = host
            self.entry = entry
            self.notAfter = notAfter
            self.renewAt = renewAt
            self.material = material
        }
    }

    /// One stored certificate for listings (no key material).
    struct Listed: Sendable, Equatable {
        var host: String
        var entry: String
        var issuer: String
        var notBefore: Date
        var notAfter: Date
        var lastUsed: Date
        var renewAt: Date
        /// Kept in memory now (else loaded from the state at its next handshake).
        var cached: Bool
        /// Why its last renewal failed, while it backs off.
        var lastError: String?
    }

    /// Counts and limits for `ctl status`.
    struct Status: Sendable, Equatable {
        var entries: Int
        var stored: Int
        var cached: Int
        var ordering: Int
        var refusedNames: Int
        var configuration: OnDemandConfiguration

        /// Whether there is anything to say: an on-demand entry, or certificates it obtained.
        var inUse: Bool { entries > 0 || stored > 0 }
    }

    private struct State {
        var entries: [Entry] = []
        var configuration: OnDemandConfiguration
        var limits: OnDemandLimits
        var cache: LRUList<String, Served>
        /// Handshakes since the last flush to the state, by host.
        var used: [String: Date] = [:]
        var inFlight: [String: [Completion]] = [:]
        /// Hosts being renewed now (by a handshake's trigger or the loop).
        var renewing: Set<String> = []
        var running = 0
        var slotWaiters: [CheckedContinuation<Void, Never>] = []
        var stored = 0
    }

    private let state: Mutex<State>
    /// Whether any on-demand entry exists: read without the lock by every handshake that no
    /// set entry claims, so that a gateway with no on-demand entry does nothing more for them.
    private let hasEntries = Atomic<Bool>(false)
    private let store: (any OnDemandStore)?
    private let storeQueue = DispatchQueue(label: "certgate.on-demand.store")
    private let acme: any OnDemandOrdering
    private let ask: OnDemandAsk
    private let logger: Logger
    private let loop = Mutex<Task<Void, Never>?>(nil)
    /// How often the loop renews, flushes last-use times and removes idle certificates.
    static let sweepInterval: Duration = .seconds(60)
    /// Names looked up or ordered at once, at most: past it a new name gets the fallback
    /// (`cache_full`), so a flood of names cannot queue work without bound.
    static let maxNamesInFlight = 1_000

    init(configuration: OnDemandConfiguration, store: (any OnDemandStore)?, acme: any OnDemandOrdering, ask: OnDemandAsk, logger: Logger) {
        self.state = Mutex(State(
            configuration: configuration, limits: OnDemandLimits(policy: configuration.limits),
            cache: LRUList(capacity: configuration.maxCertificates)))
        self.store = store
        self.acme = acme
        self.ask = ask
        self.logger = logger
    }

    // MARK: - Configuration

    /// The on-demand entries in force (after each commit).
    func replaceEntries(_ confs: [String: CertificateConf]) {
        let entries = confs.sorted { $0.key < $1.key }.map { name, conf in
            Entry(name: name, conf: conf, patterns: (conf.domains?.items ?? []).compactMap { try? NamePattern.parse($0).get() })
        }
        state.withLock { $0.entries = entries }
        hasEntries.store(!entries.isEmpty, ordering: .releasing)
    }

    /// Whether an on-demand entry might take `name` (no lock, no allocation): false when there
    /// is none, or for a name of one label (no name a public CA issues for).
    func mayTake(_ name: ServerName) -> Bool {
        hasEntries.load(ordering: .acquiring) && name.text.utf8.contains(UInt8(ascii: "."))
    }

    /// The on-demand entry whose patterns take `text` now, if any (`ctl renew` of one name
    /// says which entry renews it).
    func entryTaking(_ text: String) -> String? {
        guard let name = ServerName.normalize(text), name.text.utf8.contains(UInt8(ascii: ".")) else { return nil }
        return state.withLock { Self.entry(for: name, in: $0.entries)?.name }
    }

    /// A reload's `on_demand:` section.
    func replaceConfiguration(_ configuration: OnDemandConfiguration) {
        state.withLock { state in
            state.configuration = configuration
            state.limits.replacePolicy(configuration.limits)
            _ = state.cache.resize(to: configuration.maxCertificates)
        }
        publishCounts()
        wakeSlotWaiters()
    }

    var handshakeWait: Duration { state.withLock { $0.configuration.handshakeWait.duration } }

    /// The entry whose patterns take `name`: an exact pattern before a wildcard before `*`,
    /// then by entry name.
    static func entry(for name: ServerName, in entries: [Entry]) -> Entry? {
        var best: (entry: Entry, rank: Int)?
        for entry in entries {
            for pattern in entry.patterns where pattern.matches(name) {
                let rank: Int
                switch pattern {
                case .exact: rank = 2
                case .wildcard: rank = 1
                default: rank = 0
                }
                if rank > (best?.rank ?? -1) { best = (entry, rank) }
            }
        }
        return best?.entry
    }

    // MARK: - Handshakes

    /// For one handshake, on its event loop: the certificate in memory, or a lookup/order
    /// started (or joined) whose end runs `completion`. Never blocks.
    func lookup(_ name: ServerName, client: IPAddress?, completion: @escaping Completion) -> Lookup {
        let now = Date()
        var start: Entry?
        var renew: Entry?
        guard mayTake(name) else { return .notMatched }
        let lookup = state.withLock { state -> Lookup in
            guard let entry = Self.entry(for: name, in: state.entries) else { return .notMatched }
            let host = name.text
            if let served = state.cache.get(host, time: now.timeIntervalSince1970) {
                if served.notAfter > now {
                    state.used[host] = now
                    // Due: renewed in the background while this one keeps serving.
                    if served.renewAt <= now, state.limits.refusal(of: host, now: now) == nil, state.renewing.insert(host).inserted {
                        renew = entry
                    }
                    return .hit(served)
                }
                state.cache.remove(host)
            }
            if state.inFlight[host] != nil {
                state.inFlight[host]!.append(completion)
                return .pending
            }
            if state.limits.refusal(of: host, now: now) != nil { return .refused(.failedRecently) }
            if state.inFlight.count >= Self.maxNamesInFlight { return .refused(.busy) }
            state.inFlight[host] = [completion]
            start = entry
            return .pending
        }
        if case .refused(let refusal) = lookup {
            Self.count(refusal)
            // Repeated for as long as the name backs off (or the gateway is busy): not a warning each time.
            logger.debug("a certificate on demand was refused; the name gets the fallback", metadata: [
                "name": "\(name.text)", "refusal": "\(refusal.rawValue)", "client": "\(client.map { "\($0)" } ?? "-")",
            ])
        }
        if let start {
            Task { await resolve(name.text, entry: start, client: client) }
        }
        if let renew {
            Task {
                await self.renew(name.text, entry: renew, record: nil)
                state.withLock { _ = $0.renewing.remove(name.text) }
            }
        }
        return lookup
    }

    /// The stored certificate, else a new order within the bounds; then every waiter is told.
    private func resolve(_ host: String, entry: Entry, client: IPAddress?) async {
        let stored: StoredOnDemandCertificate?
        do {
            stored = try await onStore { try $0.onDemandCertificate(host: host) }
        } catch {
            logger.error("the on-demand certificate cannot be read from the state", metadata: [
                "name": "\(host)", "reason": "\(describeStoreFailure(error))",
            ])
            finish(host, nil)
            return
        }
        if let stored, stored.certificate.notAfter > Date(), let served = served(stored.certificate, entry: stored.entry) {
            finish(host, served)
            return
        }
        // A new order: the client's hourly count first (cheapest), then the entry's ask
        // endpoint, then a token; nothing is counted for a name that is refused.
        let (configuration, clientAllowed) = state.withLock { ($0.configuration, $0.limits.clientAllowed(client, now: Date())) }
        guard clientAllowed else { return refuse(host, .clientRateLimited, reason: "the client caused \(configuration.perClientPerHour) new orders in the last hour", client: client) }
        if let endpoint = entry.conf.ask {
            if let reason = await ask.ask(
                endpoint, name: host, timeout: OnDemandConfiguration.seconds(configuration.askTimeout),
                remember: OnDemandConfiguration.seconds(configuration.askCache)) {
                return refuse(host, .askDenied, reason: reason, client: client, remember: true)
            }
        }
        if let refusal = state.withLock({ $0.limits.takeOrder(for: client, now: Date()) }) {
            let reason = refusal == .rateLimited
                ? "no new order allowed now (orders_per_minute \(configuration.ordersPerMinute), burst \(configuration.burst))"
                : "the client caused \(configuration.perClientPerHour) new orders in the last hour"
            return refuse(host, refusal, reason: reason, client: client)
        }
        await acquireSlot()
        // The entry may have changed (its patterns, its ask, its CA) or gone while the name
        // waited for a slot: what it no longer allows is not ordered.
        guard stillTakes(host, entry) else {
            releaseSlot()
            logger.info("the on-demand entry changed while the name waited for an order slot; not ordered", metadata: [
                "name": "\(host)", "entry": "\(entry.name)",
            ])
            finish(host, nil)
            return
        }
        let result = await order(host, entry: entry, previous: stored?.certificate)
        releaseSlot()
        switch result {
        case .success(let served):
            state.withLock { state in
                state.limits.succeeded(host)
                if stored == nil { state.stored += 1 }
            }
            finish(host, served)
        case .failure(let failure):
            state.withLock { $0.limits.failed(host, reason: failure.reason, now: Date()) }
            logger.error("obtaining a certificate on demand failed; the name gets the fallback meanwhile", metadata: [
                "name": "\(host)", "entry": "\(entry.name)", "reason": "\(failure.reason)",
            ])
            finish(host, nil)
        }
    }

    /// Whether `entry`, as it was, is still the one that takes `host`.
    private func stillTakes(_ host: String, _ entry: Entry) -> Bool {
        guard let name = ServerName.normalize(host) else { return false }
        return state.withLock { Self.entry(for: name, in: $0.entries) } == entry
    }

    private struct OrderFailure: Error {
        let reason: String
    }

    /// Orders (or, when another node of the fleet holds the name's lock, waits for its
    /// certificate to be stored, up to two minutes).
    private func order(_ host: String, entry: Entry, previous: StoredACMECertificate?) async -> Result<Served, OrderFailure> {
        let deadline = ContinuousClock.now + .seconds(120)
        while true {
            switch await acme.obtainOnDemand(host: host, entry: entry.name, conf: entry.conf, previous: previous, lastUsed: Date()) {
            case .obtained(let record, _):
                guard let served = served(record, entry: entry.name) else {
                    return .failure(OrderFailure(reason: "the certificate obtained cannot be served"))
                }
                return .success(served)
            case .failed(let reason):
                return .failure(OrderFailure(reason: reason))
            case .orderedElsewhere:
                guard ContinuousClock.now < deadline else {
                    return .failure(OrderFailure(reason: "another node of the fleet has been ordering it for two minutes"))
                }
                // A read that fails is tried again at the next look (the two minutes bound it).
                if let stored = try? await onStore({ try $0.onDemandCertificate(host: host) }), stored.certificate != previous,
                   stored.certificate.notAfter > Date(), let served = served(stored.certificate, entry: stored.entry) {
                    return .success(served)
                }
                try? await Task.sleep(for: .milliseconds(250))
            }
        }
    }

    /// A name not ordered: counted, logged (a refusal by `ask` as a warning, the limits' at
    /// info: a storm of names must not flood the log with warnings), its waiters told.
    private func refuse(_ host: String, _ refusal: OnDemandLimits.Refusal, reason: String, client: IPAddress?, remember: Bool = false) {
        if remember { state.withLock { $0.limits.failed(host, reason: reason, now: Date()) } }
        Self.count(refusal)
        let metadata: Logger.Metadata = [
            "name": "\(host)", "refusal": "\(refusal.rawValue)", "reason": "\(reason)", "client": "\(client.map { "\($0)" } ?? "-")",
        ]
        let message: Logger.Message = "a certificate on demand was refused; the name gets the fallback"
        if refusal == .askDenied {
            logger.warning(message, metadata: metadata)
        } else {
            logger.info(message, metadata: metadata)
        }
        finish(host, nil)
    }

    private static func count(_ refusal: OnDemandLimits.Refusal) {
        Counter(label: "certgate_issue_refused_total", dimensions: [("reason", refusal.rawValue)]).increment()
    }

    /// Keeps `served` (when there is one) and tells every handshake waiting for `host`.
    private func finish(_ host: String, _ served: Served?) {
        let now = Date()
        let waiters = state.withLock { state -> [Completion] in
            let waiters = state.inFlight.removeValue(forKey: host) ?? []
            if let served {
                _ = state.cache.set(host, served, time: now.timeIntervalSince1970)
                if !waiters.isEmpty { state.used[host] = now }
            }
            return waiters
        }
        if served != nil { publishCounts() }
        for waiter in waiters { waiter(served) }
    }

    /// `certgate_on_demand_certificates_cached` and `…_stored`, from the counts now.
    private func publishCounts() {
        let (cached, stored) = state.withLock { ($0.cache.count, max($0.stored, $0.cache.count)) }
        Gauge(label: "certgate_on_demand_certificates_cached").record(Double(cached))
        Gauge(label: "certgate_on_demand_certificates_stored").record(Double(stored))
    }

    /// A stored certificate made ready to serve: its chain and key parse, the key is the
    /// leaf's, the leaf names the host and is still valid; nil (logged) otherwise.
    private func served(_ certificate: StoredACMECertificate, entry: String) -> Served? {
        let host = certificate.name
        func unusable(_ reason: String) -> Served? {
            logger.error("a stored on-demand certificate cannot be served; it is ordered again", metadata: ["name": "\(host)", "reason": "\(reason)"])
            return nil
        }
        guard let chain = try? PEMMaterialParser.certificates(fromPEM: certificate.chainPEM), let leaf = chain.first else {
            return unusable("its chain does not parse")
        }
        guard let key = try? PEMMaterialParser.privateKey(fromPEM: certificate.keyPEM) else { return unusable("its key does not parse") }
        guard leaf.certificate.publicKey == key.key.publicKey else { return unusable("its key is not the leaf's") }
        guard let name = ServerName.normalize(host),
              leaf.certificate.dnsNames.contains(where: { (try? NamePattern.parse($0).get())?.matches(name) == true }) else {
            return unusable("the leaf does not name it")
        }
        guard let material = try? NIOServingMaterial.eager(chain: chain, key: key) else { return unusable("the TLS library refused it") }
        return Served(
            host: host, entry: entry, notAfter: leaf.certificate.notValidAfter, renewAt: acme.renewalTime(of: certificate, issuerName: certificate.issuer, now: Date()),
            material: material)
    }

    // MARK: - Order slots

    private func acquireSlot() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = state.withLock { state -> Bool in
                if state.running < state.configuration.maxConcurrent {
                    state.running += 1
                    return true
                }
                state.slotWaiters.append(continuation)
                return false
            }
            if now { continuation.resume() }
        }
    }

    private func releaseSlot() {
        let next = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.running -= 1
            guard state.running < state.configuration.maxConcurrent, !state.slotWaiters.isEmpty else { return nil }
            state.running += 1
            return state.slotWaiters.removeFirst()
        }
        next?.resume()
    }

    /// After `max_concurrent` grew: waiters take the new slots.
    private func wakeSlotWaiters() {
        let woken = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            var woken: [CheckedContinuation<Void, Never>] = []
            while state.running < state.configuration.maxConcurrent, !state.slotWaiters.isEmpty {
                state.running += 1
                woken.append(state.slotWaiters.removeFirst())
            }
            return woken
        }
        for continuation in woken { continuation.resume() }
    }

    // MARK: - Renewal, idle removal, listings

    func start() {
        let task = Task { [self] in
            while !Task.isCancelled {
                await sweep(now: Date())
                try? await Task.sleep(for: Self.sweepInterval)
            }
        }
        loop.withLock { $0 = task }
    }

    func stop() async {
        let task = loop.withLock { task -> Task<Void, Never>? in
            defer { task = nil }
            return task
        }
        task?.cancel()
        await task?.value
        await flushUse()
    }

    /// Writes the handshakes' last-use times to the state (merged back when it refuses).
    private func flushUse() async {
        let used = state.withLock { state -> [String: Date] in
            defer { state.used = [:] }
            return state.used
        }
        guard !used.isEmpty else { return }
        do {
            _ = try await onStore { store -> Bool? in
                try store.markOnDemandUsed(used)
                return true
            }
        } catch {
            state.withLock { state in state.used.merge(used) { max($0, $1) } }
            logger.warning("when on-demand certificates were last served cannot be recorded yet", metadata: ["reason": "\(describeStoreFailure(error))"])
        }
    }

    /// One turn: last-use times recorded; certificates served within `idle_timeout` and due
    /// renewed (one at a time, within `max_concurrent`); idle ones past their notAfter removed.
    func sweep(now: Date) async {
        await flushUse()
        let records: [StoredOnDemandCertificate]
        do {
            records = try await onStore { try $0.onDemandCertificates() } ?? []
        } catch {
            logger.warning("the on-demand certificates cannot be read for renewal", metadata: ["reason": "\(describeStoreFailure(error))"])
            return
        }
        let (idleTimeout, entries) = state.withLock { state -> (TimeInterval, [Entry]) in
            state.stored = records.count
            return (OnDemandConfiguration.seconds(state.configuration.idleTimeout), state.entries)
        }
        publishCounts()
        var expiredIdle: [String] = []
        for record in records where !Task.isCancelled {
            let host = record.host
            if now.timeIntervalSince(record.lastUsed) > idleTimeout {
                if record.certificate.notAfter <= now { expiredIdle.append(host) }
                continue  // not renewed
            }
            guard let name = ServerName.normalize(host), let entry = Self.entry(for: name, in: entries) else { continue }
            guard acme.renewalTime(of: record.certificate, issuerName: record.certificate.issuer, now: now) <= now,
                  state.withLock({ $0.limits.refusal(of: host, now: now) == nil && $0.renewing.insert(host).inserted }) else { continue }
            await renew(host, entry: entry, record: record)
            state.withLock { _ = $0.renewing.remove(host) }
        }
        guard !expiredIdle.isEmpty else { return }
        let removed = expiredIdle
        do {
            _ = try await onStore { store -> Bool? in
                try store.removeOnDemandCertificates(removed)
                return true
            }
            state.withLock { state in
                for host in expiredIdle { state.cache.remove(host) }
                state.stored -= expiredIdle.count
            }
            publishCounts()
            logger.notice("removed on-demand certificates not served within idle_timeout", metadata: ["count": "\(expiredIdle.count)"])
        } catch {
            logger.warning("idle on-demand certificates cannot be removed yet", metadata: ["reason": "\(describeStoreFailure(error))"])
        }
    }

    /// Renews `host`'s certificate (`record`: as stored, else read now) within the order
    /// slots; the one in memory keeps serving until the new one replaces it. A failure backs
    /// off (the negative cache, which new handshakes for the name do not consult while it is
    /// served from memory).
    private func renew(_ host: String, entry: Entry, record: StoredOnDemandCertificate?) async {
        var current = record
        if current == nil {
            do {
                current = try await onStore { try $0.onDemandCertificate(host: host) }
            } catch {
                logger.warning("an on-demand certificate due for renewal cannot be read yet", metadata: [
                    "name": "\(host)", "reason": "\(describeStoreFailure(error))",
                ])
                return
            }
        }
        guard let current else { return }
        await acquireSlot()
        let result = await order(host, entry: entry, previous: current.certificate)
        releaseSlot()
        switch result {
        case .success(let served):
            state.withLock { state in
                state.limits.succeeded(host)
                if state.cache.peek(host) != nil { _ = state.cache.set(host, served, time: Date().timeIntervalSince1970) }
            }
            logger.notice("certificate renewed on demand", metadata: ["name": "\(host)", "not_after": "\(served.notAfter)"])
        case .failure(let failure):
            state.withLock { $0.limits.failed(host, reason: failure.reason, now: Date()) }
            logger.error("renewing an on-demand certificate failed; the current one keeps serving", metadata: [
                "name": "\(host)", "reason": "\(failure.reason)",
            ])
        }
    }

    /// Every stored on-demand certificate, by host (no key material).
    func listing(now: Date = Date()) async throws -> [Listed] {
        let records = try await onStore { try $0.onDemandCertificates() } ?? []
        return state.withLock { state in
            state.stored = records.count
            return records.map { record in
                let certificate = record.certificate
                // The entry that takes the name now ("" when none does: it is not served).
                let entry = ServerName.normalize(record.host).flatMap { Self.entry(for: $0, in: state.entries) }?.name ?? ""
                return Listed(
                    host: record.host, entry: entry, issuer: certificate.issuer, notBefore: certificate.notBefore,
                    notAfter: certificate.notAfter, lastUsed: max(record.lastUsed, state.used[record.host] ?? .distantPast),
                    renewAt: acme.renewalTime(of: certificate, issuerName: certificate.issuer, now: now),
                    cached: state.cache.peek(record.host) != nil,
                    lastError: state.limits.refusal(of: record.host, now: now)?.reason)
            }
        }
    }

    var status: Status {
        state.withLock { state in
            Status(
                entries: state.entries.count, stored: max(state.stored, state.cache.count), cached: state.cache.count,
                ordering: state.inFlight.count, refusedNames: state.limits.remembered.values.filter { $0.until > Date() }.count,
                configuration: state.configuration)
        }
    }

    private func onStore<T: Sendable>(_ body: @escaping @Sendable (any OnDemandStore) throws -> T?) async throws -> T? {
        try await runBlocking(on: storeQueue, store: store, body)
    }
}
