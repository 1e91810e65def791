import Dispatch
import Foundation
import Synchronization

/// Leaves signed on the fly by issuer entries: cached (bounded, least recently used),
/// signed at most once at a time per (CA, name), off the caller's thread, under a
/// concurrency limit and a token-bucket rate limit on new signatures.
public final class IssuedCertificateCache: Sendable {
    public struct Policy: Sendable {
        /// Leaves kept (default 10,000); the least recently used goes first.
        public var capacity = 10_000
        /// Signatures running at once (default: one less than the cores, at least one, so
        /// a burst of new names leaves a core to the event loops).
        public var maxConcurrentSignings = max(1, ProcessInfo.processInfo.activeProcessorCount - 1)
        /// Signatures waiting for a free slot; past this, new names are refused (`cache_full`).
        public var maxQueuedSignings = 1_000
        /// New signatures per second, sustained, and the burst allowed above it.
        public var signingsPerSecond: Double = 200
        public var burst: Double = 400
        /// A leaf unused this long is dropped by ``sweep(now:)``.
        public var idleTimeout: TimeInterval = 24 * 3_600

        public init() {}
    }

    /// Why no leaf was signed.
    public enum Refusal: String, Error, Sendable, CaseIterable {
        case notAllowed = "not_allowed"
        case rateLimited = "rate_limited"
        case cacheFull = "cache_full"
    }

    /// A cached leaf: its TLS objects and what the cache decides by. The parsed certificate
    /// and key it was made from are not kept (a cached leaf is most of the memory of a local
    /// CA serving many names: the TLS objects are what a handshake needs).
    public final class CachedLeaf: Sendable {
        /// The leaf's DER (the chain after it is its CA's).
        public let leafDER: [UInt8]
        public let notBefore: Date
        public let notAfter: Date
        public let servingMaterial: (any Sendable)?

        init(leaf: IssuedLeaf, servingMaterial: (any Sendable)?) {
            leafDER = leaf.chain[0].der
            notBefore = leaf.notBefore
            notAfter = leaf.notAfter
            self.servingMaterial = servingMaterial
        }

        /// Whether less than a third of the leaf's life remains at `now` (time to re-sign).
        public func needsRenewal(at now: Date) -> Bool {
            notAfter.timeIntervalSince(now) < notAfter.timeIntervalSince(notBefore) / 3
        }
    }

    public enum Lookup: Sendable {
        /// Served now from the cache.
        case hit(CachedLeaf)
        /// Being signed; the completion runs when it is (on a signing thread).
        case pending
        case refused(Refusal)
    }

    /// What happened, for metrics and logs.
    public enum Event: Sendable {
        case issued(name: String, seconds: Double)
        case refused(Refusal)
        case failed(name: String, error: String)
    }

    public typealias Completion = @Sendable (Result<CachedLeaf, any Error>) -> Void

    typealias Key = IssuedLeafKey

    private struct State {
        var leaves: LRUList<Key, CachedLeaf>
        var inFlight: [Key: [Completion]] = [:]
        var running = 0
        var queue: [(Key, LocalAuthority, LocalAuthority.Subject, Date)] = []
        var tokens: Double
        var lastRefill: Date?
        var policy: Policy
    }

    /// The limits in force (see ``replacePolicy(_:)``).
    public var policy: Policy { state.withLock { $0.policy } }
    private let state: Mutex<State>
    private let servingMaterialFactory: ServingMaterialFactory?
    private let onEvent: @Sendable (Event) -> Void
    private let persistence: (any IssuedLeafPersistence)?
    private let signingQueue = DispatchQueue(label: "certgate.issuing", attributes: .concurrent)

    public init(
        policy: Policy = Policy(), servingMaterialFactory: ServingMaterialFactory? = nil,
        persistence: (any IssuedLeafPersistence)? = nil,
        onEvent: @escaping @Sendable (Event) -> Void = { _ in }
    ) {
        self.servingMaterialFactory = servingMaterialFactory
        self.persistence = persistence
        self.onEvent = onEvent
        self.state = Mutex(State(leaves: LRUList(capacity: max(1, policy.capacity)), tokens: policy.burst, policy: policy))
    }

    public var count: Int { state.withLock { $0.leaves.count } }

