import CertificateKit
import CertificateTestSupport
import Crypto
import Foundation
import GRDB
@testable import Gateway
import Testing

@Suite("The SQLite state store", .timeLimit(.minutes(2)))
struct StateStoreTests {
    static let authority = TestCertificate.authority(commonName: "State CA")

    @Test("a state file that is not a database is refused with SQLite's result code and what it means, not SQLite's message or the driver's description of its statement")
    func damagedFileIsRefusedPlainly() throws {
        let folder = try FixtureFolder()
        defer { folder.remove() }
        let directory = folder.url.appendingPathComponent("state")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try Data(repeating: 0x5A, count: 4096).write(to: directory.appendingPathComponent(StateStore.fileName))
        do {
            _ = try StateStore(directory: directory.path)
            Issue.record("a damaged state opened")
        } catch {
            #expect(error.description == "state \(directory.path)/certgate.db: cannot open the state: SQLite error 26: file is not a database")
        }
    }

    @Test("every connection to the state commits with synchronous = FULL in WAL mode (a commit survives a power cut)")
    func durableSettings() throws {
        let folder = try FixtureFolder()
        defer { folder.remove() }
        let store = try StateStore(directory: folder.url.appendingPathComponent("state").path)
        let (synchronous, journal) = try store.database.read { db in
            (try Int.fetchOne(db, sql: "PRAGMA synchronous"), try String.fetchOne(db, sql: "PRAGMA journal_mode"))
        }
        #expect(synchronous == 2)  // 2 = FULL (0 OFF, 1 NORMAL, 3 EXTRA)
        #expect(journal == "wal")
    }

    /// A store in a fresh folder; the folder goes when `body` returns.
    func withStore<T>(_ body: (StateStore, FixtureFolder) throws -> T) throws -> T {
        let folder = try FixtureFolder()
        defer { folder.remove() }
        let store = try StateStore(directory: folder.url.appendingPathComponent("state").path)
        return try body(store, folder)
    }

    func rows(_ store: StateStore, _ sql: String) throws -> Int {
        let database = try DatabaseQueue(path: store.path)
        defer { try? database.close() }
        return try database.read { try Int.fetchOne($0, sql: sql) ?? -1 }
    }

    func set(_ confs: [String: CertificateConf], base: String? = nil) throws -> CertificateSetChange {
        try CertificateSet.build(from: confs, context: CertificateBuildContext(baseDirectory: base))
    }

    @Test("a committed set reads back exactly — inline, file, base64 and key-in-certificate entries — and restores from the stored PEM, not the files")
    func roundTrip() throws {
        try withStore { store, folder in
            let fromFile = Self.authority.leaf(dnsNames: ["file.test"])
            try folder.write(fromFile.pem, to: "certs/file.pem")
            try folder.write(fromFile.key.pkcs8PEM, to: "certs/file.key")
            let combined = Self.authority.leaf(dnsNames: ["combined.test"])
            let encoded = Self.authority.leaf(dnsNames: ["b64.test"])
            let confs: [String: CertificateConf] = [
                "inline": Self.authority.leaf(dnsNames: ["inline.test"]).conf(isDefault: true),
                "file": CertificateConf(tlsCert: "certs/file.pem", tlsKey: "certs/file.key", bufferDays: 3, remark: "from disk"),
                "combined": CertificateConf(domains: ["combined.test"], tlsCert: combined.pem + combined.key.pkcs8PEM),
                "b64": CertificateConf(tlsCert: Data(encoded.pem.utf8).base64EncodedString(), tlsKey: encoded.key.pkcs8PEM),
            ]
            let change = try set(confs, base: folder.url.path)
            try store.commit(change, generation: 0, source: .config)

            let stored = try #require(try store.load())
            #expect(stored.generation == 0 && stored.source == .config)
            #expect(stored.entries.count == 4)
            for (name, entry) in change.set.entries {
                // Written by a commit of a validated entry: proven unchanged when read back.
                #expect(stored.entries[name] == StoredCertificateEntry(conf: entry.conf, content: try #require(change.contents[name]), verified: true), "\(name)")
            }

            // The file changes on disk: the restore still serves what was committed...
            let replacement = Self.authority.leaf(dnsNames: ["file.test"])
            try folder.write(replacement.pem, to: "certs/file.pem")
            try folder.write(replacement.key.pkcs8PEM, to: "certs/file.key")
            let restored = try CertificateSet.restore(from: stored.entries, context: CertificateBuildContext(baseDirectory: folder.url.path))
            #expect(restored.entries["file"]?.fingerprint == Array(SHA256.hash(data: fromFile.parsed.der)))
            // ...and the next reload of the same configuration sees exactly that one entry change.
            let reload = try CertificateSet.build(from: confs, context: CertificateBuildContext(baseDirectory: folder.url.path), reusing: restored)
            #expect(reload.changed == ["file"] && reload.added.isEmpty && reload.removed.isEmpty)
        }
    }

