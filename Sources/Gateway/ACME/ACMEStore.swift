import Foundation

/// Where the ACME state lives: accounts (key and URL per CA directory) and the certificates
/// obtained for entries — the node's SQLite state, or in a fleet the fleet's PostgreSQL
/// (``FleetACMEStore``), where every node sees the same accounts and certificates and a lock
/// per name lets one node order while the others wait.
///
/// Calls block; ``ACMEManager`` makes them on a queue of its own, never on Swift's
/// cooperative pool. Errors describe themselves in certgate's words.
protocol ACMEStore: OnDemandStore {
    func acmeAccount(directory: String) throws -> (keyPEM: String, accountURL: String?)?
    func saveACMEAccount(directory: String, keyPEM: String, accountURL: String?) throws
    func forgetACMEAccount(directory: String) throws
    func acmeCertificates() throws -> [String: StoredACMECertificate]
    /// The certificate stored for one entry (another node's, in a fleet).
    func acmeCertificate(named name: String) throws -> StoredACMECertificate?
    func saveACMECertificate(_ certificate: StoredACMECertificate) throws
    /// The right to order for `name` now, held until released; nil when another node holds it.
    func orderLock(name: String) throws -> (any ACMEOrderLock)?
    /// Closes what the store keeps open (the fleet's connection); the SQLite state stays open.
    func closeConnections()
}

/// A store's failure in certgate's words: the state's and the fleet's errors describe
/// themselves (their reasons are certgate's own); anything else is not quoted.
func describeStoreFailure(_ error: any Error) -> String {
    switch error {
    case let error as StateStoreError: return error.description
    case let error as SharedStateError: return error.description
    default: return "the ACME state failed unexpectedly"
    }
}

/// The right to order one name (see ``ACMEStore/orderLock(name:)``).
protocol ACMEOrderLock: Sendable {
    func release()
}

/// One process orders alone: the lock of the SQLite state is always free.
struct LocalOrderLock: ACMEOrderLock {
    func release() {}
}

extension StateStore: ACMEStore {
    func acmeCertificate(named name: String) throws -> StoredACMECertificate? {
        try acmeCertificates()[name]
    }

    func orderLock(name: String) throws -> (any ACMEOrderLock)? {
        LocalOrderLock()
    }

    func closeConnections() {}
}
