import Foundation
import NIOCore
import PostgresNIO

/// The ACME state of a fleet, in its PostgreSQL: one account per CA directory for every
/// node, the certificates obtained for entries (whichever node ordered them), and a lock
/// per name — a session advisory lock on a connection of its own, so a node that dies
/// mid-order releases it — so one node orders a name while the others wait and then serve
/// what it obtained. Its own connection, apart from the update transaction's.
final class FleetACMEStore: ACMEStore {
    let database: FleetDatabase

    init(database: FleetDatabase) {
        self.database = database
    }

    func acmeAccount(directory: String) throws -> (keyPEM: String, accountURL: String?)? {
        try database.withSession(operation: "read the ACME account") { session in
            try session.query("SELECT key_pem, account_url FROM certgate_acme_accounts WHERE directory = \(directory)").first
                .map { try $0.decode((String, String?).self) }
                .map { (keyPEM: $0.0, accountURL: $0.1) }
        }
    }

    func saveACMEAccount(directory: String, keyPEM: String, accountURL: String?) throws {
        try database.withSession(operation: "store the ACME account") { session in
            try session.query("""
                INSERT INTO certgate_acme_accounts (directory, key_pem, account_url) VALUES (\(directory), \(keyPEM), \(accountURL))
                ON CONFLICT (directory) DO UPDATE SET key_pem = excluded.key_pem, account_url = excluded.account_url
                """)
        }
    }

    func forgetACMEAccount(directory: String) throws {
        try database.withSession(operation: "remove the ACME account") { session in
            try session.query("DELETE FROM certgate_acme_accounts WHERE directory = \(directory)")
        }
    }

    func acmeCertificates() throws -> [String: StoredACMECertificate] {
        try database.withSession(operation: "read the ACME certificates") { session in
            var result: [String: StoredACMECertificate] = [:]
            for row in try session.query(PostgresQuery(unsafeSQL: "SELECT \(Self.columns) FROM certgate_acme_certificates")) {
                let record = try Self.record(row)
                result[record.name] = record
            }
            return result
        }
    }

    func acmeCertificate(named name: String) throws -> StoredACMECertificate? {
        try database.withSession(operation: "read the ACME certificate of \(name)") { session in
            try session.query("SELECT \(unescaped: Self.columns) FROM certgate_acme_certificates WHERE name = \(name)").first.map(Self.record)
        }
    }

    func saveACMECertificate(_ certificate: StoredACMECertificate) throws {
        try database.withSession(operation: "store the certificate obtained for \(certificate.name)") { session in
            try session.query("""
                INSERT INTO certgate_acme_certificates (name, issuer, domains, chain_pem, key_pem, not_before, not_after, certificate_url, obtained_at)
                VALUES (\(certificate.name), \(certificate.issuer), \(certificate.domains.joined(separator: ",")), \(certificate.chainPEM),
                        \(certificate.keyPEM), \(certificate.notBefore.timeIntervalSince1970), \(certificate.notAfter.timeIntervalSince1970),
                        \(certificate.certificateURL), \(certificate.obtainedAt.timeIntervalSince1970))
                ON CONFLICT (name) DO UPDATE SET issuer = excluded.issuer, domains = excluded.domains, chain_pem = excluded.chain_pem,
                    key_pem = excluded.key_pem, not_before = excluded.not_before, not_after = excluded.not_after,
                    certificate_url = excluded.certificate_url, obtained_at = excluded.obtained_at
                """)
        }
    }

    func closeConnections() {
        database.close()
    }

    /// `pg_try_advisory_lock` on a new connection, kept open while the lock is held.
    func orderLock(name: String) throws -> (any ACMEOrderLock)? {
        let connection: PostgresConnection
        do {
            connection = try PostgresConnection.connect(
                on: database.group.any(), configuration: try database.connectionConfiguration(), id: 0, logger: database.silent
            ).wait()
        } catch {
            throw SharedStateError.from(error, operation: "lock \(name) for its order")
        }
        do {
            let session = FleetDatabase.Session(connection: connection, logger: database.silent, timeout: database.queryTimeout)
            let locked = try session.query("SELECT pg_try_advisory_lock(hashtextextended(\("certgate-acme-order:" + name), 0))").first?.decode(Bool.self) ?? false
            guard locked else {
                let closed: EventLoopFuture<Void> = connection.close()
                try? closed.wait()
                return nil
            }
            return FleetOrderLock(connection: connection)
        } catch {
            let closed: EventLoopFuture<Void> = connection.close()
            try? closed.wait()
            throw SharedStateError.from(error, operation: "lock \(name) for its order")
        }
    }

    private static let columns = "name, issuer, domains, chain_pem, key_pem, not_before, not_after, certificate_url, obtained_at"

    private static func record(_ row: PostgresRow) throws -> StoredACMECertificate {
        let (name, issuer, domains, chainPEM, keyPEM, notBefore, notAfter, url, obtainedAt) =
            try row.decode((String, String, String, String, String, Double, Double, String, Double).self)
        return StoredACMECertificate(
            name: name, issuer: issuer, domains: domains.split(separator: ",").map(String.init), chainPEM: chainPEM, keyPEM: keyPEM,
            notBefore: Date(timeIntervalSince1970: notBefore), notAfter: Date(timeIntervalSince1970: notAfter),
            certificateURL: url, obtainedAt: Date(timeIntervalSince1970: obtainedAt))
    }
}

/// A held order lock: closing its connection releases it (as a node's death would).
struct FleetOrderLock: ACMEOrderLock {
    let connection: PostgresConnection

    func release() {
        let closed: EventLoopFuture<Void> = connection.close()
        try? closed.wait()
    }
}
