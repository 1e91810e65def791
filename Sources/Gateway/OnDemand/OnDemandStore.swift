import CertificateKit
import Foundation
import GRDB
import PostgresNIO

/// A certificate obtained on demand for one host name, as stored: the certificate (its
/// `name` is the host, its `domains` the host alone), the on-demand entry it was obtained
/// through, and the last handshake that was served it (on any node of a fleet).
struct StoredOnDemandCertificate: Sendable, Equatable {
    var certificate: StoredACMECertificate
    var entry: String
    var lastUsed: Date

    var host: String { certificate.name }
}

/// What ``OnDemandOrdering/obtainOnDemand(host:entry:conf:previous:lastUsed:)`` came to.
enum OnDemandOrder: Sendable {
    /// Stored: ordered by this node (`ordered`), or found stored by another node (or an
    /// earlier order) and not due for renewal.
    case obtained(StoredACMECertificate, ordered: Bool)
    /// Another node of the fleet holds the name's order lock: its certificate will be stored.
    case orderedElsewhere
    /// The order failed (the reason, in certgate's words).
    case failed(String)
}

/// Who orders on-demand certificates (``ACMEManager``: its CAs, accounts and solvers).
protocol OnDemandOrdering: Sendable {
    /// Obtains and stores a certificate for `host` (a first one, or the renewal of `previous`)
    /// under the name's order lock.
    func obtainOnDemand(host: String, entry: String, conf: CertificateConf, previous: StoredACMECertificate?, lastUsed: Date) async -> OnDemandOrder
    /// When a certificate from the CA called `issuerName` is to be renewed.
    func renewalTime(of stored: StoredACMECertificate, issuerName: String, now: Date) -> Date
}

/// Where on-demand certificates live: the node's SQLite state, or a fleet's PostgreSQL.
/// Calls block (see ``ACMEStore``).
protocol OnDemandStore: Sendable {
    func onDemandCertificate(host: String) throws -> StoredOnDemandCertificate?
    func saveOnDemandCertificate(_ record: StoredOnDemandCertificate) throws
    /// Every stored on-demand certificate.
    func onDemandCertificates() throws -> [StoredOnDemandCertificate]
    /// Records handshakes: each host's `last_used` becomes the later of the stored and the given time.
    func markOnDemandUsed(_ lastUsed: [String: Date]) throws
    func removeOnDemandCertificates(_ hosts: [String]) throws
}

extension StateStore {
    private static let onDemandColumns = "host, entry, issuer, chain_pem, key_pem, not_before, not_after, certificate_url, obtained_at, last_used"

    func onDemandCertificate(host: String) throws -> StoredOnDemandCertificate? {
        try readOnDemand(operation: "read the on-demand certificate of \(host)") { db in
            try Row.fetchOne(db, sql: "SELECT \(Self.onDemandColumns) FROM acme_on_demand WHERE host = ?", arguments: [host]).map(Self.onDemandRecord)
        }
    }

    func onDemandCertificates() throws -> [StoredOnDemandCertificate] {
        try readOnDemand(operation: "read the on-demand certificates") { db in
            try Row.fetchAll(db, sql: "SELECT \(Self.onDemandColumns) FROM acme_on_demand ORDER BY host").map(Self.onDemandRecord)
        }
    }

    func saveOnDemandCertificate(_ record: StoredOnDemandCertificate) throws {
        let certificate = record.certificate
        try write(operation: "store the certificate obtained on demand for \(record.host)") { db in
            try db.execute(
                sql: """
                INSERT INTO acme_on_demand (\(Self.onDemandColumns)) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (host) DO UPDATE SET entry = excluded.entry, issuer = excluded.issuer, chain_pem = excluded.chain_pem,
                    key_pem = excluded.key_pem, not_before = excluded.not_before, not_after = excluded.not_after,
                    certificate_url = excluded.certificate_url, obtained_at = excluded.obtained_at,
                    last_used = max(last_used, excluded.last_used)
                """,
                arguments: [
                    record.host, record.entry, certificate.issuer, certificate.chainPEM, certificate.keyPEM,
                    certificate.notBefore.timeIntervalSince1970, certificate.notAfter.timeIntervalSince1970,
                    certificate.certificateURL, certificate.obtainedAt.timeIntervalSince1970, record.lastUsed.timeIntervalSince1970,
                ])
        }
    }

    func markOnDemandUsed(_ lastUsed: [String: Date]) throws {
        guard !lastUsed.isEmpty else { return }
        try write(operation: "record when on-demand certificates were served") { db in
            let update = try db.cachedStatement(sql: "UPDATE acme_on_demand SET last_used = max(last_used, ?) WHERE host = ?")
            for (host, time) in lastUsed { try update.execute(arguments: [time.timeIntervalSince1970, host]) }
        }
    }

    func removeOnDemandCertificates(_ hosts: [String]) throws {
        guard !hosts.isEmpty else { return }
        try write(operation: "remove idle on-demand certificates") { db in
            let delete = try db.cachedStatement(sql: "DELETE FROM acme_on_demand WHERE host = ?")
            for host in hosts { try delete.execute(arguments: [host]) }
        }
    }

