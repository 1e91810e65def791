/// What an update leaves that clients will feel, though it is valid and applied: the
/// default entry removed (clients without SNI, or with a name no entry serves, now fail
/// their handshake), the set left empty, and each added or changed entry's own warnings.
///
/// Such updates are allowed — an operator may mean them — but never silent: they are in
/// `UpdateResult.warnings`, printed by `certgate ctl`, and logged.
public enum UpdateWarnings {
    /// - Returns: set-level warnings first (entry = the default's name, field
    ///   `is_default`; or entry "" and field `certificates` for an empty set), then each
    ///   added or changed entry's warnings (field "": the entry as a whole), by name.
    public static func of(_ change: CertificateSetChange, previous: CertificateSet) -> [CertificateEntryError] {
        var warnings: [CertificateEntryError] = []
        if change.set.count == 0 && previous.count > 0 {
            warnings.append(CertificateEntryError(
                entry: "", field: "certificates",
                reason: "the set is now empty: every handshake fails until an entry is added"))
        } else if let previousDefault = previous.defaultEntry, change.set.defaultEntry == nil {
            let how = change.removed.contains(previousDefault.name) ? "removed" : "no longer the default"
            warnings.append(CertificateEntryError(
                entry: previousDefault.name, field: "is_default",
                reason: "the default entry is \(how) and no other is the default: clients without SNI, or asking for a name no entry serves, now fail the handshake"))
        }
        for name in (change.added + change.changed).sorted() {
            guard let entry = change.set.entries[name] else { continue }
            warnings += entry.warnings.map { CertificateEntryError(entry: name, field: "", reason: $0) }
        }
        return warnings
    }
}
