import CertificateKit
import Foundation
import GRDB
#if canImport(Glibc)
import Glibc
#endif

/// The durable certificate set: one SQLite database in `state_dir` (`certgate.db`,
/// write-ahead log, `synchronous = FULL`, files 0600) holding the last committed set —
/// each entry's configuration and the PEM text it was built from — its generation, and
/// the local CA's issued leaves.
///
/// Every update is one SQLite transaction that writes only what changed (an upsert of
/// one entry is one row), committed before the update is swapped in and answered. A lock
/// file keeps a second certgate off the same state. With `shared_state`, the set here is the
/// node's local snapshot of the fleet's (see ``keepFleetSnapshot(rows:removed:whole:position:committedAt:source:acmeEntries:)``).
public final class StateStore: Sendable {
    /// The stored set and when and by what it was committed.
    public struct StoredSet: Sendable {
        public let generation: UInt64
        public let committedAt: Date
        public let source: UpdateSource
        public let entries: [String: StoredCertificateEntry]
        /// With `shared_state`: the fleet whose generation this is (the set is the node's
        /// local snapshot of it); nil for a set committed here.
        public var fleet: String? = nil
    }

    /// What `--reset-state` discarded.
    public struct ResetSummary: Sendable {
        public let generation: UInt64?
        public let entries: Int
        public let issuedLeaves: Int
    }

    public static let fileName = "certgate.db"

    /// The database file.
    public let path: String
    let database: DatabaseQueue
    private let lock: ExclusiveFileLock