    /// The leaf for `subject` from `authority`: from the cache, or signed now in the
    /// background (`completion` then runs, on a signing thread). A leaf with less than a
    /// third of its life left is served while its replacement is signed.
    public func leaf(from authority: LocalAuthority, for subject: LocalAuthority.Subject, now: Date, completion: @escaping Completion) -> Lookup {
        guard authority.allows(subject) else {
            onEvent(.refused(.notAllowed))
            return .refused(.notAllowed)
        }
        let key = Key(authority: authority.fingerprint, name: authority.leafName(for: subject))
        let time = now.timeIntervalSinceReferenceDate
        enum Decision { case hit(CachedLeaf, renew: Bool), joined, start, queued, refused(Refusal) }
        let decision: Decision = state.withLock { state in
            if let cached = state.leaves.get(key, time: time), cached.notAfter > now {
                let renew = cached.needsRenewal(at: now) && state.inFlight[key] == nil && Self.takeToken(&state, now: now)
                if renew { state.inFlight[key] = [] }
                return .hit(cached, renew: renew)
            }
            if state.inFlight[key] != nil {
                state.inFlight[key]!.append(completion)
                return .joined
            }
            guard state.queue.count < state.policy.maxQueuedSignings else { return .refused(.cacheFull) }
            guard Self.takeToken(&state, now: now) else { return .refused(.rateLimited) }
            state.inFlight[key] = [completion]
            if state.running < state.policy.maxConcurrentSignings {
                state.running += 1
                return .start
            }
            state.queue.append((key, authority, subject, now))
            return .queued
        }
        switch decision {
        case .hit(let cached, let renew):
            if renew { startSigning(key: key, authority: authority, subject: subject, now: now, countsAgainstLimit: false) }
            return .hit(cached)
        case .joined, .queued:
            return .pending
        case .start:
            startSigning(key: key, authority: authority, subject: subject, now: now, countsAgainstLimit: true)
            return .pending
        case .refused(let refusal):
            onEvent(.refused(refusal))
            return .refused(refusal)
        }
    }

    /// Puts new limits in force at once (a reload of `issuing:`): a smaller capacity evicts
    /// the least recently used leaves (returned, and forgotten by `persistence`), tokens
    /// above the new burst are dropped, a higher concurrency starts queued signings now and
    /// a lower one takes effect as signings finish. Cached leaves otherwise stay.
    @discardableResult
    public func replacePolicy(_ policy: Policy) -> [IssuedLeafKey] {
        var starts: [(Key, LocalAuthority, LocalAuthority.Subject, Date)] = []
        let evicted: [Key] = state.withLock { state in
            state.policy = policy
            state.tokens = min(state.tokens, policy.burst)
            let evicted = state.leaves.resize(to: max(1, policy.capacity))
            while state.running < policy.maxConcurrentSignings, !state.queue.isEmpty {
                state.running += 1
                starts.append(state.queue.removeFirst())
            }
            return evicted
        }
        if !evicted.isEmpty { persistence?.dropped(evicted) }
        for (key, authority, subject, now) in starts {
            startSigning(key: key, authority: authority, subject: subject, now: now, countsAgainstLimit: true)
        }
        return evicted
    }

    /// Drops leaves that expired or were not used for `policy.idleTimeout`, and those of
    /// authorities not in `currentAuthorities` (a rotated or removed CA). Returns how many.
    @discardableResult
    public func sweep(now: Date, currentAuthorities: Set<[UInt8]>? = nil) -> Int {
        let time = now.timeIntervalSinceReferenceDate
        let removed = state.withLock { state in
            let idleTimeout = state.policy.idleTimeout
            return state.leaves.removeAll { key, cached, lastUsed in
                cached.notAfter <= now || time - lastUsed > idleTimeout
                    || (currentAuthorities.map { !$0.contains(key.authority) } ?? false)
            }
        }
        if !removed.isEmpty { persistence?.dropped(removed) }
        return removed.count
    }