    @Test("an upsert of 1 entry into 300 writes one row; a delete removes one; the generation follows")
    func upsertWritesOneRow() throws {
        try withStore { store, _ in
            var confs: [String: CertificateConf] = [:]
            for index in 0..<300 { confs["e\(index)"] = Self.authority.leaf(dnsNames: ["e\(index).test"]).conf() }
            let initial = try set(confs)
            try store.commit(initial, generation: 0, source: .config)
            #expect(try rows(store, "SELECT count(*) FROM certificates") == 300)

            let upsert = try initial.set.updating(
                upserting: ["e7": Self.authority.leaf(dnsNames: ["e7.test"]).conf()], deleting: [], context: CertificateBuildContext())
            try store.commit(upsert, generation: 1, source: .control)
            #expect(try rows(store, "SELECT count(*) FROM certificates WHERE generation = 1") == 1)
            #expect(try rows(store, "SELECT count(*) FROM certificates") == 300)

            let delete = try upsert.set.updating(upserting: [:], deleting: ["e8"], context: CertificateBuildContext())
            try store.commit(delete, generation: 2, source: .control)
            let stored = try #require(try store.load())
            #expect(stored.generation == 2 && stored.source == .control)
            #expect(stored.entries.count == 299 && stored.entries["e8"] == nil)
            #expect(stored.entries["e7"] == StoredCertificateEntry(
                conf: try #require(upsert.set.entries["e7"]).conf, content: try #require(upsert.contents["e7"]), verified: true))
        }
    }

    @Test("a row changed outside certgate (its key swapped for another valid key, or its configuration edited), or written before rows carried a proof, is not proven: its restore validates it in full, so the swapped key is found not to match; untouched rows restore to the same entries as a full build")
    func rowProof() throws {
        try withStore { store, _ in
            let confs: [String: CertificateConf] = [
                "kept": Self.authority.leaf(dnsNames: ["kept.test"]).conf(),
                "swapped": Self.authority.leaf(dnsNames: ["swapped.test"]).conf(),
                "edited": Self.authority.leaf(dnsNames: ["edited.test"]).conf(),
                "old": Self.authority.leaf(dnsNames: ["old.test"]).conf(),
            ]
            let built = try set(confs)
            try store.commit(built, generation: 0, source: .config)
            let otherKey = Self.authority.leaf(dnsNames: ["other.test"]).key.pkcs8PEM
            let database = try DatabaseQueue(path: store.path)
            try database.write { db in
                try db.execute(sql: "UPDATE certificates SET key_pem = ? WHERE name = 'swapped'", arguments: [otherKey])
                try db.execute(sql: "UPDATE certificates SET conf = conf || ' ' WHERE name = 'edited'")  // still the same JSON
                try db.execute(sql: "UPDATE certificates SET verified = NULL WHERE name = 'old'")
            }
            try database.close()
            let stored = try #require(try store.load())
            #expect(stored.entries.mapValues(\.verified) == ["kept": true, "swapped": false, "edited": false, "old": false])

            do throws(CertificateSetError) {
                _ = try CertificateSet.restore(from: stored.entries, context: CertificateBuildContext())
                Issue.record("a swapped key was restored")
            } catch {
                #expect(error.errors.map(\.entry) == ["swapped"])
                #expect(error.errors.first?.field == "tls_key")
                #expect(error.errors.first?.reason.hasPrefix("the private key does not match the certificate") == true)
            }
            // Without the swapped row, the restore (proven rows fast, others in full) gives
            // entries with the same facts as the full build.
            var rest = stored.entries
            rest["swapped"] = nil
            let restored = try CertificateSet.restore(from: rest, context: CertificateBuildContext())
            for name in ["kept", "edited", "old"] {
                let original = try #require(built.set.entries[name])
                let again = try #require(restored.entries[name])
                #expect(again.fingerprint == original.fingerprint, "\(name)")
                #expect(again.chainFingerprints == original.chainFingerprints, "\(name)")
                #expect(again.patterns == original.patterns, "\(name)")
                #expect(again.leaf == original.leaf, "\(name)")
                #expect(again.warnings == original.warnings, "\(name)")
                #expect(again.contentDigest == original.contentDigest, "\(name)")
                #expect(again.kind == original.kind && again.isDefault == original.isDefault, "\(name)")
            }
        }
    }

