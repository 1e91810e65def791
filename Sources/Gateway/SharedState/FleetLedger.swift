import CertificateKit
import Foundation
import NIOCore
import PostgresNIO

/// The fleet's committed history in PostgreSQL: setting the tables up, reading what changed
/// since a node's position, and the write transaction every update of every node goes
/// through (``write(after:_:)``) — the fleet's row lock taken first, so writers queue
/// fleet-wide and a generation is never committed twice.
extension FleetDatabase {
    /// The row that says where the fleet is.
    struct Head: Sendable {
        var position: FleetPosition
        var committedAt: Date
        var source: UpdateSource
        var node: String
        /// Removals at or below this generation are no longer listed.
        var forgottenThrough: Int64
    }

    /// What a node brings when it finds the fleet empty: its set becomes the fleet's first.
    struct Seed: Sendable {
        var rows: [StoredRow]
        var generation: UInt64
        var source: UpdateSource
        var committedAt: Date
        /// Its acme entries as configured (pending ones included).
        var acmeEntries: [String: CertificateConf] = [:]
    }

    enum Joined: Sendable {
        /// The fleet held a set: what brings the node's snapshot (at the position it gave) to
        /// it — all of it, when the node had none of this fleet's or is too far behind.
        case existing(FleetChanges)
        /// The fleet was empty and now holds the seed, as this fleet.
        case seeded(FleetPosition)
    }

    /// Creates or migrates the tables; refuses a database a newer certgate set up.
    func migrate() throws(SharedStateError) {
        try withSession(operation: "set up the tables") { session in
            try session.transaction {
                try session.query("SELECT pg_advisory_xact_lock(\(FleetSchema.setupLock))")
                try session.query("CREATE TABLE IF NOT EXISTS certgate_schema (version TEXT PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)")
                let applied = Set(try session.query("SELECT version FROM certgate_schema").map { try $0.decode(String.self) })
                let known = Set(FleetSchema.migrations.map(\.version))
                let newer = applied.subtracting(known).sorted()
                guard newer.isEmpty else {
                    throw SharedStateError(
                        operation: "set up the tables",
                        reason: "the database was set up by a newer certgate (schema \(newer.joined(separator: ", "))); run that version")
                }
                for migration in FleetSchema.migrations where !applied.contains(migration.version) {
                    for statement in migration.sql { try session.query(PostgresQuery(unsafeSQL: statement)) }
                    try session.query("INSERT INTO certgate_schema (version, applied_at) VALUES (\(migration.version), \(Date().timeIntervalSince1970))")
                }
            }
        }
    }

    /// Joins the fleet: what it committed after `position` (the node's local snapshot), or —
    /// when it holds no set yet — `seed` as its first set (nodes starting together: one
    /// seeds, the others load what it seeded).
    func join(after position: FleetPosition?, seed: () throws -> Seed) throws(SharedStateError) -> Joined {
        try withSession(operation: "join the fleet") { session in
            try session.transaction {
                try session.query("SELECT pg_advisory_xact_lock(\(FleetSchema.setupLock))")
                if let head = try Self.head(session) {
                    return .existing(try Self.changes(after: position, head: head, session: session))
                }
                let seed = try seed()
                let position = FleetPosition(fleet: UUID().uuidString.lowercased(), generation: seed.generation)
                try Self.upsert(seed.rows, generation: seed.generation, session: session)
                try Self.writeACMEEntries(.replace(seed.acmeEntries), session: session)
                try session.query("""
                    INSERT INTO certgate_fleet (id, fleet_id, generation, committed_at, source, node)
                    VALUES (1, \(position.fleet), \(Int64(seed.generation)), \(seed.committedAt.timeIntervalSince1970), \(seed.source.rawValue), \(configuration.node))
                    """)
                return .seeded(position)
            }
        }
    }

    /// What the fleet committed after `position` (everything, when `position` is nil or
    /// not of this fleet); nil when the node is at the fleet's position or the fleet holds
    /// no set. Read in one snapshot of the database: never a mix of two commits.
    func changes(after position: FleetPosition?) throws(SharedStateError) -> FleetChanges? {
        try withSession(operation: "read the fleet's changes") { session in
            try session.transaction("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY") {
                guard let head = try Self.head(session), head.position != position else { return nil }
                return try Self.changes(after: position, head: head, session: session)
            }
        }
    }

