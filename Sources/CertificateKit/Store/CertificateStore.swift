import Atomics
import Foundation

/// One committed certificate set with its generation number.
public final class CertificateSnapshot: AtomicReference, Sendable {
    public let set: CertificateSet
    /// Starts at 0 for the initial set; every swap adds one.
    public let generation: UInt64
    public let committedAt: Date

    public init(set: CertificateSet, generation: UInt64, committedAt: Date) {
        self.set = set
        self.generation = generation
        self.committedAt = committedAt
    }
}

/// Holds the current certificate set. Handshakes read it with one atomic load and
/// see the old set or the new one, never a mix; writers swap whole sets.
public final class CertificateStore: Sendable {
    private let slot: ManagedAtomic<CertificateSnapshot>
    private let writerLock = NSLock()

    public init(initial: CertificateSet = .empty, generation: UInt64 = 0, now: Date = Date()) {
        slot = ManagedAtomic(CertificateSnapshot(set: initial, generation: generation, committedAt: now))
    }

    /// The current snapshot: one atomic load.
    public var current: CertificateSnapshot {
        slot.load(ordering: .acquiring)
    }

    /// Installs `set` as generation current + 1 and returns the new snapshot.
    /// With `expectedGeneration`, swaps only if the current generation is that one
    /// (compare-and-swap for control planes) and returns `nil` otherwise.
    @discardableResult
    public func swap(to set: CertificateSet, expectedGeneration: UInt64? = nil, now: Date = Date()) -> CertificateSnapshot? {
        writerLock.lock()
        defer { writerLock.unlock() }
        let old = slot.load(ordering: .acquiring)
        if let expectedGeneration, expectedGeneration != old.generation { return nil }
        let new = CertificateSnapshot(set: set, generation: old.generation + 1, committedAt: now)
        slot.store(new, ordering: .releasing)
        return new
    }
}
