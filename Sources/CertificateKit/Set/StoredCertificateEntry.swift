/// An entry as a state store keeps it: its configuration as given and the PEM text it
/// was built from, so a restart serves exactly what was acknowledged even when the files
/// its configuration names have changed since.
public struct StoredCertificateEntry: Hashable, Sendable {
    public let conf: CertificateConf
    public let content: EntryContent

    public init(conf: CertificateConf, content: EntryContent) {
        self.conf = conf
        self.content = content
    }

}

extension CertificateSet {
    /// Rebuilds a stored set: every entry validated again (a certificate that expired
    /// meanwhile is flagged, as at any build) from its stored PEM text, never from files.
    public static func restore(
        from stored: [String: StoredCertificateEntry],
        context: CertificateBuildContext
    ) throws(CertificateSetError) -> CertificateSet {
        try CertificateSet.empty.updating(
            upserting: stored.mapValues(\.conf), deleting: [],
            knownContent: stored.mapValues(\.content), context: context
        ).set
    }
}