    /// One commit, fleet-wide: takes the fleet's row lock (other writers wait), gives `body`
    /// what was committed after `position` meanwhile (nil: nothing) and a writer for its
    /// rows, and commits when `body` returns — or writes nothing when it throws.
    func write<T>(after position: FleetPosition?, _ body: (FleetChanges?, Writer) throws -> T) throws(SharedStateError) -> T {
        try withSession(operation: "commit to the fleet") { session in
            try session.transaction {
                guard let head = try Self.head(session, locking: true) else {
                    throw SharedStateError(operation: "commit to the fleet", reason: "the fleet holds no set (its tables were emptied); restart the node")
                }
                let behind = head.position == position ? nil : try Self.changes(after: position, head: head, session: session)
                return try body(behind, Writer(session: session, fleet: head.position.fleet, node: configuration.node))
            }
        }
    }

    /// Writes one generation inside ``write(after:_:)``.
    struct Writer {
        let session: Session
        let fleet: String
        let node: String

        /// The rows of generation `generation` (added and changed entries), the names it
        /// removes, and the fleet's new head; notifies every node at commit.
        /// `acmeEntries`: the update's acme entries as sent (nil: no change to them).
        func commit(
            rows: [StoredRow], removed: [String], generation: UInt64, source: UpdateSource, committedAt: Date,
            acmeEntries: CertificateUpdateRequest.Change?
        ) throws -> FleetPosition {
            try FleetDatabase.upsert(rows, generation: generation, session: session)
            if let acmeEntries { try FleetDatabase.writeACMEEntries(acmeEntries, session: session) }
            if !removed.isEmpty {
                try session.query("DELETE FROM certgate_certificates WHERE name = ANY(\(removed)::text[])")
                try session.query("""
                    INSERT INTO certgate_removed (name, generation) SELECT unnest(\(removed)::text[]), \(Int64(generation))
                    ON CONFLICT (name) DO UPDATE SET generation = excluded.generation
                    """)
            }
            // Removals older than the window are forgotten; a node that far behind loads the whole set.
            let forgotten = Int64(generation) - Int64(FleetSchema.removalsKept)
            if forgotten >= 0 {
                try session.query("DELETE FROM certgate_removed WHERE generation <= \(forgotten)")
            }
            try session.query("""
                UPDATE certgate_fleet SET generation = \(Int64(generation)), committed_at = \(committedAt.timeIntervalSince1970),
                    source = \(source.rawValue), node = \(node), forgotten_through = GREATEST(forgotten_through, \(forgotten))
                WHERE id = 1
                """)
            try session.query("SELECT pg_notify(\(FleetDatabase.channel), \(String(generation)))")
            return FleetPosition(fleet: fleet, generation: generation)
        }
    }

    /// The channel commits are announced on; the payload is the new generation.
    static let channel = "certgate_set"

    // MARK: - Rows

    private static func head(_ session: Session, locking: Bool = false) throws -> Head? {
        let sql = "SELECT fleet_id, generation, committed_at, source, node, forgotten_through FROM certgate_fleet WHERE id = 1" + (locking ? " FOR UPDATE" : "")
        guard let row = try session.query(PostgresQuery(unsafeSQL: sql)).first else { return nil }
        let (fleet, generation, committedAt, sourceText, node, forgotten) = try row.decode((String, Int64, Double, String, String, Int64).self)
        guard let source = UpdateSource(rawValue: sourceText), generation >= 0 else {
            throw SharedStateError(operation: "read the fleet's generation", reason: "the fleet's row is damaged (source or generation out of range)")
        }
        return Head(
            position: FleetPosition(fleet: fleet, generation: UInt64(generation)), committedAt: Date(timeIntervalSince1970: committedAt),
            source: source, node: node, forgottenThrough: forgotten)
    }

