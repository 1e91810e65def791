/// An entry as a state store keeps it: its configuration as given and the PEM text it
/// was built from, so a restart serves exactly what was acknowledged even when the files
/// its configuration names have changed since.
public struct StoredCertificateEntry: Hashable, Sendable {
    public let conf: CertificateConf
    public let content: EntryContent
    /// The store proved that this is exactly what was validated when it was committed (a
    /// digest of the row kept with it matches): its restore skips the checks whose answer
    /// cannot have changed (see ``CertificateSet/restore(from:context:)``).
    public let verified: Bool

    public init(conf: CertificateConf, content: EntryContent, verified: Bool = false) {
        self.conf = conf
        self.content = content
        self.verified = verified
    }

}

extension CertificateSet {
    /// Rebuilds a stored set from its stored PEM text, never from files. A certificate that
    /// expired meanwhile is flagged, as at any build. An entry the store proved unchanged
    /// since its commit (``StoredCertificateEntry/verified``) is not proven again (its key is
    /// not parsed nor matched, its chain's signatures are not checked, the TLS library reads
    /// it at its first handshake); any other entry, and every issuer, is validated in full.
    public static func restore(
        from stored: [String: StoredCertificateEntry],
        context: CertificateBuildContext
    ) throws(CertificateSetError) -> CertificateSet {
        try CertificateSet.empty.updating(
            upserting: stored.mapValues(\.conf), deleting: [],
            knownContent: stored.mapValues(\.content), verified: Set(stored.filter(\.value.verified).keys), context: context
        ).set
    }

    /// Applies stored rows committed elsewhere (by another node of a fleet) to this set:
    /// each upsert is built from its stored PEM text, never from files, and, like
    /// ``restore(from:context:)``, not proven again when its row was proven unchanged.
    /// All-or-nothing.
    public func applyingStored(
        upserting stored: [String: StoredCertificateEntry], deleting deletions: some Collection<String>,
        context: CertificateBuildContext
    ) throws(CertificateSetError) -> CertificateSetChange {
        try updating(
            upserting: stored.mapValues(\.conf), deleting: deletions,
            knownContent: stored.mapValues(\.content), verified: Set(stored.filter(\.value.verified).keys), context: context)
    }
}
