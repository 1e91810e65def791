import CertificateKit
import CertificateKitNIO
import NIOSSL
import CertificateTestSupport
import Foundation
import Synchronization
import Testing
import X509

@Suite("Issued leaves kept across restarts", .timeLimit(.minutes(2)))
struct IssuedLeafPersistenceTests {
    /// Records what the cache asks to save and drop.
    final class Recorder: IssuedLeafPersistence {
        let saves = Mutex<[IssuedLeafRecord]>([])
        let drops = Mutex<[IssuedLeafKey]>([])
        func saved(_ record: IssuedLeafRecord) { saves.withLock { $0.append(record) } }
        func dropped(_ keys: [IssuedLeafKey]) { drops.withLock { $0 += keys } }
    }

    static func subject(_ name: String) -> LocalAuthority.Subject { .name(ServerName.normalize(name)!) }

    @Test("a signed leaf is handed to the persistence; a new cache restores it and serves the same leaf without signing")
    func restoreServesTheSameLeaf() async throws {
        let (_, authority) = try IssuingTests.authority()
        let recorder = Recorder()
        let cache = IssuedCertificateCache(persistence: recorder)
        let signed = try #require(try await IssuingTests.await { cache.leaf(from: authority, for: Self.subject("a.dev.test"), now: Date(), completion: $0) })
        let record = try #require(recorder.saves.withLock { $0.first })
        #expect(record.key == IssuedLeafKey(authority: authority.fingerprint, name: "a.dev.test"))
        #expect(record.notAfter == signed.notAfter)

        let issued = Mutex(0)
        let restarted = IssuedCertificateCache(servingMaterialFactory: NIOServingMaterial.issuedLeafFactory(), onEvent: { event in
            if case .issued = event { issued.withLock { $0 += 1 } }
        })
        let (restored, discarded) = restarted.restore([record], authorities: [authority], now: Date())
        #expect(restored == 1 && discarded.isEmpty)
        guard case .hit(let cached) = restarted.leaf(from: authority, for: Self.subject("a.dev.test"), now: Date(), completion: { _ in }) else {
            Issue.record("the restored leaf is not served from the cache")
            return
        }
        #expect(cached.leafDER == signed.leafDER)
        // The certificate's own notAfter (X.509 times are whole seconds).
        #expect(cached.notAfter == (try Certificate(derEncoded: signed.leafDER).notValidAfter))
        // Its TLS objects: the same leaf, then the CA's certificate, and the stored key.
        let material = try #require(cached.servingMaterial as? NIOServingMaterial)
        #expect(try material.certificateChain().map { try $0.toDERBytes() } == [signed.leafDER, authority.material.certificate.der])
        guard case .privateKey(let key)? = try material.contextOverride().privateKey else {
            Issue.record("no private key in the restored leaf's TLS objects")
            return
        }
        #expect(key == (try NIOSSLPrivateKey(bytes: Array(record.keyPEM.utf8), format: .pem)))
        #expect(issued.withLock { $0 } == 0)
    }

    @Test("restore discards expired leaves, leaves of a CA no longer present, and unreadable ones")
    func restoreDiscards() async throws {
        let (_, authority) = try IssuingTests.authority()
        let (_, other) = try IssuingTests.authority()
        let recorder = Recorder()
        let cache = IssuedCertificateCache(persistence: recorder)
        _ = try await IssuingTests.await { cache.leaf(from: authority, for: Self.subject("a.dev.test"), now: Date(), completion: $0) }
        _ = try await IssuingTests.await { cache.leaf(from: other, for: Self.subject("b.dev.test"), now: Date(), completion: $0) }
        let records = recorder.saves.withLock { $0 }
        let valid = try #require(records.first { $0.key.name == "a.dev.test" })
        let garbled = IssuedLeafRecord(key: IssuedLeafKey(authority: authority.fingerprint, name: "c.dev.test"), certificatePEM: "not PEM", keyPEM: "", notAfter: valid.notAfter)
        let restarted = IssuedCertificateCache()
        // Only `authority` is configured now; and a clock past the leaves' notAfter expires them all.
        let (restored, discarded) = restarted.restore(records + [garbled], authorities: [authority], now: Date())
        #expect(restored == 1)
        #expect(Set(discarded.map(\.name)) == ["b.dev.test", "c.dev.test"])
        let (later, expired) = IssuedCertificateCache().restore([valid], authorities: [authority], now: valid.notAfter.addingTimeInterval(1))
        #expect(later == 0 && expired == [valid.key])
    }

    @Test("eviction and the sweep tell the persistence which leaves are gone")
    func dropsAreReported() async throws {
        let (_, authority) = try IssuingTests.authority()
        let recorder = Recorder()
        var policy = IssuedCertificateCache.Policy()
        policy.capacity = 2
        let cache = IssuedCertificateCache(policy: policy, persistence: recorder)
        for name in ["a.dev.test", "b.dev.test", "c.dev.test"] {
            _ = try await IssuingTests.await { cache.leaf(from: authority, for: Self.subject(name), now: Date(), completion: $0) }
        }
        #expect(recorder.drops.withLock { $0.map(\.name) } == ["a.dev.test"])
        #expect(cache.sweep(now: Date(), currentAuthorities: []) == 2)
        #expect(Set(recorder.drops.withLock { $0.map(\.name) }) == ["a.dev.test", "b.dev.test", "c.dev.test"])
    }
}