    /// Puts stored leaves back (at start), for the CAs in `authorities` only. A leaf that
    /// expired, whose CA is gone, or that no longer parses is not restored; the keys of
    /// those are returned so the store can forget them. Restoring does not call
    /// `persistence`.
    public func restore(_ records: [IssuedLeafRecord], authorities: [LocalAuthority], now: Date) -> (restored: Int, discarded: [IssuedLeafKey]) {
        let byFingerprint = Dictionary(authorities.map { ($0.fingerprint, $0) }, uniquingKeysWith: { first, _ in first })
        var discarded: [IssuedLeafKey] = []
        var restored: [(Key, CachedLeaf)] = []
        for record in records {
            guard record.notAfter > now, let authority = byFingerprint[record.key.authority],
                  let cached = try? restoredLeaf(record, authority: authority) else {
                discarded.append(record.key)
                continue
            }
            restored.append((record.key, cached))
        }
        let time = now.timeIntervalSinceReferenceDate
        let evicted: [Key] = state.withLock { state in
            restored.compactMap { key, cached in state.leaves.set(key, cached, time: time)?.key }
        }
        return (restored.count - evicted.count, discarded + evicted)
    }

    private func restoredLeaf(_ record: IssuedLeafRecord, authority: LocalAuthority) throws -> CachedLeaf {
        guard let leaf = try PEMMaterialParser.certificates(fromPEM: record.certificatePEM).first else {
            throw PEMMaterialParser.Failure("no certificate")
        }
        let chain = [leaf] + authority.material.servedChain
        let key = try PEMMaterialParser.privateKey(fromPEM: record.keyPEM)
        let issued = IssuedLeaf(chain: chain, key: key, notBefore: leaf.certificate.notValidBefore, notAfter: leaf.certificate.notValidAfter)
        return CachedLeaf(leaf: issued, servingMaterial: try servingMaterialFactory?(ServingMaterialInput(chain: chain, keyBlock: key.block)))
    }

    private static func takeToken(_ state: inout State, now: Date) -> Bool {
        if let last = state.lastRefill {
            let elapsed = max(0, now.timeIntervalSince(last))
            state.tokens = min(state.policy.burst, state.tokens + elapsed * state.policy.signingsPerSecond)
        }
        state.lastRefill = now
        guard state.tokens >= 1 else { return false }
        state.tokens -= 1
        return true
    }

    /// Signs on the signing queue; hands the result to every waiter; starts the next queued.
    /// A renewal (`countsAgainstLimit: false`) does not take a concurrency slot.
    private func startSigning(key: Key, authority: LocalAuthority, subject: LocalAuthority.Subject, now: Date, countsAgainstLimit: Bool) {
        signingQueue.async { [self] in
            let started = Date()
            var signed: IssuedLeaf?
            let result: Result<CachedLeaf, any Error> = Result {
                let leaf = try authority.sign(subject, now: now)
                signed = leaf
                let material = try servingMaterialFactory?(ServingMaterialInput(chain: leaf.chain, keyBlock: leaf.key.block))
                return CachedLeaf(leaf: leaf, servingMaterial: material)
            }
            var next: (Key, LocalAuthority, LocalAuthority.Subject, Date)?
            var evicted: Key?
            let waiters: [Completion] = state.withLock { state in
                if case .success(let cached) = result {
                    evicted = state.leaves.set(key, cached, time: now.timeIntervalSinceReferenceDate)?.key
                }
                let waiting = state.inFlight.removeValue(forKey: key) ?? []
                if countsAgainstLimit {
                    // A lowered concurrency limit (a reload) takes effect as signings finish.
                    if state.queue.isEmpty || state.running > state.policy.maxConcurrentSignings {
                        state.running -= 1
                    } else {
                        next = state.queue.removeFirst()
                    }
                }
                return waiting
            }
            if case .success = result, let leaf = signed, let persistence {
                if let evicted { persistence.dropped([evicted]) }
                persistence.saved(IssuedLeafRecord(
                    key: key, certificatePEM: leaf.chain[0].pem, keyPEM: leaf.key.pem, notAfter: leaf.notAfter))
            }
            signed = nil
            switch result {
            case .success: onEvent(.issued(name: key.name, seconds: Date().timeIntervalSince(started)))
            case .failure(let error):
                // In certgate's words: a library's error text may quote what it was given.
                onEvent(.failed(name: key.name, error: (error as? IssueError)?.description ?? "the leaf or its TLS objects could not be made"))
            }
            for waiter in waiters { waiter(result) }
            if let (nextKey, nextAuthority, nextSubject, nextNow) = next {
                startSigning(key: nextKey, authority: nextAuthority, subject: nextSubject, now: nextNow, countsAgainstLimit: true)
            }
        }
    }
}
