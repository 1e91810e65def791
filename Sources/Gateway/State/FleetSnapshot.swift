import Foundation
import GRDB

extension StateStore {
    /// Keeps, as the node's local snapshot, the fleet generation it now serves: the rows
    /// as the fleet stores them (their proofs too), the names removed — or, when `whole`,
    /// exactly these rows — and the fleet's position, in one transaction. A node starts
    /// from it when the fleet's database cannot be reached.
    func keepFleetSnapshot(
        rows: [StoredRow], removed: [String], whole: Bool, position: FleetPosition, committedAt: Date, source: UpdateSource,
        acmeEntries: CertificateUpdateRequest.Change? = nil
    ) throws(StateStoreError) {
        try write(operation: "keep the snapshot of \(position)") { db in
            if let acmeEntries { try Self.writeACMEEntries(acmeEntries, db: db) }
            if whole { try db.execute(sql: "DELETE FROM certificates") }
            try Self.upsert(rows: rows, generation: position.generation, db: db)
            if !whole {
                let delete = try db.cachedStatement(sql: "DELETE FROM certificates WHERE name = ?")
                for name in removed { try delete.execute(arguments: [name]) }
            }
            try db.execute(
                sql: """
                INSERT INTO set_state (id, generation, committed_at, source, fleet) VALUES (1, ?, ?, ?, ?)
                ON CONFLICT (id) DO UPDATE SET generation = excluded.generation,
                    committed_at = excluded.committed_at, source = excluded.source, fleet = excluded.fleet
                """,
                arguments: [Int64(position.generation), committedAt.timeIntervalSince1970, source.rawValue, position.fleet])
        }
    }

    /// Every stored entry's row as it is stored (to seed a fleet with this node's set).
    func loadRows() throws(StateStoreError) -> [StoredRow] {
        do {
            return try database.read { db in
                try Row.fetchAll(db, sql: "SELECT name, conf, certificate_pem, key_pem, cert_inline, key_inline, verified FROM certificates").map { row in
                    let proof: Data? = row["verified"]
                    return StoredRow(
                        name: row["name"], conf: row["conf"], certificatePEM: row["certificate_pem"], keyPEM: row["key_pem"],
                        certInline: row["cert_inline"], keyInline: row["key_inline"], proof: proof.map { Array($0) })
                }
            }
        } catch {
            throw StateStoreError(path: path, operation: "read the stored rows", reason: "the database refused the read")
        }
    }
}
