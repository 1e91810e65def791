import Foundation

/// Which cached leaf: the signing CA (SHA-256 of its certificate) and the leaf's name.
public struct IssuedLeafKey: Hashable, Sendable {
    public let authority: [UInt8]
    public let name: String

    public init(authority: [UInt8], name: String) {
        self.authority = authority
        self.name = name
    }
}

/// A signed leaf as kept across restarts: the leaf certificate and its key (the CA's own
/// chain is taken from the CA entry when the leaf is restored).
public struct IssuedLeafRecord: Hashable, Sendable {
    public let key: IssuedLeafKey
    public let certificatePEM: String
    public let keyPEM: String
    public let notAfter: Date

    public init(key: IssuedLeafKey, certificatePEM: String, keyPEM: String, notAfter: Date) {
        self.key = key
        self.certificatePEM = certificatePEM
        self.keyPEM = keyPEM
        self.notAfter = notAfter
    }
}

/// Where an ``IssuedCertificateCache`` keeps its leaves so a restart need not sign them
/// again. Called from signing threads and the sweep; an implementation must not block
/// for long (queue the write).
public protocol IssuedLeafPersistence: Sendable {
    /// A leaf was signed (or renewed) and is now cached.
    func saved(_ record: IssuedLeafRecord)
    /// These leaves left the cache (evicted, expired, idle, or their CA is gone).
    func dropped(_ keys: [IssuedLeafKey])
}
