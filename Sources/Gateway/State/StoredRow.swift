import CertificateKit
import Foundation

/// One certificate entry as a state row — the same columns in the local SQLite state and in
/// a fleet's PostgreSQL: its configuration as JSON (inline material taken out, kept once in
/// the PEM columns and flagged), the PEM text it was built from (a key that lives in the
/// certificate's PEM is not repeated) and the ``RowProof`` of the whole row.
struct StoredRow: Sendable {
    var name: String
    var conf: String
    var certificatePEM: String
    /// Nil when the key is in `certificatePEM`.
    var keyPEM: String?
    var certInline: Bool
    var keyInline: Bool
    /// The ``RowProof`` as written; nil for rows from before proofs were kept.
    var proof: [UInt8]?

    /// The row a commit writes for a validated entry (so it carries a proof).
    init(entry: CertificateEntry, content: EntryContent, encoder: JSONEncoder) throws {
        var conf = entry.conf
        certInline = conf.tlsCert == content.certificatePEM
        keyInline = conf.tlsKey != nil && conf.tlsKey == content.keyPEM
        if certInline { conf.tlsCert = nil }
        if keyInline { conf.tlsKey = nil }
        name = entry.name
        self.conf = String(decoding: try encoder.encode(conf), as: UTF8.self)
        certificatePEM = content.certificatePEM
        keyPEM = content.keyPEM == content.certificatePEM ? nil : content.keyPEM
        proof = RowProof.digest(name: name, conf: self.conf, certificatePEM: certificatePEM, keyPEM: keyPEM,
                                certInline: certInline, keyInline: keyInline)
    }

    /// Why ``rows(of:builtBy:)`` cannot make a row.
    enum Problem: Error {
        /// The entry is not one the change built: its PEM text is not at hand.
        case noContent(entry: String)
        case unencodable(entry: String)
    }

    /// The rows of the entries `names` of `change.set`, each built by `change`, made on every
    /// core: encoding each configuration and hashing its PEM text is most of the work of
    /// committing a large set.
    static func rows(of names: [String], builtBy change: CertificateSetChange) throws(Problem) -> [StoredRow] {
        // Chunks of 256 rows, one encoder each.
        let chunks = stride(from: 0, to: names.count, by: 256).map { $0..<min($0 + 256, names.count) }
        let made = ConcurrentMap.map(chunks, chunk: 1) { range -> [Result<StoredRow, Problem>] in
            let encoder = makeEncoder()
            return names[range].map { name in
                guard let entry = change.set.entries[name], let content = change.contents[name] else { return .failure(.noContent(entry: name)) }
                guard let row = try? StoredRow(entry: entry, content: content, encoder: encoder) else { return .failure(.unencodable(entry: name)) }
                return .success(row)
            }
        }
        var rows: [StoredRow] = []
        rows.reserveCapacity(names.count)
        for result in made.joined() {
            switch result {
            case .success(let row): rows.append(row)
            case .failure(let problem): throw problem
            }
        }
        return rows
    }

    /// A row as read back.
    init(name: String, conf: String, certificatePEM: String, keyPEM: String?, certInline: Bool, keyInline: Bool, proof: [UInt8]?) {
        self.name = name
        self.conf = conf
        self.certificatePEM = certificatePEM
        self.keyPEM = keyPEM
        self.certInline = certInline
        self.keyInline = keyInline
        self.proof = proof
    }

    /// The encoder rows are written with (sorted keys: equal configurations, equal text).
    static func makeEncoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return encoder
    }

    /// The entry the row holds; `verified` when its proof still matches it.
    func stored() throws(StoredRowUnreadable) -> StoredCertificateEntry {
        var decoded: CertificateConf
        do {
            decoded = try JSONDecoder().decode(CertificateConf.self, from: Data(conf.utf8))
        } catch {
            throw StoredRowUnreadable(entry: name, reason: "its configuration does not decode")
        }
        let key = keyPEM ?? certificatePEM
        let verified = proof.map {
            $0 == RowProof.digest(name: name, conf: conf, certificatePEM: certificatePEM, keyPEM: keyPEM,
                                  certInline: certInline, keyInline: keyInline)
        } ?? false
        if certInline { decoded.tlsCert = certificatePEM }
        if keyInline { decoded.tlsKey = key }
        return StoredCertificateEntry(conf: decoded, content: EntryContent(certificatePEM: certificatePEM, keyPEM: key), verified: verified)
    }
}

/// A stored row that no longer reads back: which entry, and why.
struct StoredRowUnreadable: Error, CustomStringConvertible {
    let entry: String
    let reason: String
    var description: String { "entry \(QuotedValue.quote(entry)): \(reason)" }
}
