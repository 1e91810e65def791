import Crypto
import Foundation

/// The proof kept with each stored entry that the row is exactly what a commit wrote after
/// validating it: SHA-256 over every column that makes the entry (name, configuration JSON,
/// certificate PEM, key PEM or its absence, the two inline flags), each preceded by its
/// length so no two rows share a digest by moving bytes between columns. A restart that
/// finds the proof matching skips the checks the commit already made
/// (``CertificateKit/StoredCertificateEntry/verified``); a row edited or damaged outside
/// certgate no longer matches and is validated in full.
enum RowProof {
    static func digest(name: String, conf: String, certificatePEM: String, keyPEM: String?, certInline: Bool, keyInline: Bool) -> [UInt8] {
        var hasher = SHA256()
        func add(_ bytes: some Collection<UInt8>) {
            withUnsafeBytes(of: UInt64(bytes.count).bigEndian) { hasher.update(bufferPointer: $0) }
            hasher.update(data: Data(bytes))
        }
        add(Array("certgate-row-v1".utf8))
        add(name.utf8)
        add(conf.utf8)
        add(certificatePEM.utf8)
        add(keyPEM.map { [1] + Array($0.utf8) } ?? [0])
        add([certInline ? 1 : 0, keyInline ? 1 : 0])
        return Array(hasher.finalize())
    }
}
