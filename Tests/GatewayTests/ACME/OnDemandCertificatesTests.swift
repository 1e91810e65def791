import AsyncHTTPClient
import CertificateKit
import CertificateTestSupport
import Foundation
import Logging
import NIOPosix
import Synchronization
import Testing
@testable import Gateway

/// On-demand certificates in a state held in memory, with a CA that signs at once.
private final class MemoryOnDemandStore: OnDemandStore {
    let records = Mutex<[String: StoredOnDemandCertificate]>([:])

    func onDemandCertificate(host: String) throws -> StoredOnDemandCertificate? { records.withLock { $0[host] } }
    func saveOnDemandCertificate(_ record: StoredOnDemandCertificate) throws { records.withLock { $0[record.host] = record } }
    func onDemandCertificates() throws -> [StoredOnDemandCertificate] { records.withLock { $0.values.sorted { $0.host < $1.host } } }
    func markOnDemandUsed(_ lastUsed: [String: Date]) throws {
        records.withLock { records in
            for (host, time) in lastUsed where records[host] != nil { records[host]!.lastUsed = max(records[host]!.lastUsed, time) }
        }
    }
    func removeOnDemandCertificates(_ hosts: [String]) throws { records.withLock { for host in hosts { $0[host] = nil } } }
}

/// Holds orders until opened.
private final class Gate: Sendable {
    private let state = Mutex<(open: Bool, waiting: [CheckedContinuation<Void, Never>])>((false, []))

    func wait() async {
        await withCheckedContinuation { continuation in
            let open = state.withLock { state in
                if !state.open { state.waiting.append(continuation) }
                return state.open
            }
            if open { continuation.resume() }
        }
    }

    func open() {
        for continuation in state.withLock({ state in state.open = true; defer { state.waiting = [] }; return state.waiting }) {
            continuation.resume()
        }
    }
}

/// Signs a 90-day leaf for the host at each order and stores it; renewal is due 30 days
/// before notAfter. Records the orders it was asked for; with a gate, an order waits for it.
private final class SigningCA: OnDemandOrdering {
    let authority = TestCertificate.authority(commonName: "on-demand unit CA")
    let store: MemoryOnDemandStore
    let ordered = Mutex<[String]>([])
    let gate: Gate?

    init(store: MemoryOnDemandStore, gate: Gate? = nil) {
        self.store = store
        self.gate = gate
    }

    func record(_ host: String, notBefore: Date, lastUsed: Date) -> StoredOnDemandCertificate {
        let leaf = authority.leaf(dnsNames: [host], notBefore: notBefore, notAfter: notBefore.addingTimeInterval(90 * 86_400))
        return StoredOnDemandCertificate(
            certificate: StoredACMECertificate(
                name: host, issuer: "test-ca", domains: [host], chainPEM: leaf.pem + authority.pem, keyPEM: leaf.key.pkcs8PEM,
                notBefore: leaf.certificate.notValidBefore, notAfter: leaf.certificate.notValidAfter, certificateURL: "https://ca.test/cert/1",
                obtainedAt: notBefore),
            entry: "customers", lastUsed: lastUsed)
    }

    func obtainOnDemand(host: String, entry: String, conf: CertificateConf, previous: StoredACMECertificate?, lastUsed: Date) async -> OnDemandOrder {
        ordered.withLock { $0.append(host) }
        await gate?.wait()
        let record = record(host, notBefore: Date().addingTimeInterval(-60), lastUsed: lastUsed)
        try? store.saveOnDemandCertificate(record)
        return .obtained(record.certificate, ordered: true)
    }

    func renewalTime(of stored: StoredACMECertificate, issuerName: String, now: Date) -> Date {
        stored.notAfter.addingTimeInterval(-30 * 86_400)
    }
}

@Suite("on-demand certificates: which entry takes a name, the memory bound, renewal and idle removal", .timeLimit(.minutes(2)))
struct OnDemandCertificatesTests {
    static func entries(_ confs: [String: String]) -> [OnDemandCertificates.Entry] {
        confs.sorted { $0.key < $1.key }.map { name, domains in
            OnDemandCertificates.Entry(
                name: name, conf: CertificateConf(domains: DomainList(commaSeparated: domains), acme: "ca", onDemand: true),
                patterns: DomainList(commaSeparated: domains).items.map { try! NamePattern.parse($0).get() })
        }
    }