    private func readOnDemand<T>(operation: String, _ body: (Database) throws -> T) throws(StateStoreError) -> T {
        do {
            return try database.read(body)
        } catch {
            throw StateStoreError(path: path, operation: operation, reason: Self.reason(error))
        }
    }

    private static func onDemandRecord(_ row: Row) -> StoredOnDemandCertificate {
        let host: String = row["host"]
        return StoredOnDemandCertificate(
            certificate: StoredACMECertificate(
                name: host, issuer: row["issuer"], domains: [host], chainPEM: row["chain_pem"], keyPEM: row["key_pem"],
                notBefore: Date(timeIntervalSince1970: row["not_before"]), notAfter: Date(timeIntervalSince1970: row["not_after"]),
                certificateURL: row["certificate_url"], obtainedAt: Date(timeIntervalSince1970: row["obtained_at"])),
            entry: row["entry"], lastUsed: Date(timeIntervalSince1970: row["last_used"]))
    }
}

extension FleetACMEStore {
    private static let onDemandColumns = "host, entry, issuer, chain_pem, key_pem, not_before, not_after, certificate_url, obtained_at, last_used"

    func onDemandCertificate(host: String) throws -> StoredOnDemandCertificate? {
        try database.withSession(operation: "read the on-demand certificate of \(host)") { session in
            try session.query("SELECT \(unescaped: Self.onDemandColumns) FROM certgate_acme_on_demand WHERE host = \(host)").first.map(Self.onDemandRecord)
        }
    }

    func onDemandCertificates() throws -> [StoredOnDemandCertificate] {
        try database.withSession(operation: "read the on-demand certificates") { session in
            try session.query(PostgresQuery(unsafeSQL: "SELECT \(Self.onDemandColumns) FROM certgate_acme_on_demand ORDER BY host")).map(Self.onDemandRecord)
        }
    }

    func saveOnDemandCertificate(_ record: StoredOnDemandCertificate) throws {
        let certificate = record.certificate
        try database.withSession(operation: "store the certificate obtained on demand for \(record.host)") { session in
            try session.query("""
                INSERT INTO certgate_acme_on_demand (\(unescaped: Self.onDemandColumns))
                VALUES (\(record.host), \(record.entry), \(certificate.issuer), \(certificate.chainPEM), \(certificate.keyPEM),
                        \(certificate.notBefore.timeIntervalSince1970), \(certificate.notAfter.timeIntervalSince1970),
                        \(certificate.certificateURL), \(certificate.obtainedAt.timeIntervalSince1970), \(record.lastUsed.timeIntervalSince1970))
                ON CONFLICT (host) DO UPDATE SET entry = excluded.entry, issuer = excluded.issuer, chain_pem = excluded.chain_pem,
                    key_pem = excluded.key_pem, not_before = excluded.not_before, not_after = excluded.not_after,
                    certificate_url = excluded.certificate_url, obtained_at = excluded.obtained_at,
                    last_used = GREATEST(certgate_acme_on_demand.last_used, excluded.last_used)
                """)
        }
    }

    func markOnDemandUsed(_ lastUsed: [String: Date]) throws {
        guard !lastUsed.isEmpty else { return }
        let hosts = Array(lastUsed.keys)
        let times = hosts.map { lastUsed[$0]!.timeIntervalSince1970 }
        try database.withSession(operation: "record when on-demand certificates were served") { session in
            try session.query("""
                UPDATE certgate_acme_on_demand AS stored SET last_used = GREATEST(stored.last_used, used.time)
                FROM unnest(\(hosts)::text[], \(times)::double precision[]) AS used(host, time)
                WHERE stored.host = used.host
                """)
        }
    }

    func removeOnDemandCertificates(_ hosts: [String]) throws {
        guard !hosts.isEmpty else { return }
        try database.withSession(operation: "remove idle on-demand certificates") { session in
            try session.query("DELETE FROM certgate_acme_on_demand WHERE host = ANY(\(hosts)::text[])")
        }
    }

    private static func onDemandRecord(_ row: PostgresRow) throws -> StoredOnDemandCertificate {
        let (host, entry, issuer, chainPEM, keyPEM, notBefore, notAfter, url, obtainedAt, lastUsed) =
            try row.decode((String, String, String, String, String, Double, Double, String, Double, Double).self)
        return StoredOnDemandCertificate(
            certificate: StoredACMECertificate(
                name: host, issuer: issuer, domains: [host], chainPEM: chainPEM, keyPEM: keyPEM,
                notBefore: Date(timeIntervalSince1970: notBefore), notAfter: Date(timeIntervalSince1970: notAfter),
                certificateURL: url, obtainedAt: Date(timeIntervalSince1970: obtainedAt)),
            entry: entry, lastUsed: Date(timeIntervalSince1970: lastUsed))
    }
}
