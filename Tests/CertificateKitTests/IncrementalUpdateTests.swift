import Crypto
import CertificateKit
import CertificateTestSupport
import Foundation
import Testing

@Suite("Incremental updates", .timeLimit(.minutes(2)))
struct IncrementalUpdateTests {
    static let authority = TestCertificate.authority()

    static func confs(_ count: Int) -> [String: CertificateConf] {
        Dictionary(uniqueKeysWithValues: (0..<count).map { ("site-\($0)", authority.leaf(dnsNames: ["site\($0).test"]).conf()) })
    }

    @Test("a rebuild with unchanged content reuses every entry object")
    func unchangedEntriesAreReused() throws {
        let confs = Self.confs(20)
        let first = try CertificateSet.build(from: confs, context: CertificateBuildContext())
        #expect(first.added.count == 20)
        let second = try CertificateSet.build(from: confs, context: CertificateBuildContext(), reusing: first.set)
        #expect(second.isEmpty)
        for (name, entry) in first.set.entries {
            #expect(second.set.entries[name] === entry)
        }
    }

    @Test("a rebuild reports added, changed and removed, and reuses the rest")
    func changeReport() throws {
        var confs = Self.confs(10)
        let first = try CertificateSet.build(from: confs, context: CertificateBuildContext()).set
        confs["site-0"] = nil
        confs["site-1"] = Self.authority.leaf(dnsNames: ["site1.test", "alt1.test"]).conf()
        confs["new"] = Self.authority.leaf(dnsNames: ["new.test"]).conf()
        let change = try CertificateSet.build(from: confs, context: CertificateBuildContext(), reusing: first)
        #expect(change.added == ["new"])
        #expect(change.changed == ["site-1"])
        #expect(change.removed == ["site-0"])
        #expect(change.set.entries["site-2"] === first.entries["site-2"])
        #expect(change.set.lookup(serverName: "site0.test", localAddress: nil) == nil)
        #expect(change.set.lookup(serverName: "alt1.test", localAddress: nil)?.entry.name == "site-1")
        #expect(change.set.lookup(serverName: "new.test", localAddress: nil)?.entry.name == "new")
    }

    @Test("upsert and delete edit the set; the old set is untouched")
    func upsertAndDelete() throws {
        let first = try CertificateSet.build(from: Self.confs(5), context: CertificateBuildContext()).set
        let change = try first.updating(
            upserting: ["extra": Self.authority.leaf(dnsNames: ["extra.test"]).conf()],
            deleting: ["site-3", "not-there"], context: CertificateBuildContext())
        #expect(change.added == ["extra"])
        #expect(change.removed == ["site-3"])
        #expect(change.set.count == 5)
        #expect(first.count == 5)
        #expect(first.lookup(serverName: "site3.test", localAddress: nil)?.entry.name == "site-3")
        #expect(change.set.lookup(serverName: "site3.test", localAddress: nil) == nil)
    }

    @Test("a name may move from one entry to another in one update")
    func nameMovesBetweenEntries() throws {
        let first = try CertificateSet.build(from: [
            "old": Self.authority.leaf(dnsNames: ["moving.test"]).conf(),
        ], context: CertificateBuildContext()).set
        let change = try first.updating(
            upserting: ["new": Self.authority.leaf(dnsNames: ["moving.test"]).conf()],
            deleting: ["old"], context: CertificateBuildContext())
        #expect(change.set.lookup(serverName: "moving.test", localAddress: nil)?.entry.name == "new")
    }