    @Test("an exact pattern takes a name before a one-level wildcard, which takes it before '*', and between equals the entry that sorts first; a name no pattern takes has no entry")
    func entryPriority() {
        let entries = Self.entries(["any": "*", "shops": "*.shop.test", "flagship": "main.shop.test,other.test"])
        func entry(_ name: String) -> String? { OnDemandCertificates.entry(for: ServerName.normalize(name)!, in: entries)?.name }
        #expect(entry("main.shop.test") == "flagship")
        #expect(entry("other.test") == "flagship")
        #expect(entry("second.shop.test") == "shops")
        #expect(entry("deep.second.shop.test") == "any")
        #expect(entry("elsewhere.test") == "any")
        // Between equal patterns, the entry whose name sorts first.
        let twins = Self.entries(["b-shops": "*.shop.test", "a-shops": "*.shop.test"])
        #expect(OnDemandCertificates.entry(for: ServerName.normalize("x.shop.test")!, in: twins)?.name == "a-shops")
        let narrow = Self.entries(["shops": "*.shop.test"])
        #expect(OnDemandCertificates.entry(for: ServerName.normalize("shop.test")!, in: narrow) == nil)
        #expect(OnDemandCertificates.entry(for: ServerName.normalize("a.b.shop.test")!, in: narrow) == nil)
    }

    /// The component over `store` and `ca`, with `configuration`, its entry `customers: *.customers.test`.
    private static func make(
        _ store: MemoryOnDemandStore, _ ca: SigningCA, configuration: OnDemandConfiguration = OnDemandConfiguration(), client: HTTPClient
    ) -> OnDemandCertificates {
        let certificates = OnDemandCertificates(
            configuration: configuration, store: store, acme: ca, ask: OnDemandAsk(client: client), logger: Logger(label: "test"))
        certificates.replaceEntries(["customers": CertificateConf(domains: "*.customers.test", acme: "ca", onDemand: true)])
        return certificates
    }

    /// Looks `name` up and waits for the answer (the served certificate's host, or nil).
    private static func serve(_ name: String, _ certificates: OnDemandCertificates, client: IPAddress? = nil) async -> String?? {
        await withCheckedContinuation { continuation in
            let answered = Mutex(false)
            let lookup = certificates.lookup(ServerName.normalize(name)!, client: client) { served in
                if answered.withLock({ done in defer { done = true }; return !done }) { continuation.resume(returning: .some(served?.host)) }
            }
            switch lookup {
            case .notMatched: continuation.resume(returning: nil)
            case .hit(let served): continuation.resume(returning: .some(served.host))
            case .refused: continuation.resume(returning: .some(nil))
            case .pending: break
            }
        }
    }

    @Test("past max_certificates the least recently served certificate leaves memory, stays stored, and comes back at its next handshake without an order; a name of one label is never taken")
    func memoryBoundEvictsLeastRecentlyServed() async throws {
        let client = HTTPClient.shared  // never asked: the entry has no ask endpoint
        let store = MemoryOnDemandStore()
        let ca = SigningCA(store: store)
        var configuration = OnDemandConfiguration()
        configuration.maxCertificates = 2
        let certificates = Self.make(store, ca, configuration: configuration, client: client)

        #expect(await Self.serve("a.customers.test", certificates) == .some("a.customers.test"))
        #expect(await Self.serve("b.customers.test", certificates) == .some("b.customers.test"))
        #expect(await Self.serve("a.customers.test", certificates) == .some("a.customers.test"))  // a is now the more recent
        #expect(await Self.serve("c.customers.test", certificates) == .some("c.customers.test"))  // b leaves memory
        #expect(certificates.status.cached == 2)
        #expect(try store.onDemandCertificates().map(\.host) == ["a.customers.test", "b.customers.test", "c.customers.test"])
        #expect(await Self.serve("b.customers.test", certificates) == .some("b.customers.test"))
        #expect(ca.ordered.withLock { $0 } == ["a.customers.test", "b.customers.test", "c.customers.test"])
        // Not one of the entry's names: no entry takes it.
        #expect(await Self.serve("other.test", certificates) == nil)
        let listed = try await certificates.listing()
        #expect(listed.map(\.host) == ["a.customers.test", "b.customers.test", "c.customers.test"])
        #expect(listed.map(\.cached) == [false, true, true])
        #expect(listed.allSatisfy { $0.entry == "customers" && $0.issuer == "test-ca" })
        // A name of one label is never taken, not even by '*'.
        certificates.replaceEntries(["any": CertificateConf(domains: "*", acme: "ca", onDemand: true, ask: "http://127.0.0.1:1/ask")])
        #expect(await Self.serve("localhost", certificates) == nil)
    }

