import CertificateKit
import CertificateTestSupport
import Foundation
import Gateway
import Synchronization
import Testing

@Suite("The update transaction", .timeLimit(.minutes(2)))
struct CertificateUpdaterTests {
    static let authority = TestCertificate.authority(commonName: "Updater CA")

    struct PersistFailed: Error {}

    final class Commits: Sendable {
        let generations = Mutex<[UInt64]>([])
    }

    func makeUpdater(persistFails: Bool = false, commits: Commits? = nil) throws -> (CertificateKit.CertificateStore, CertificateUpdater) {
        let initial = try CertificateSet.build(from: [
            "a": Self.authority.leaf(dnsNames: ["a.test"]).conf(),
            "b": Self.authority.leaf(dnsNames: ["b.test"]).conf(),
        ], context: CertificateBuildContext()).set
        let store = CertificateKit.CertificateStore(initial: initial)
        let updater = CertificateUpdater(
            store: store, context: { CertificateBuildContext() },
            persist: { _, _, _, _ in if persistFails { throw PersistFailed() } },
            onCommit: { snapshot, _, _, _, _ in commits?.generations.withLock { $0.append(snapshot.generation) } })
        return (store, updater)
    }

    var badConf: CertificateConf {
        CertificateConf(tlsCert: Self.authority.leaf(dnsNames: ["bad.test"]).pem, tlsKey: TestKey.make().pkcs8PEM)
    }

    @Test("a 2-entry batch with one invalid entry changes nothing under REJECT, with that entry's reason")
    func rejectPolicy() async throws {
        let (store, updater) = try makeUpdater()
        let before = store.current
        await #expect {
            try await updater.apply(.init(change: .batch(upserts: ["c": Self.authority.leaf(dnsNames: ["c.test"]).conf(), "b": badConf], deletions: []), source: .control))
        } throws: { error in
            guard case .invalid(let errors) = error as? CertificateUpdateFailure else { return false }
            return errors.map(\.entry) == ["b"] && errors[0].field == "tls_key"
        }
        #expect(store.current === before)
    }

    @Test("KEEP_LAST_GOOD applies the valid entry; the invalid one keeps its previous version and is reported")
    func keepLastGoodPolicy() async throws {
        let (store, updater) = try makeUpdater()
        let previousB = try #require(store.current.set.entries["b"])
        let outcome = try await updater.apply(.init(
            change: .batch(upserts: ["c": Self.authority.leaf(dnsNames: ["c.test"]).conf(), "b": badConf], deletions: []),
            policy: .keepLastGood, source: .control))
        #expect(outcome.added == ["c"])
        #expect(outcome.errors.map(\.entry) == ["b"])
        #expect(outcome.generation == 1)
        #expect(store.current.set.entries["b"] === previousB)
        #expect(store.current.set.lookup(serverName: "c.test", localAddress: nil)?.entry.name == "c")
    }

    @Test("a generation mismatch changes nothing; the right generation applies")
    func compareAndSwap() async throws {
        let (store, updater) = try makeUpdater()
        await #expect {
            try await updater.apply(.init(change: .batch(upserts: [:], deletions: ["a"]), expectedGeneration: 5, source: .control))
        } throws: { error in
            if case .generationMismatch(5, 0) = error as? CertificateUpdateFailure { return true }
            return false
        }
        #expect(store.current.set.entries["a"] != nil)
        let outcome = try await updater.apply(.init(change: .batch(upserts: [:], deletions: ["a"]), expectedGeneration: 0, source: .control))
        #expect(outcome.removed == ["a"])
        #expect(store.current.generation == 1)
    }

    @Test("a dry run reports what would change and changes nothing")
    func dryRun() async throws {
        let (store, updater) = try makeUpdater()
        let before = store.current
        let outcome = try await updater.apply(.init(change: .replace(["z": Self.authority.leaf(dnsNames: ["z.test"]).conf()]), dryRun: true, source: .control))
        #expect(outcome.dryRun)
        #expect(outcome.added == ["z"])
        #expect(Set(outcome.removed) == ["a", "b"])
        #expect(store.current === before)
    }

    @Test("a failed commit to durable state changes nothing")
    func persistenceFailure() async throws {
        let (store, updater) = try makeUpdater(persistFails: true)
        let before = store.current
        await #expect {
            try await updater.apply(.init(change: .batch(upserts: [:], deletions: ["a"]), source: .control))
        } throws: { error in
            if case .persistence = error as? CertificateUpdateFailure { return true }
            return false
        }
        #expect(store.current === before)
    }

    @Test("commits are seen in generation order, one per applied update")
    func commitsInOrder() async throws {
        let commits = Commits()
        let (_, updater) = try makeUpdater(commits: commits)
        for index in 0..<5 {
            _ = try await updater.apply(.init(change: .batch(upserts: ["n\(index)": Self.authority.leaf(dnsNames: ["n\(index).test"]).conf()], deletions: []), source: .control))
        }
        _ = try? await updater.apply(.init(change: .batch(upserts: ["bad": badConf], deletions: []), source: .control))
        #expect(commits.generations.withLock { $0 } == [1, 2, 3, 4, 5])
    }
}
