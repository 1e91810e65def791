import CertificateKit
import Foundation
import GRDB

/// A certificate obtained by ACME for an entry, as stored: the chain and the key made for
/// it (0600, like the rest of the state; never in a log, a listing or an output).
public struct StoredACMECertificate: Sendable, Equatable {
    public var name: String
    /// The `acme:` CA it came from.
    public var issuer: String
    /// The names it was ordered for, sorted.
    public var domains: [String]
    public var chainPEM: String
    public var keyPEM: String
    public var notBefore: Date
    public var notAfter: Date
    public var certificateURL: String
    public var obtainedAt: Date
}

extension StateStore {
    /// The ACME account kept for a CA's directory: its key (PKCS#8 PEM) and URL.
    func acmeAccount(directory: String) throws(StateStoreError) -> (keyPEM: String, accountURL: String?)? {
        do {
            return try database.read { db in
                try Row.fetchOne(db, sql: "SELECT key_pem, account_url FROM acme_accounts WHERE directory = ?", arguments: [directory])
                    .map { ($0["key_pem"], $0["account_url"]) }
            }
        } catch {
            throw StateStoreError(path: path, operation: "read the ACME account", reason: "the database refused the read")
        }
    }

    func saveACMEAccount(directory: String, keyPEM: String, accountURL: String?) throws(StateStoreError) {
        try write(operation: "store the ACME account") { db in
            try db.execute(
                sql: "INSERT INTO acme_accounts (directory, key_pem, account_url) VALUES (?, ?, ?) ON CONFLICT (directory) DO UPDATE SET key_pem = excluded.key_pem, account_url = excluded.account_url",
                arguments: [directory, keyPEM, accountURL])
        }
    }

    /// The `acme` entries of the committed set as configured (no certificate material),
    /// pending ones included.
    func acmeEntries() throws(StateStoreError) -> [String: CertificateConf] {
        do {
            return try database.read { db in
                var result: [String: CertificateConf] = [:]
                for row in try Row.fetchAll(db, sql: "SELECT name, conf FROM acme_entries") {
                    let name: String = row["name"]
                    let json: String = row["conf"]
                    guard let conf = try? JSONDecoder().decode(CertificateConf.self, from: Data(json.utf8)) else {
                        throw StateStoreError(path: path, operation: "read the acme entries", reason: "entry \(QuotedValue.quote(name)) does not decode")
                    }
                    result[name] = conf
                }
                return result
            }
        } catch let error as StateStoreError {
            throw error
        } catch {
            throw StateStoreError(path: path, operation: "read the acme entries", reason: "the database refused the read")
        }
    }

    /// Applies an update's `acme` entries to the stored ones (inside a commit's transaction):
    /// a whole set replaces them; a batch upserts its acme entries and removes the names it
    /// deletes or replaces with another kind of entry. An entry that is no longer an acme
    /// entry takes its obtained certificate and key with it.
    static func writeACMEEntries(_ change: CertificateUpdateRequest.Change, db: Database) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let upsert = try db.cachedStatement(sql: "INSERT OR REPLACE INTO acme_entries (name, conf) VALUES (?, ?)")
        let deleteEntry = try db.cachedStatement(sql: "DELETE FROM acme_entries WHERE name = ?")
        let deleteCertificate = try db.cachedStatement(sql: "DELETE FROM acme_certificates WHERE name = ?")
        func delete(_ name: String) throws {
            try deleteEntry.execute(arguments: [name])
            try deleteCertificate.execute(arguments: [name])
        }
        func put(_ name: String, _ conf: CertificateConf) throws {
            guard conf.acme != nil else { return try delete(name) }
            var bare = conf
            bare.tlsCert = nil
            bare.tlsKey = nil
            try upsert.execute(arguments: [name, String(decoding: try encoder.encode(bare), as: UTF8.self)])
        }
        switch change {
        case .replace(let confs):
            let kept = confs.filter { $0.value.acme != nil }
            for name in try String.fetchAll(db, sql: "SELECT name FROM acme_certificates") where kept[name] == nil {
                try deleteCertificate.execute(arguments: [name])
            }
            try db.execute(sql: "DELETE FROM acme_entries")
            for (name, conf) in kept { try put(name, conf) }
        case .batch(let upserts, let deletions):
            for (name, conf) in upserts { try put(name, conf) }
            for name in deletions { try delete(name) }
        }
    }

    /// Removes the account kept for a CA's directory (the CA no longer knows it).
    func forgetACMEAccount(directory: String) throws(StateStoreError) {
        try write(operation: "remove the ACME account") { db in
            try db.execute(sql: "DELETE FROM acme_accounts WHERE directory = ?", arguments: [directory])
        }
    }

    func acmeCertificates() throws(StateStoreError) -> [String: StoredACMECertificate] {
        do {
            return try database.read { db in
                var result: [String: StoredACMECertificate] = [:]
                for row in try Row.fetchAll(db, sql: "SELECT * FROM acme_certificates") {
                    let name: String = row["name"]
                    let domains: String = row["domains"]
                    result[name] = StoredACMECertificate(
                        name: name, issuer: row["issuer"], domains: domains.split(separator: ",").map(String.init),
                        chainPEM: row["chain_pem"], keyPEM: row["key_pem"],
                        notBefore: Date(timeIntervalSince1970: row["not_before"]), notAfter: Date(timeIntervalSince1970: row["not_after"]),
                        certificateURL: row["certificate_url"], obtainedAt: Date(timeIntervalSince1970: row["obtained_at"]))
                }
                return result
            }
        } catch {
            throw StateStoreError(path: path, operation: "read the ACME certificates", reason: "the database refused the read")
        }
    }

    func saveACMECertificate(_ certificate: StoredACMECertificate) throws(StateStoreError) {
        try write(operation: "store the certificate obtained for \(certificate.name)") { db in
            try db.execute(
                sql: """
                INSERT INTO acme_certificates (name, issuer, domains, chain_pem, key_pem, not_before, not_after, certificate_url, obtained_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (name) DO UPDATE SET issuer = excluded.issuer, domains = excluded.domains, chain_pem = excluded.chain_pem,
                    key_pem = excluded.key_pem, not_before = excluded.not_before, not_after = excluded.not_after,
                    certificate_url = excluded.certificate_url, obtained_at = excluded.obtained_at
                """,
                arguments: [
                    certificate.name, certificate.issuer, certificate.domains.joined(separator: ","), certificate.chainPEM,
                    certificate.keyPEM, certificate.notBefore.timeIntervalSince1970, certificate.notAfter.timeIntervalSince1970,
                    certificate.certificateURL, certificate.obtainedAt.timeIntervalSince1970,
                ])
        }
    }
}