    @Test("a turn of the loop renews what was served within idle_timeout and is due, leaves the rest, and removes what is idle past it and expired; last handshakes are recorded in the state")
    func sweepRenewsUsedAndRemovesIdle() async throws {
        let client = HTTPClient.shared  // never asked: the entry has no ask endpoint
        let store = MemoryOnDemandStore()
        let ca = SigningCA(store: store)
        let certificates = Self.make(store, ca, client: client)
        let now = Date()
        let day: TimeInterval = 86_400
        // Used yesterday, issued 70 days ago: due (renewal 30 days before a 90-day notAfter).
        try store.saveOnDemandCertificate(ca.record("due.customers.test", notBefore: now - 70 * day, lastUsed: now - day))
        // Used yesterday, issued 10 days ago: not due.
        let fresh = ca.record("fresh.customers.test", notBefore: now - 10 * day, lastUsed: now - day)
        try store.saveOnDemandCertificate(fresh)
        // Not used for 40 days (idle_timeout 30d), issued 70 days ago: due, but not renewed; not expired: kept.
        let idle = ca.record("idle.customers.test", notBefore: now - 70 * day, lastUsed: now - 40 * day)
        try store.saveOnDemandCertificate(idle)
        // Not used for 100 days and expired: removed.
        try store.saveOnDemandCertificate(ca.record("gone.customers.test", notBefore: now - 100 * day, lastUsed: now - 100 * day))

        await certificates.sweep(now: now)
        #expect(ca.ordered.withLock { $0 } == ["due.customers.test"])
        let after = Dictionary(uniqueKeysWithValues: try store.onDemandCertificates().map { ($0.host, $0) })
        #expect(after.keys.sorted() == ["due.customers.test", "fresh.customers.test", "idle.customers.test"])
        #expect(after["due.customers.test"]!.certificate.notBefore > now - day)
        #expect(after["fresh.customers.test"] == fresh)
        #expect(after["idle.customers.test"] == idle)
        #expect(certificates.status.stored == 3)

        // A handshake for the idle one is recorded at the next turn: it is renewed then.
        #expect(await Self.serve("idle.customers.test", certificates) == .some("idle.customers.test"))
        await certificates.sweep(now: Date())
        #expect(try store.onDemandCertificate(host: "idle.customers.test")!.lastUsed > now - 60)
        #expect(ca.ordered.withLock { $0 } == ["due.customers.test", "idle.customers.test"])
    }

    @Test("a name waiting for an order slot whose entry is removed meanwhile is not ordered, and its handshake gets the fallback")
    func removedEntryIsNotOrdered() async throws {
        let store = MemoryOnDemandStore()
        let gate = Gate()
        let ca = SigningCA(store: store, gate: gate)
        var configuration = OnDemandConfiguration()
        configuration.maxConcurrent = 1
        let certificates = Self.make(store, ca, configuration: configuration, client: HTTPClient.shared)
        async let first = Self.serve("first.customers.test", certificates)
        // The first holds the only slot (its order waits at the gate); the second waits for the slot.
        // (Generous waits: on a loaded 2-core CI machine the cooperative pool can be busy for seconds.)
        #expect(try await eventually(timeout: .seconds(60)) { ca.ordered.withLock { $0 } == ["first.customers.test"] })
        async let second = Self.serve("second.customers.test", certificates)
        #expect(try await eventually(timeout: .seconds(60)) { certificates.status.ordering == 2 })
        certificates.replaceEntries([:])
        gate.open()
        #expect(await first == .some("first.customers.test"))
        #expect(await second == .some(nil))
        #expect(ca.ordered.withLock { $0 } == ["first.customers.test"])
    }

