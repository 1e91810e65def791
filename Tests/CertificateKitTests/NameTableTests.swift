@testable import CertificateKit
import CertificateTestSupport
import Testing

@Suite("Name table", .timeLimit(.minutes(2)))
struct NameTableTests {
    static let entries: [CertificateEntry] = {
        let authority = TestCertificate.authority()
        let confs = Dictionary(uniqueKeysWithValues: (0..<4).map { ("e\($0)", authority.leaf(dnsNames: ["e\($0).test"]).conf()) })
        return try! CertificateSet.build(from: confs, context: CertificateBuildContext()).set.sortedEntries
    }()

    @Test("random inserts, replacements and removals agree with a Dictionary, through growth and compaction")
    func agreesWithDictionary() {
        var table = NameTable()
        var model: [String: CertificateEntry] = [:]
        var generator = SplitMix64(seed: 42)
        for step in 0..<60_000 {
            let key = "host\(generator.next() % 5_000).example\(generator.next() % 3).test"
            let entry = Self.entries[Int(generator.next() % 4)]
            if generator.next() % 3 == 0 {
                table.remove(key)
                model[key] = nil
            } else {
                table.set(key, entry)
                model[key] = entry
            }
            if step % 10_000 == 0 { #expect(table.count == model.count) }
        }
        #expect(table.count == model.count)
        for index in 0..<5_000 {
            for domain in 0..<3 {
                let key = "host\(index).example\(domain).test"
                #expect(table[key] === model[key], "\(key)")
            }
        }
    }

    @Test("a probe with a slice of a longer name finds the slice's entry")
    func slices() {
        var table = NameTable()
        table.set("example.com", Self.entries[0])
        var name = "www.example.com"
        let found = name.withUTF8 { table.find(UnsafeBufferPointer(rebasing: $0[4...])) }
        #expect(found === Self.entries[0])
        #expect(name.withUTF8 { table.find($0) } == nil)
    }

    @Test("a copy is unaffected by changes to the original")
    func valueSemantics() {
        var original = NameTable()
        original.set("a.test", Self.entries[0])
        let copy = original
        original.set("a.test", Self.entries[1])
        original.set("b.test", Self.entries[2])
        #expect(copy["a.test"] === Self.entries[0])
        #expect(copy["b.test"] == nil)
        #expect(original["a.test"] === Self.entries[1])
    }
}

/// A small deterministic generator for reproducible random operations.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