    /// Opens (creating when needed) the state in `directory`: the folder 0700 when it is
    /// created, the database and its journal files 0600.
    public init(directory: String) throws(StateStoreError) {
        let directory = (directory as NSString).standardizingPath
        let path = (directory as NSString).appendingPathComponent(Self.fileName)
        self.path = path
        let fileManager = FileManager.default
        do {
            if !fileManager.fileExists(atPath: directory) {
                try fileManager.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            }
        } catch {
            throw StateStoreError(path: directory, operation: "create the state folder", reason: Self.reason(error))
        }
        do {
            lock = try ExclusiveFileLock(path: path + ".lock")
        } catch .held(let lockPath) {
            throw StateStoreError(path: path, operation: "open the state", reason: "another certgate uses this state (lock \(lockPath) is held)")
        } catch {
            throw StateStoreError(path: path, operation: "open the state", reason: Self.reason(error))
        }
        // SQLite gives its -wal and -shm files the database file's mode: create it 0600 first.
        try Self.restrictMode(path)
        var configuration = Configuration()
        configuration.label = "certgate.state"
        // WAL set here, not with `configuration.journalMode = .wal`: GRDB's WAL set-up runs
        // after this and lowers `synchronous` to NORMAL, under which a commit acknowledged
        // before a power cut can be lost. FULL syncs the log at every commit.
        configuration.prepareDatabase { db in
            guard try String.fetchOne(db, sql: "PRAGMA journal_mode = WAL") == "wal" else {
                throw StateStoreError(path: path, operation: "open the state", reason: "SQLite cannot use a write-ahead log here")
            }
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        let database: DatabaseQueue
        let newer: [String]
        do {
            database = try DatabaseQueue(path: path, configuration: configuration)
            newer = try database.read { db in
                try Self.migrator.appliedIdentifiers(db).subtracting(Self.migrator.migrations).sorted()
            }
            if newer.isEmpty { try Self.migrator.migrate(database) }
        } catch {
            throw StateStoreError(path: path, operation: "open the state", reason: Self.reason(error))
        }
        // A state written by a newer certgate is never read (or changed) by an older one.
        guard newer.isEmpty else {
            throw StateStoreError(
                path: path, operation: "open the state",
                reason: "it was written by a newer certgate (schema \(newer.joined(separator: ", "))); run that version, or move the state folder away")
        }
        self.database = database
        for suffix in ["-wal", "-shm"] where fileManager.fileExists(atPath: path + suffix) {
            try Self.restrictMode(path + suffix)
        }
    }

    /// What a stored set is, read without opening the state for writing or taking its lock
    /// (for `certgate check` while a gateway may be running): `nil` when there is no state
    /// or it holds no set.
    public static func storedSetSummary(inDirectory directory: String) throws(StateStoreError) -> StoredSetSummary? {
        let path = ((directory as NSString).standardizingPath as NSString).appendingPathComponent(fileName)
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        var configuration = Configuration()
        configuration.readonly = true
        do {
            let database = try DatabaseQueue(path: path, configuration: configuration)
            defer { try? database.close() }
            return try database.read { db -> StoredSetSummary? in
                guard try db.tableExists("set_state"),
                      let state = try Row.fetchOne(db, sql: "SELECT generation, committed_at, source FROM set_state WHERE id = 1") else {
                    return nil
                }
                return StoredSetSummary(
                    path: path, generation: UInt64(state["generation"] as Int64),
                    certificates: try Int.fetchOne(db, sql: "SELECT count(*) FROM certificates") ?? 0,
                    committedAt: Date(timeIntervalSince1970: state["committed_at"]), source: state["source"])
            }
        } catch {
            throw StateStoreError(path: path, operation: "read the stored set", reason: Self.reason(error))
        }
    }

    /// The stored set, or `nil` when nothing was ever committed (or after a reset).
    public func load() throws(StateStoreError) -> StoredSet? {
        do {
            return try database.read { db -> StoredSet? in
                guard let state = try Row.fetchOne(db, sql: "SELECT generation, committed_at, source, fleet FROM set_state WHERE id = 1") else {
                    return nil
                }
                var entries: [String: StoredCertificateEntry] = [:]
                let rows = try Row.fetchCursor(db, sql: "SELECT name, conf, certificate_pem, key_pem, cert_inline, key_inline, verified FROM certificates")
                while let row = try rows.next() {
                    let name: String = row["name"]
                    entries[name] = try Self.entry(from: row, name: name)
                }
                let sourceText: String = state["source"]
                guard let source = UpdateSource(rawValue: sourceText) else {
                    throw StateStoreError(
                        path: path, operation: "read the stored set",
                        reason: "the set's source \(QuotedValue.quote(sourceText)) is not config, control, signal or acme")
                }
                return StoredSet(
                    generation: UInt64(state["generation"] as Int64),
                    committedAt: Date(timeIntervalSince1970: state["committed_at"]),
                    source: source, entries: entries, fleet: state["fleet"])
            }
        } catch let error as StateStoreError {
            throw error
        } catch {
            throw StateStoreError(path: path, operation: "read the stored set", reason: Self.reason(error))
        }
    }

    /// Makes one update durable: the rows of the added and changed entries, the removal of
    /// the removed ones and the new generation, in one transaction. When it throws,
    /// nothing was written.
    ///
    /// - Parameter acmeEntries: the update's `acme` entries as sent (see
    ///   ``CertificateUpdateRequest/acmeEntries``), kept in the same transaction.
    public func commit(
        _ change: CertificateSetChange, generation: UInt64, source: UpdateSource, acmeEntries: CertificateUpdateRequest.Change? = nil,
        at time: Date = Date()
    ) throws(StateStoreError) {
        try write(operation: "commit generation \(generation)") { db in
            if let acmeEntries { try Self.writeACMEEntries(acmeEntries, db: db) }
            let previous = try Int64.fetchOne(db, sql: "SELECT generation FROM set_state WHERE id = 1")
            if let previous, previous != Int64(generation) - 1 {
                throw StateStoreError(
                    path: path, operation: "commit generation \(generation)",
                    reason: "the stored generation is \(previous), expected \(generation - 1): another writer changed the state")
            }
            // The first commit holds the whole set (it comes from a full build: every entry added).
            // Every commit writes its rows in name order: the primary key's index is filled
            // from left to right instead of at random places (SQLite inserting 100,000 rows of
            // 1 KB: 0.36 instead of 0.46 CPU seconds).
            let names = (previous == nil ? Array(change.set.entries.keys) : change.added + change.changed)
                .sorted()
            let rows: [StoredRow]
            do throws(StoredRow.Problem) {
                rows = try StoredRow.rows(of: names, builtBy: change)
            } catch {
                switch error {
                case .noContent(let name):
                    throw StateStoreError(path: path, operation: "commit generation \(generation)",
                                          reason: "entry '\(name)' comes without the PEM text it was built from")
                case .unencodable(let name):
                    throw StateStoreError(path: path, operation: "commit generation \(generation)",
                                          reason: "entry '\(name)': its configuration cannot be encoded")
                }
            }
            if previous == nil {
                try db.execute(sql: "DELETE FROM certificates")
                try Self.upsert(rows: rows, generation: generation, db: db)
            } else {
                try Self.upsert(rows: rows, generation: generation, db: db)
                let delete = try db.cachedStatement(sql: "DELETE FROM certificates WHERE name = ?")
                for name in change.removed { try delete.execute(arguments: [name]) }
            }
            try db.execute(
                sql: """
                INSERT INTO set_state (id, generation, committed_at, source, fleet) VALUES (1, ?, ?, ?, NULL)
                ON CONFLICT (id) DO UPDATE SET generation = excluded.generation,
                    committed_at = excluded.committed_at, source = excluded.source, fleet = NULL
                """,
                arguments: [Int64(generation), time.timeIntervalSince1970, source.rawValue])
        }
    }

    /// Discards the stored set and issued leaves (`certgate run --reset-state`).
    @discardableResult
    public func reset() throws(StateStoreError) -> ResetSummary {
        var summary = ResetSummary(generation: nil, entries: 0, issuedLeaves: 0)
        try write(operation: "reset the state") { db in
            let generation = try Int64.fetchOne(db, sql: "SELECT generation FROM set_state WHERE id = 1")
            let entries = try Int.fetchOne(db, sql: "SELECT count(*) FROM certificates") ?? 0
            let leaves = try Int.fetchOne(db, sql: "SELECT count(*) FROM issued_leaves") ?? 0
            try db.execute(sql: "DELETE FROM set_state; DELETE FROM certificates; DELETE FROM issued_leaves")
            summary = ResetSummary(generation: generation.map { UInt64($0) }, entries: entries, issuedLeaves: leaves)
        }
        return summary
    }

    /// Every stored issued leaf.
    public func loadIssuedLeaves() throws(StateStoreError) -> [IssuedLeafRecord] {
        do {
            return try database.read { db in
                try Row.fetchAll(db, sql: "SELECT authority, name, certificate_pem, key_pem, not_after FROM issued_leaves").map { row in
                    IssuedLeafRecord(
                        key: IssuedLeafKey(authority: Array(row["authority"] as Data), name: row["name"]),
                        certificatePEM: row["certificate_pem"], keyPEM: row["key_pem"],
                        notAfter: Date(timeIntervalSince1970: row["not_after"]))
                }
            }
        } catch {
            throw StateStoreError(path: path, operation: "read the issued leaves", reason: Self.reason(error))
        }
    }

    /// Stores and forgets issued leaves, in one transaction.
    public func writeIssuedLeaves(saving saved: [IssuedLeafRecord], dropping dropped: [IssuedLeafKey]) throws(StateStoreError) {
        guard !saved.isEmpty || !dropped.isEmpty else { return }
        try write(operation: "store issued leaves") { db in
            let delete = try db.cachedStatement(sql: "DELETE FROM issued_leaves WHERE authority = ? AND name = ?")
            for key in dropped { try delete.execute(arguments: [Data(key.authority), key.name]) }
            let insert = try db.cachedStatement(sql: """
                INSERT OR REPLACE INTO issued_leaves (authority, name, certificate_pem, key_pem, not_after)
                VALUES (?, ?, ?, ?, ?)
                """)
            for record in saved {
                try insert.execute(arguments: [
                    Data(record.key.authority), record.key.name, record.certificatePEM, record.keyPEM,
                    record.notAfter.timeIntervalSince1970,
                ])
            }
        }
    }

    /// Folds the write-ahead log into the database file (at a graceful shutdown).
    public func checkpoint() throws(StateStoreError) {
        do {
            try database.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA wal_checkpoint(TRUNCATE)") }
        } catch {
            throw StateStoreError(path: path, operation: "checkpoint", reason: Self.reason(error))
        }
    }

    // MARK: - Rows

    func write(operation: String, _ body: (Database) throws -> Void) throws(StateStoreError) {
        do {
            try database.writeWithoutTransaction { db in
                try db.inTransaction(.immediate) {
                    try body(db)
                    return .commit
                }
            }
        } catch let error as StateStoreError {
            throw error
        } catch {
            throw StateStoreError(path: path, operation: operation, reason: Self.reason(error))
        }
    }

    /// One row per entry (see ``StoredRow``); every row holds an entry the commit validated in full.
    static func upsert(rows: [StoredRow], generation: UInt64, db: Database) throws {
        guard !rows.isEmpty else { return }
        let statement = try db.cachedStatement(sql: """
            INSERT OR REPLACE INTO certificates (name, conf, certificate_pem, key_pem, cert_inline, key_inline, generation, verified)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?)
            """)
        for row in rows {
            try statement.execute(arguments: [
                row.name, row.conf, row.certificatePEM, row.keyPEM, row.certInline, row.keyInline, Int64(generation), row.proof.map { Data($0) },
            ])
        }
    }

    private static func entry(from row: Row, name: String) throws -> StoredCertificateEntry {
        let proof: Data? = row["verified"]
        return try StoredRow(
            name: name, conf: row["conf"], certificatePEM: row["certificate_pem"], keyPEM: row["key_pem"],
            certInline: row["cert_inline"], keyInline: row["key_inline"], proof: proof.map { Array($0) }
        ).stored()
    }

    private static func restrictMode(_ path: String) throws(StateStoreError) {
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            throw StateStoreError(path: path, operation: "create the state file", reason: String(cString: strerror(errno)))
        }
        defer { close(descriptor) }
        guard fchmod(descriptor, 0o600) == 0 else {
            throw StateStoreError(path: path, operation: "set mode 0600", reason: String(cString: strerror(errno)))
        }
    }

