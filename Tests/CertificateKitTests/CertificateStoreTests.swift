import CertificateKit
import CertificateTestSupport
import Foundation
import Synchronization
import Testing

@Suite("Certificate store")
struct CertificateStoreTests {
    @Test("swap bumps the generation; a compare-and-swap with a stale generation changes nothing")
    func generations() throws {
        let authority = TestCertificate.authority()
        let set = try CertificateSet.build(from: ["a": authority.leaf(dnsNames: ["a.test"]).conf()], context: CertificateBuildContext()).set
        let store = CertificateStore()
        #expect(store.current.generation == 0)
        #expect(store.swap(to: set)?.generation == 1)
        #expect(store.current.set === set)
        #expect(store.swap(to: .empty, expectedGeneration: 0) == nil)
        #expect(store.current.set === set)
        #expect(store.swap(to: .empty, expectedGeneration: 1)?.generation == 2)
    }

    @Test("readers during 10,000 swaps only ever see whole sets that were swapped in")
    func readersSeeWholeSets() throws {
        let authority = TestCertificate.authority()
        // 8 distinct sets; in set k every entry carries remark "k".
        let leaves = (0..<3).map { authority.leaf(dnsNames: ["n\($0).test"]) }
        let sets: [CertificateSet] = try (0..<8).map { k in
            var confs: [String: CertificateConf] = [:]
            for (index, leaf) in leaves.enumerated() {
                var conf = leaf.conf()
                conf.remark = "\(k)"
                confs["e\(index)"] = conf
            }
            return try CertificateSet.build(from: confs, context: CertificateBuildContext()).set
        }
        let store = CertificateStore(initial: sets[0])
        let swaps = 10_000
        let done = Atomic<Bool>(false)
        let violations = Atomic<Int>(0)
        let reads = Atomic<Int>(0)

        let readers = (0..<3).map { _ in
            Thread {
                var lastGeneration: UInt64 = 0
                while !done.load(ordering: .acquiring) {
                    let snapshot = store.current
                    let expected = sets[Int(snapshot.generation % 8)]
                    let remarks = Set(snapshot.set.entries.values.map { $0.conf.remark })
                    let whole = snapshot.set === expected && remarks == ["\(snapshot.generation % 8)"]
                        && snapshot.set.lookup(serverName: "n1.test", localAddress: nil)?.entry.conf.remark == "\(snapshot.generation % 8)"
                    if !whole || snapshot.generation < lastGeneration {
                        violations.add(1, ordering: .relaxed)
                    }
                    lastGeneration = snapshot.generation
                    reads.add(1, ordering: .relaxed)
                }
            }
        }
        readers.forEach { $0.start() }
        for generation in 1...swaps {
            store.swap(to: sets[generation % 8])
        }
        done.store(true, ordering: .releasing)
        while readers.contains(where: { !$0.isFinished }) { Thread.sleep(forTimeInterval: 0.001) }

        #expect(store.current.generation == UInt64(swaps))
        #expect(violations.load(ordering: .relaxed) == 0)
        #expect(reads.load(ordering: .relaxed) > 0)
    }
}