    @Test("a commit that fails half-way leaves the stored set as it was")
    func failedCommitWritesNothing() throws {
        try withStore { store, _ in
            let initial = try set(["a": Self.authority.leaf(dnsNames: ["a.test"]).conf()])
            try store.commit(initial, generation: 0, source: .config)
            let database = try DatabaseQueue(path: store.path)
            try database.write { db in
                try db.execute(sql: """
                    CREATE TRIGGER refuse_poison BEFORE INSERT ON certificates WHEN NEW.name = 'poison'
                    BEGIN SELECT RAISE(FAIL, 'refused by the test trigger'); END
                    """)
            }
            try database.close()
            // "fine" sorts before "poison": its row is written before the failure.
            let change = try initial.set.updating(upserting: [
                "fine": Self.authority.leaf(dnsNames: ["fine.test"]).conf(),
                "poison": Self.authority.leaf(dnsNames: ["poison.test"]).conf(),
            ], deleting: ["a"], context: CertificateBuildContext())
            #expect {
                try store.commit(change, generation: 1, source: .control)
            } throws: { error in
                "\(error)" == "state \(store.path): cannot commit generation 1: SQLite error 19: a constraint refused the write"
            }
            let stored = try #require(try store.load())
            #expect(stored.generation == 0)
            #expect(Set(stored.entries.keys) == ["a"])
        }
    }

    @Test("a commit out of sequence is refused: another writer changed the state")
    func generationGuard() throws {
        try withStore { store, _ in
            let initial = try set(["a": Self.authority.leaf(dnsNames: ["a.test"]).conf()])
            try store.commit(initial, generation: 4, source: .config)
            #expect {
                try store.commit(initial, generation: 9, source: .control)
            } throws: { error in
                "\(error)".contains("the stored generation is 4, expected 8")
            }
            #expect(try store.load()?.generation == 4)
        }
    }

    @Test("state files are 0600; a second store on the same folder is refused until the first closes; reset discards everything")
    func filesLockAndReset() throws {
        let folder = try FixtureFolder()
        defer { folder.remove() }
        let directory = folder.url.appendingPathComponent("state").path
        do {
            let store = try StateStore(directory: directory)
            try store.commit(try set(["a": Self.authority.leaf(dnsNames: ["a.test"]).conf()]), generation: 0, source: .config)
            try store.writeIssuedLeaves(saving: [
                IssuedLeafRecord(key: IssuedLeafKey(authority: [1, 2, 3], name: "x.dev.test"), certificatePEM: "c", keyPEM: "k", notAfter: Date()),
            ], dropping: [])
            for suffix in ["", "-wal", "-shm"] {
                let mode = try FileManager.default.attributesOfItem(atPath: store.path + suffix)[.posixPermissions] as? Int
                #expect(mode == 0o600, "certgate.db\(suffix)")
            }
            let folderMode = try FileManager.default.attributesOfItem(atPath: directory)[.posixPermissions] as? Int
            #expect(folderMode == 0o700)
            #expect {
                _ = try StateStore(directory: directory)
            } throws: { error in
                "\(error)".contains("another certgate uses this state")
            }
        }
        let reopened = try StateStore(directory: directory)
        #expect(try reopened.load()?.entries.count == 1)
        let summary = try reopened.reset()
        #expect(summary.generation == 0 && summary.entries == 1 && summary.issuedLeaves == 1)
        #expect(try reopened.load() == nil)
        #expect(try reopened.loadIssuedLeaves().isEmpty)
    }

    @Test("a state written by a newer certgate (an unknown schema migration) is refused, not read")
    func newerSchemaRefused() throws {
        let folder = try FixtureFolder()
        defer { folder.remove() }
        let directory = folder.url.appendingPathComponent("state").path
        let path: String
        do {
            let store = try StateStore(directory: directory)
            try store.commit(try set(["a": Self.authority.leaf(dnsNames: ["a.test"]).conf()]), generation: 0, source: .config)
            path = store.path
        }
        let database = try DatabaseQueue(path: path)
        try database.write { try $0.execute(sql: "INSERT INTO grdb_migrations (identifier) VALUES ('v99')") }
        try database.close()
        #expect {
            _ = try StateStore(directory: directory)
        } throws: { error in
            "\(error)".contains("written by a newer certgate (schema v99)")
        }
    }

    @Test("issued leaves: saved ones read back, dropped ones are gone, a re-save replaces")
    func issuedLeaves() throws {
        try withStore { store, _ in
            let ca: [UInt8] = Array(repeating: 7, count: 32)
            let first = IssuedLeafRecord(key: IssuedLeafKey(authority: ca, name: "a.dev.test"), certificatePEM: "A1", keyPEM: "KA1", notAfter: Date(timeIntervalSince1970: 2_000_000_000))
            let second = IssuedLeafRecord(key: IssuedLeafKey(authority: ca, name: "b.dev.test"), certificatePEM: "B", keyPEM: "KB", notAfter: Date(timeIntervalSince1970: 2_000_000_000))
            try store.writeIssuedLeaves(saving: [first, second], dropping: [])
            let renewed = IssuedLeafRecord(key: first.key, certificatePEM: "A2", keyPEM: "KA2", notAfter: Date(timeIntervalSince1970: 2_100_000_000))
            try store.writeIssuedLeaves(saving: [renewed], dropping: [second.key])
            #expect(try store.loadIssuedLeaves() == [renewed])
        }
    }
}