    private static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE set_state (
                    id INTEGER PRIMARY KEY CHECK (id = 1),
                    generation INTEGER NOT NULL,
                    committed_at REAL NOT NULL,
                    source TEXT NOT NULL
                );
                CREATE TABLE certificates (
                    name TEXT PRIMARY KEY NOT NULL,
                    conf TEXT NOT NULL,
                    certificate_pem TEXT NOT NULL,
                    key_pem TEXT,
                    cert_inline INTEGER NOT NULL,
                    key_inline INTEGER NOT NULL,
                    generation INTEGER NOT NULL
                );
                CREATE TABLE issued_leaves (
                    authority BLOB NOT NULL,
                    name TEXT NOT NULL,
                    certificate_pem TEXT NOT NULL,
                    key_pem TEXT NOT NULL,
                    not_after REAL NOT NULL,
                    PRIMARY KEY (authority, name)
                );
                """)
        }
        migrator.registerMigration("v2-acme") { db in
            try db.execute(sql: """
                CREATE TABLE acme_accounts (
                    directory TEXT PRIMARY KEY NOT NULL,
                    key_pem TEXT NOT NULL,
                    account_url TEXT
                );
                CREATE TABLE acme_certificates (
                    name TEXT PRIMARY KEY NOT NULL,
                    issuer TEXT NOT NULL,
                    domains TEXT NOT NULL,
                    chain_pem TEXT NOT NULL,
                    key_pem TEXT NOT NULL,
                    not_before REAL NOT NULL,
                    not_after REAL NOT NULL,
                    certificate_url TEXT NOT NULL,
                    obtained_at REAL NOT NULL
                );
                """)
        }
        migrator.registerMigration("v3-verified") { db in
            // A digest of each row as written by a commit of a validated entry; rows from
            // before (NULL) are validated in full at the next start and proven at their next commit.
            try db.execute(sql: "ALTER TABLE certificates ADD COLUMN verified BLOB")
        }
        migrator.registerMigration("v4-acme-entries") { db in
            // Every acme entry of the committed set as configured, pending ones included.
            try db.execute(sql: "CREATE TABLE acme_entries (name TEXT PRIMARY KEY NOT NULL, conf TEXT NOT NULL)")
        }
        migrator.registerMigration("v5-fleet") { db in
            // With shared_state, the set here is a snapshot of this fleet's generation.
            try db.execute(sql: "ALTER TABLE set_state ADD COLUMN fleet TEXT")
        }
        migrator.registerMigration("v6-on-demand") { db in
            // Certificates obtained on demand, by host name, with the last handshake that used one.
            try db.execute(sql: """
                CREATE TABLE acme_on_demand (
                    host TEXT PRIMARY KEY NOT NULL,
                    entry TEXT NOT NULL,
                    issuer TEXT NOT NULL,
                    chain_pem TEXT NOT NULL,
                    key_pem TEXT NOT NULL,
                    not_before REAL NOT NULL,
                    not_after REAL NOT NULL,
                    certificate_url TEXT NOT NULL,
                    obtained_at REAL NOT NULL,
                    last_used REAL NOT NULL
                )
                """)
        }
        return migrator
    }
}

/// A stored set in brief: where, which generation, how many entries, when and by what.
public struct StoredSetSummary: Codable, Sendable, Equatable {
    public let path: String
    public let generation: UInt64
    public let certificates: Int
    public let committedAt: Date
    public let source: String

    enum CodingKeys: String, CodingKey {
        case path, generation, certificates, source
        case committedAt = "committed_at"
    }
}

extension StateStore {
    /// What a primary SQLite result code means (https://sqlite.org/rescode.html), in
    /// certgate's words.
    static func sqliteReason(_ code: ResultCode) -> String {
        switch code {
        case .SQLITE_PERM: return "access permission denied"
        case .SQLITE_BUSY: return "the database is locked by another connection"
        case .SQLITE_LOCKED: return "a table is locked by another statement"
        case .SQLITE_NOMEM: return "out of memory"
        case .SQLITE_READONLY: return "the database is read-only"
        case .SQLITE_IOERR: return "a disk I/O error"
        case .SQLITE_CORRUPT: return "the database file is malformed"
        case .SQLITE_FULL: return "the disk is full"
        case .SQLITE_CANTOPEN: return "the file cannot be opened"
        case .SQLITE_PROTOCOL: return "a locking protocol error"
        case .SQLITE_SCHEMA: return "the schema changed"
        case .SQLITE_TOOBIG: return "a row is too big"
        case .SQLITE_CONSTRAINT: return "a constraint refused the write"
        case .SQLITE_MISMATCH: return "a value of the wrong type"
        case .SQLITE_AUTH: return "not authorized"
        case .SQLITE_NOTADB: return "file is not a database"
        default: return "the database refused the operation"
        }
    }

    /// Why a state operation failed, in words that quote no stored value: SQLite's result
    /// code and what it means (never SQLite's message, which can quote what it was given), a
    /// stored row that does not read back, or the system's reason for the folder.
    static func reason(_ error: any Error) -> String {
        switch error {
        case let error as DatabaseError:
            // SQLite's own message can quote what it was given (a trigger's text, a value):
            // its result code says enough, in certgate's words.
            return "SQLite error \(error.resultCode.rawValue): \(sqliteReason(error.resultCode.primaryResultCode))"
        case let error as StoredRowUnreadable:
            return error.description
        case let error as CocoaError:
            return error.code == .fileWriteNoPermission ? "permission denied" : "the file system refused it (Cocoa error \(error.code.rawValue))"
        default:
            return "an unexpected error"
        }
    }
}

/// The state could not be read or written: where, doing what, and why.
public struct StateStoreError: Error, Sendable, CustomStringConvertible {
    public let path: String
    public let operation: String
    public let reason: String

    public var description: String { "state \(path): cannot \(operation): \(reason)" }
}
