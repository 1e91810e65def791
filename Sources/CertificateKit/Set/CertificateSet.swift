/// An immutable, validated set of certificate entries and its lookup tables.
///
/// A set exists only as the result of validating every entry (``build(from:context:reusing:)``,
/// ``updating(upserting:deleting:context:)``): a handshake that reads a set sees one
/// consistent whole.
public final class CertificateSet: Sendable {
    /// Entries by name.
    public let entries: [String: CertificateEntry]
    /// The lookup tables; an update edits a copy of them.
    let index: NameIndex

    init(entries: [String: CertificateEntry], index: NameIndex) {
        self.entries = entries
        self.index = index
    }

    public static let empty = CertificateSet(entries: [:], index: NameIndex())

    public var count: Int { entries.count }
    public var defaultEntry: CertificateEntry? { index.defaultEntry }
    /// Entries sorted by name (for listings).
    public var sortedEntries: [CertificateEntry] { entries.values.sorted { $0.name < $1.name } }

    /// Chooses the entry for one handshake.
    ///
    /// With a valid SNI: the exact name, then the one-level wildcard (`a.b.example.com`
    /// → `*.b.example.com`), then an issuer that takes every name (`*`), then the default.
    /// Without an SNI (or with one that is not a valid host name): the entry whose IP
    /// SAN is `localAddress`, then the default. `nil` when nothing matches.
    public func lookup(serverName rawServerName: String?, localAddress: IPAddress?) -> CertificateMatch? {
        if let rawServerName, let name = ServerName.normalize(rawServerName) {
            if let (entry, kind) = probeNameTables(name) {
                return CertificateMatch(entry: entry, kind: kind, serverName: name)
            }
            if let entry = index.catchAll {
                return CertificateMatch(entry: entry, kind: .catchAll, serverName: name)
            }
            return index.defaultEntry.map { CertificateMatch(entry: $0, kind: .default, serverName: name) }
        }
        if let localAddress, let entry = index.ipAddresses[localAddress] {
            return CertificateMatch(entry: entry, kind: .ip, serverName: nil)
        }
        return index.defaultEntry.map { CertificateMatch(entry: $0, kind: .default, serverName: nil) }
    }

    /// Exact name, then the one-level wildcard, on the name's octets.
    private func probeNameTables(_ name: ServerName) -> (CertificateEntry, CertificateMatch.Kind)? {
        func probe(_ octets: UnsafeBufferPointer<UInt8>) -> (CertificateEntry, CertificateMatch.Kind)? {
            if let entry = index.exact.find(octets) { return (entry, .exact) }
            if let dot = octets.firstIndex(of: UInt8(ascii: ".")),
               let entry = index.wildcard.find(UnsafeBufferPointer(rebasing: octets[(dot + 1)...])) {
                return (entry, .wildcard)
            }
            return nil
        }
        // Normalised names are native strings, so the first path is the one taken.
        if let result = name.text.utf8.withContiguousStorageIfAvailable(probe) { return result }
        var copy = name.text
        return copy.withUTF8(probe)
    }
}
