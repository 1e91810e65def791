import CertificateKit
import CertificateTestSupport
import Foundation
import Synchronization
import Testing

@Suite("Certificate store", .timeLimit(.minutes(2)))
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

    @Test("a reader keeps the snapshot it last read until it reads again or catches up; after catchUp the previous set is released")
    func readerLetsGoOfThePreviousSet() throws {
        let authority = TestCertificate.authority()
        let store = CertificateStore()
        weak var previous: CertificateSet?
        do {
            let first = try CertificateSet.build(from: ["a": authority.leaf(dnsNames: ["a.test"]).conf()], context: CertificateBuildContext()).set
            store.swap(to: first)
            previous = first
        }
        let reader = store.makeReader()
        #expect(reader.current.set === previous)
        store.swap(to: .empty)
        #expect(previous != nil)  // still the reader's
        reader.catchUp()
        #expect(previous == nil)
        #expect(reader.current.generation == 2)
    }

    @Test("install puts any generation in place (a fleet's), and readers see it even when the number does not grow")
    func installAnyGeneration() throws {
        let authority = TestCertificate.authority()
        let set = try CertificateSet.build(from: ["a": authority.leaf(dnsNames: ["a.test"]).conf()], context: CertificateBuildContext()).set
        let store = CertificateStore(initial: .empty, generation: 7)
        let reader = store.makeReader()
        #expect(reader.current.generation == 7)
        store.install(set, generation: 7, committedAt: Date(timeIntervalSince1970: 1_000))
        #expect(reader.current.set === set)
        store.install(.empty, generation: 3, committedAt: Date(timeIntervalSince1970: 2_000))
        #expect(reader.current.generation == 3 && reader.current.set.count == 0)
        #expect(store.swap(to: set)?.generation == 4)
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

        let started = Atomic<Int>(0)
        // Reads that saw a generation strictly between the first and the last: proof that
        // reading and swapping overlapped, not merely followed each other.
        let duringSwaps = Atomic<Int>(0)

        // Two threads read through `store.current`, two through their own reader.
        let readers = (0..<4).map { number in
            Thread {
                let reader = store.makeReader()
                var lastGeneration: UInt64 = 0
                started.add(1, ordering: .releasing)
                while !done.load(ordering: .acquiring) {
                    let snapshot = number % 2 == 0 ? store.current : reader.current
                    let tag = "\(snapshot.generation % 8)"
                    let expected = sets[Int(snapshot.generation % 8)]
                    let remarks = Set(snapshot.set.entries.values.map { $0.conf.remark })
                    let whole = snapshot.set === expected && remarks == [tag]
                        && snapshot.set.lookup(serverName: "n1.test", localAddress: nil)?.entry.conf.remark == tag
                    if !whole || snapshot.generation < lastGeneration {
                        violations.add(1, ordering: .relaxed)
                    }
                    lastGeneration = snapshot.generation
                    reads.add(1, ordering: .relaxed)
                    if snapshot.generation > 0 && snapshot.generation < UInt64(swaps) { duringSwaps.add(1, ordering: .relaxed) }
                }
            }
        }
        readers.forEach { $0.start() }
        while started.load(ordering: .acquiring) < readers.count { Thread.sleep(forTimeInterval: 0.001) }
        for generation in 1...swaps {
            store.swap(to: sets[generation % 8])
            if generation % 1_000 == 0 { Thread.sleep(forTimeInterval: 0.001) }  // let readers run between bursts
        }
        while reads.load(ordering: .relaxed) < 100 { Thread.sleep(forTimeInterval: 0.001) }
        done.store(true, ordering: .releasing)
        while readers.contains(where: { !$0.isFinished }) { Thread.sleep(forTimeInterval: 0.001) }

        #expect(store.current.generation == UInt64(swaps))
        #expect(violations.load(ordering: .relaxed) == 0)
        #expect(reads.load(ordering: .relaxed) >= 100)
        #expect(duringSwaps.load(ordering: .relaxed) > 0)
    }
}