    private static func changes(after position: FleetPosition?, head: Head, session: Session) throws -> FleetChanges {
        let whole: Bool
        if let position, position.fleet == head.position.fleet, position.generation <= head.position.generation,
           Int64(position.generation) >= head.forgottenThrough {
            whole = false
        } else {
            whole = true
        }
        let columns = "name, conf, certificate_pem, key_pem, cert_inline, key_inline, verified"
        let since = Int64(position?.generation ?? 0)
        let rows = try session.query(
            whole
                ? PostgresQuery(unsafeSQL: "SELECT \(columns) FROM certgate_certificates")
                : "SELECT \(unescaped: columns) FROM certgate_certificates WHERE generation > \(since)"
        ).map { row in
            let (name, conf, certificatePEM, keyPEM, certInline, keyInline, proof) = try row.decode((String, String, String, String?, Bool, Bool, ByteBuffer?).self)
            return StoredRow(
                name: name, conf: conf, certificatePEM: certificatePEM, keyPEM: keyPEM, certInline: certInline, keyInline: keyInline,
                proof: proof.map { Array($0.readableBytesView) })
        }
        let removed = whole ? [] : try session.query("SELECT name FROM certgate_removed WHERE generation > \(since)").map { try $0.decode(String.self) }
        return FleetChanges(
            position: head.position, committedAt: head.committedAt, source: head.source, node: head.node,
            rows: rows, removed: removed, whole: whole, acmeEntries: try acmeEntries(session))
    }

    /// Every acme entry the fleet keeps (a few per name at most: read whole at each follow).
    private static func acmeEntries(_ session: Session) throws -> [String: CertificateConf] {
        var entries: [String: CertificateConf] = [:]
        for row in try session.query("SELECT name, conf FROM certgate_acme_entries") {
            let (name, json) = try row.decode((String, String).self)
            guard let conf = try? JSONDecoder().decode(CertificateConf.self, from: Data(json.utf8)) else {
                throw SharedStateError(operation: "read the fleet's acme entries", reason: "entry \(QuotedValue.quote(name)) does not decode")
            }
            entries[name] = conf
        }
        return entries
    }

    /// Applies an update's acme entries to the fleet's (as the SQLite state does its own): a
    /// whole set replaces them; a batch upserts its acme entries and removes the names it
    /// deletes or replaces with another kind of entry.
    fileprivate static func writeACMEEntries(_ change: CertificateUpdateRequest.Change, session: Session) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        func bare(_ conf: CertificateConf) throws -> String {
            var bare = conf
            bare.tlsCert = nil
            bare.tlsKey = nil
            return String(decoding: try encoder.encode(bare), as: UTF8.self)
        }
        var upserts: [String: CertificateConf]
        var deletions: [String]
        switch change {
        case .replace(let confs):
            try session.query("DELETE FROM certgate_acme_entries")
            upserts = confs.filter { $0.value.acme != nil }
            deletions = []
        case .batch(let batch, let deleted):
            upserts = batch.filter { $0.value.acme != nil }
            deletions = deleted + batch.keys.filter { batch[$0]?.acme == nil }
        }
        if !deletions.isEmpty {
            try session.query("DELETE FROM certgate_acme_entries WHERE name = ANY(\(deletions)::text[])")
        }
        guard !upserts.isEmpty else { return }
        let names = Array(upserts.keys)
        let confs = try names.map { try bare(upserts[$0]!) }
        try session.query("""
            INSERT INTO certgate_acme_entries (name, conf) SELECT * FROM unnest(\(names)::text[], \(confs)::text[])
            ON CONFLICT (name) DO UPDATE SET conf = excluded.conf
            """)
    }

    /// Upserts rows in batches (one statement per 2,000 rows, not one per row).
    fileprivate static func upsert(_ rows: [StoredRow], generation: UInt64, session: Session) throws {
        var start = 0
        while start < rows.count {
            let batch = rows[start..<min(start + 2_000, rows.count)]
            start += batch.count
            let names = batch.map(\.name)
            try session.query("""
                INSERT INTO certgate_certificates (name, conf, certificate_pem, key_pem, cert_inline, key_inline, verified, generation)
                SELECT n, c, p, NULLIF(k, ''), ci, ki, NULLIF(v, ''::bytea), \(Int64(generation))
                FROM unnest(\(names)::text[], \(batch.map(\.conf))::text[], \(batch.map(\.certificatePEM))::text[],
                            \(batch.map { $0.keyPEM ?? "" })::text[], \(batch.map(\.certInline))::bool[], \(batch.map(\.keyInline))::bool[],
                            \(batch.map { ByteBuffer(bytes: $0.proof ?? []) })::bytea[]) AS t(n, c, p, k, ci, ki, v)
                ON CONFLICT (name) DO UPDATE SET conf = excluded.conf, certificate_pem = excluded.certificate_pem,
                    key_pem = excluded.key_pem, cert_inline = excluded.cert_inline, key_inline = excluded.key_inline,
                    verified = excluded.verified, generation = excluded.generation
                """)
            try session.query("DELETE FROM certgate_removed WHERE name = ANY(\(names)::text[])")
        }
    }
}
