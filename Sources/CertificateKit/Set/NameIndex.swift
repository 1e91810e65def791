/// The lookup tables of a certificate set: which entry serves which name.
/// Kept apart from the set so an update edits a copy of the previous tables
/// (O(changed) edits) instead of indexing every entry again.
struct NameIndex: Sendable {
    var exact = NameTable()
    /// `*.example.com` is stored under `example.com`.
    var wildcard = NameTable()
    var ipAddresses: [IPAddress: CertificateEntry] = [:]
    /// An issuer whose domains say `*` without being the default.
    var catchAll: CertificateEntry?
    var defaultEntry: CertificateEntry?

    /// Adds every name of `entry`, or nothing: the names another entry already claims
    /// come back as errors naming both entries.
    mutating func insert(_ entry: CertificateEntry) -> [CertificateEntryError] {
        var conflicts: [CertificateEntryError] = []
        func claimed(_ what: String, by other: CertificateEntry?) {
            guard let other, other !== entry else { return }
            conflicts.append(CertificateEntryError(
                entry: entry.name, field: "domains",
                reason: "'\(what)' is also claimed by entry '\(other.name)'; a name may belong to one entry only"))
        }
        for pattern in entry.patterns {
            switch pattern {
            case .exact(let name): claimed(name.text, by: exact[name.text])
            case .wildcard(let parent): claimed("*.\(parent.text)", by: wildcard[parent.text])
            case .ip(let address): claimed(address.description, by: ipAddresses[address])
            case .any where !entry.isDefault: claimed("*", by: catchAll)
            case .any: break
            }
        }
        if entry.isDefault, let other = defaultEntry, other !== entry {
            conflicts.append(CertificateEntryError(
                entry: entry.name, field: "is_default",
                reason: "entry '\(other.name)' is also the default; at most one entry may be"))
        }
        guard conflicts.isEmpty else { return conflicts }

        for pattern in entry.patterns {
            switch pattern {
            case .exact(let name): exact.set(name.text, entry)
            case .wildcard(let parent): wildcard.set(parent.text, entry)
            case .ip(let address): ipAddresses[address] = entry
            case .any where !entry.isDefault: catchAll = entry
            case .any: break
            }
        }
        if entry.isDefault { defaultEntry = entry }
        return []
    }

    /// Removes the names of `entry` (only where they still point at it).
    mutating func remove(_ entry: CertificateEntry) {
        for pattern in entry.patterns {
            switch pattern {
            case .exact(let name):
                if exact[name.text] === entry { exact.remove(name.text) }
            case .wildcard(let parent):
                if wildcard[parent.text] === entry { wildcard.remove(parent.text) }
            case .ip(let address):
                if ipAddresses[address] === entry { ipAddresses[address] = nil }
            case .any:
                if catchAll === entry { catchAll = nil }
            }
        }
        if defaultEntry === entry { defaultEntry = nil }
    }
}