    @Test("an update that claims a name another entry keeps is rejected and changes nothing")
    func conflictingUpsertRejected() throws {
        let first = try CertificateSet.build(from: Self.confs(3), context: CertificateBuildContext()).set
        #expect(throws: CertificateSetError.self) {
            try first.updating(upserting: ["thief": Self.authority.leaf(dnsNames: ["site1.test"]).conf()],
                               deleting: [String](), context: CertificateBuildContext())
        }
        #expect(first.lookup(serverName: "site1.test", localAddress: nil)?.entry.name == "site-1")
    }

    @Test("upserting and deleting the same name in one batch is an error")
    func upsertAndDeleteSameName() throws {
        let first = try CertificateSet.build(from: Self.confs(2), context: CertificateBuildContext()).set
        #expect(throws: CertificateSetError.self) {
            try first.updating(upserting: ["site-0": Self.authority.leaf(dnsNames: ["site0.test"]).conf()],
                               deleting: ["site-0"], context: CertificateBuildContext())
        }
    }

    @Test("a file-backed entry is rebuilt when the file's content changes, though its config did not")
    func fileContentChange() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("certgate-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let one = Self.authority.leaf(dnsNames: ["file.test"])
        try one.pem.write(to: folder.appendingPathComponent("site.pem"), atomically: true, encoding: .utf8)
        try one.key.pkcs8PEM.write(to: folder.appendingPathComponent("site.key"), atomically: true, encoding: .utf8)
        let confs = ["site": CertificateConf(tlsCert: "site.pem", tlsKey: "site.key")]
        let context = CertificateBuildContext(baseDirectory: folder.path)
        let first = try CertificateSet.build(from: confs, context: context).set

        let two = Self.authority.leaf(dnsNames: ["file.test"])
        try two.pem.write(to: folder.appendingPathComponent("site.pem"), atomically: true, encoding: .utf8)
        try two.key.pkcs8PEM.write(to: folder.appendingPathComponent("site.key"), atomically: true, encoding: .utf8)
        let change = try CertificateSet.build(from: confs, context: context, reusing: first)
        #expect(change.changed == ["site"])
        #expect(change.set.entries["site"]?.fingerprint == Array(SHA256.hash(data: two.parsed.der)))
    }

    @Test("a file rewritten in place with its modification time put back is still seen as changed (its status-change time moved)")
    func rewriteWithSameModificationTime() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("certgate-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let certificate = folder.appendingPathComponent("site.pem")
        let key = folder.appendingPathComponent("site.key")
        let one = Self.authority.leaf(dnsNames: ["file.test"])
        try one.pem.write(to: certificate, atomically: false, encoding: .utf8)
        try one.key.pkcs8PEM.write(to: key, atomically: false, encoding: .utf8)
        let confs = ["site": CertificateConf(tlsCert: "site.pem", tlsKey: "site.key")]
        let context = CertificateBuildContext(baseDirectory: folder.path)
        let first = try CertificateSet.build(from: confs, context: context).set
        let stamps = try #require(first.entries["site"]?.fileStamps)
        #expect(stamps.count == 2)

        // Unchanged files: the same stamps, the entry reused as it is.
        let again = try CertificateSet.build(from: confs, context: context, reusing: first)
        #expect(again.isEmpty)
        #expect(again.set.entries["site"] === first.entries["site"])

        // Same size, same modification time, other bytes (a P-256 certificate and key of the same shape).
        let modified = try FileManager.default.attributesOfItem(atPath: certificate.path)[.modificationDate] as! Date
        var two = Self.authority.leaf(dnsNames: ["file.test"])
        while two.pem.utf8.count != one.pem.utf8.count || two.key.pkcs8PEM.utf8.count != one.key.pkcs8PEM.utf8.count {
            two = Self.authority.leaf(dnsNames: ["file.test"])
        }
        try two.pem.write(to: certificate, atomically: false, encoding: .utf8)
        try two.key.pkcs8PEM.write(to: key, atomically: false, encoding: .utf8)
        try FileManager.default.setAttributes([.modificationDate: modified], ofItemAtPath: certificate.path)
        try FileManager.default.setAttributes([.modificationDate: modified], ofItemAtPath: key.path)
        let change = try CertificateSet.build(from: confs, context: context, reusing: first)
        #expect(change.changed == ["site"])
        #expect(change.set.entries["site"]?.fingerprint == Array(SHA256.hash(data: two.parsed.der)))
    }
}