    @Test("a reload's on_demand: is in force at once: a smaller max_certificates lets the least recently served leave memory (they stay stored, and come back without an order), a larger max_concurrent starts the order that waited for a slot")
    func reloadedBoundsApplyAtOnce() async throws {
        let store = MemoryOnDemandStore()
        let ca = SigningCA(store: store)
        var configuration = OnDemandConfiguration()
        configuration.maxCertificates = 3
        let certificates = Self.make(store, ca, configuration: configuration, client: HTTPClient.shared)
        for name in ["a", "b", "c", "a"] {
            #expect(await Self.serve("\(name).customers.test", certificates) == .some("\(name).customers.test"))
        }
        #expect(certificates.status.cached == 3)
        configuration.maxCertificates = 1
        certificates.replaceConfiguration(configuration)
        #expect(certificates.status.cached == 1)
        let listed = try await certificates.listing()
        #expect(listed.map(\.host) == ["a.customers.test", "b.customers.test", "c.customers.test"])
        #expect(listed.map(\.cached) == [true, false, false])
        #expect(await Self.serve("c.customers.test", certificates) == .some("c.customers.test"))
        #expect(ca.ordered.withLock { $0 } == ["a.customers.test", "b.customers.test", "c.customers.test"])

        // max_concurrent 1: the second name waits for the slot the first holds (its order
        // waits at the gate); a reload to 2 starts it while the first still holds its slot.
        let gate = Gate()
        let gated = SigningCA(store: MemoryOnDemandStore(), gate: gate)
        var narrow = OnDemandConfiguration()
        narrow.maxConcurrent = 1
        let waiting = Self.make(gated.store, gated, configuration: narrow, client: HTTPClient.shared)
        async let first = Self.serve("first.customers.test", waiting)
        #expect(try await eventually(timeout: .seconds(60)) { gated.ordered.withLock { $0 } == ["first.customers.test"] })
        async let second = Self.serve("second.customers.test", waiting)
        #expect(try await eventually(timeout: .seconds(60)) { waiting.status.ordering == 2 })
        #expect(gated.ordered.withLock { $0 } == ["first.customers.test"])
        narrow.maxConcurrent = 2
        waiting.replaceConfiguration(narrow)
        #expect(try await eventually(timeout: .seconds(60)) { gated.ordered.withLock { $0 } == ["first.customers.test", "second.customers.test"] })
        gate.open()
        #expect(await first == .some("first.customers.test"))
        #expect(await second == .some("second.customers.test"))
    }

    @Test("an update's result counts the acme entries that are in no set (pending, on demand) as added, changed or removed, each once")
    func unservedEntriesAreCounted() {
        let shop = CertificateConf(domains: "*.shop.test", acme: "ca", onDemand: true)
        var outcome = CertificateUpdateOutcome(generation: 2, added: ["static"], changed: [], removed: [], errors: [], warnings: [], dryRun: false)
        UpdatePipeline.count(
            unservedBefore: ["shop": shop, "gone": CertificateConf(domains: "g.test", acme: "ca"), "static": CertificateConf(domains: "s.test", acme: "ca")],
            after: ["shop": CertificateConf(domains: "*.shop.test", acme: "ca", onDemand: true, ask: "http://a.test/ok"), "tenants": shop],
            in: &outcome)
        #expect(outcome.added == ["static", "tenants"])
        #expect(outcome.changed == ["shop"])
        #expect(outcome.removed == ["gone"])
    }

    @Test("1,000 names being looked up or ordered at once: the next new name is refused (cache_full) at once, a name already in flight still joins")
    func namesInFlightAreBounded() async throws {
        let store = MemoryOnDemandStore()
        let gate = Gate()
        let ca = SigningCA(store: store, gate: gate)
        var configuration = OnDemandConfiguration()
        configuration.maxConcurrent = 1
        configuration.burst = 2_000
        configuration.perClientPerHour = 2_000
        let certificates = Self.make(store, ca, configuration: configuration, client: HTTPClient.shared)
        func lookup(_ name: String) -> OnDemandCertificates.Lookup {
            certificates.lookup(ServerName.normalize(name)!, client: nil) { _ in }
        }
        for index in 0..<OnDemandCertificates.maxNamesInFlight {
            guard case .pending = lookup("n\(index).customers.test") else {
                Issue.record("n\(index) was not started")
                return
            }
        }
        #expect(certificates.status.ordering == 1_000)
        guard case .refused(.busy) = lookup("one-more.customers.test") else {
            Issue.record("a 1,001st name was started")
            return
        }
        guard case .pending = lookup("n7.customers.test") else {
            Issue.record("a name in flight did not join")
            return
        }
        // One order holds the only slot (at the gate); then the entry goes, so the names waiting
        // for the slot are dropped.
        #expect(try await eventually(timeout: .seconds(60)) { ca.ordered.withLock { $0 }.count == 1 })
        certificates.replaceEntries([:])
        gate.open()
        #expect(try await eventually(timeout: .seconds(60)) { certificates.status.ordering == 0 })
        #expect(ca.ordered.withLock { $0 }.count == 1)
    }
}
