import Dispatch
import Foundation

/// What an update did: the new set and the names it added, changed and removed.
public struct CertificateSetChange: Sendable {
    public let set: CertificateSet
    public let added: [String]
    public let changed: [String]
    public let removed: [String]
    /// The PEM text each added or changed entry was built from, for the state store to
    /// keep (entries themselves keep only a digest of it).
    public let contents: [String: EntryContent]

    public var isEmpty: Bool { added.isEmpty && changed.isEmpty && removed.isEmpty }
}

extension CertificateSet {
    /// Builds the set that holds exactly `confs`, reusing every entry of `previous`
    /// whose configuration and PEM content are unchanged (no parsing, no signature
    /// checks, same TLS objects). All-or-nothing: any invalid entry, or two entries
    /// claiming one name, throws every error at once.
    public static func build(
        from confs: [String: CertificateConf],
        context: CertificateBuildContext,
        reusing previous: CertificateSet = .empty
    ) throws(CertificateSetError) -> CertificateSetChange {
        // Every name of `previous` that `confs` lacks is deleted. When every previous name
        // is among `confs` (the usual reload) there is nothing to look for.
        let kept = confs.count >= previous.count ? confs.keys.reduce(0) { $0 + (previous.entries[$1] == nil ? 0 : 1) } : -1
        let deletions = kept == previous.count ? [] : previous.entries.keys.filter { confs[$0] == nil }
        return try previous.updating(upserting: confs, deleting: deletions, context: context)
    }

    /// Applies one batch — upsert `upserts`, delete `deletions` — to this set and
    /// returns the new set. Costs O(changed): unchanged upserts are recognised by
    /// content and reused, and the lookup tables are edited, not rebuilt.
    /// All-or-nothing; deleting a name that is not in the set is not an error.
    public func updating(
        upserting upserts: [String: CertificateConf],
        deleting deletions: some Collection<String>,
        context: CertificateBuildContext
    ) throws(CertificateSetError) -> CertificateSetChange {
        try updating(upserting: upserts, deleting: deletions, knownContent: [:], context: context)
    }

    /// As above; an entry named in `knownContent` is built from that PEM text instead of
    /// reading its `tls_cert`/`tls_key` (how a stored set is restored exactly as it was).
    func updating(
        upserting upserts: [String: CertificateConf],
        deleting deletions: some Collection<String>,
        knownContent: [String: EntryContent],
        verified: Set<String> = [],
        context: CertificateBuildContext
    ) throws(CertificateSetError) -> CertificateSetChange {
        var errors: [CertificateEntryError] = []
        let deletions = Set(deletions)
        for name in deletions.sorted() where upserts[name] != nil {
            errors.append(CertificateEntryError(entry: name, field: "name", reason: "both upserted and deleted in one update"))
        }

        // 1. Read each upsert's PEM text; keep the unchanged ones as they are.
        // Inline and base64 values are their own content: an unchanged conf is an unchanged
        // entry, skipped before any sorting or reading so a large unchanged set costs little.
        // Names only: a reload of 100,000 entries keeps no copies of their configurations in
        // passing (the heap it grows to is the heap it keeps).
        var candidates: [String] = []
        for (name, conf) in upserts {
            if let old = entries[name], !old.readsFiles, old.conf == conf { continue }
            candidates.append(name)
        }
        candidates.sort()
        var readable: [String] = []
        readable.reserveCapacity(candidates.count)
        for name in candidates {
            if let reason = Self.invalidNameReason(name) {
                // A name that is refused is not echoed when it could be a pasted key.
                errors.append(CertificateEntryError(entry: QuotedValue.shown(name, limit: 253), field: "name", reason: reason))
            } else {
                readable.append(name)
            }
        }
        candidates = []
        // Files are read on every core too; a file entry whose files carry the stamps they
        // had when it was built is not read at all.
        let reads = ConcurrentMap.map(readable) { name -> Read in
            guard let conf = upserts[name] else { return .failed(Self.notAnUpsert(name)) }
            if let known = knownContent[name] { return .content(known, stamps: []) }
            // Only an entry that reads the same files as before is stamped before it is read.
            if let old = entries[name], old.readsFiles, old.conf == conf,
               let stamps = CertificateEntryValidator.fileStamps(conf: conf, baseDirectory: context.baseDirectory),
               stamps == old.fileStamps {
                return .unchanged
            }
            do throws(CertificateEntryError) {
                let (content, stamps) = try CertificateEntryValidator.readContent(name: name, conf: conf, baseDirectory: context.baseDirectory)
                return .content(content, stamps: stamps)
            } catch {
                return .failed(error)
            }
        }
        var pending: [(name: String, content: EntryContent, stamps: [FileStamp])] = []
        for (name, read) in zip(readable, reads) {
            switch read {
            case .unchanged:
                continue
            case .content(let content, let stamps):
                if let old = entries[name], old.conf == upserts[name], old.contentDigest == content.digest { continue }
                pending.append((name, content, stamps))
            case .failed(let error):
                errors.append(error)
            }
        }

        // 2. Parse and validate the new and changed entries, on every core.
        let results = ConcurrentMap.map(pending) { item -> Result<CertificateEntry, CertificateSetError> in
            guard let conf = upserts[item.name] else { return .failure(CertificateSetError([Self.notAnUpsert(item.name)])) }
            return CertificateEntryValidator.validate(
                name: item.name, conf: conf, content: item.content, fileStamps: item.stamps, context: context,
                verified: verified.contains(item.name))
        }
        var fresh: [CertificateEntry] = []
        var contents: [String: EntryContent] = [:]
        for (item, result) in zip(pending, results) {
            switch result {
            case .success(let entry):
                fresh.append(entry)
                contents[entry.name] = item.content
            case .failure(let failure):
                errors += failure.errors
            }
        }

        // 3. Edit a copy of the lookup tables: out with the old versions, in with the new.
        var newEntries = entries
        var newIndex = index
        var removed: [String] = []
        for name in deletions.sorted() {
            if let old = newEntries.removeValue(forKey: name) {
                newIndex.remove(old)
                removed.append(name)
            }
        }
        var added: [String] = []
        var changed: [String] = []
        for entry in fresh {
            if let old = newEntries[entry.name] {
                newIndex.remove(old)
                changed.append(entry.name)
            } else {
                added.append(entry.name)
            }
        }
        for entry in fresh {
            let conflicts = newIndex.insert(entry)
            errors += conflicts
            newEntries[entry.name] = entry
        }
        guard errors.isEmpty else { throw CertificateSetError(errors) }
        return CertificateSetChange(
            set: CertificateSet(entries: newEntries, index: newIndex),
            added: added, changed: changed, removed: removed, contents: contents)
    }

    /// What step 1 found for one upsert.
    private enum Read: Sendable {
        /// The same configuration and file stamps as the entry in the set: reused.
        case unchanged
        case content(EntryContent, stamps: [FileStamp])
        case failed(CertificateEntryError)
    }

    /// Every name read and validated is one of the update's upserts; were one not, the
    /// update fails saying so rather than leaving the entry out.
    private static func notAnUpsert(_ name: String) -> CertificateEntryError {
        CertificateEntryError(entry: QuotedValue.shown(name, limit: 253), field: "name", reason: "is not among the update's entries")
    }

    /// Why `name` cannot name an entry (empty, over 253 bytes, spaces, control or format
    /// characters), or nil.
    public static func invalidNameReason(_ name: String) -> String? {
        if name.isEmpty { return "an entry needs a non-empty name" }
        if name.utf8.count > 253 { return "name longer than 253 bytes" }
        // Printable ASCII other than the space (every name of a usual set) needs no
        // Unicode property lookup.
        if name.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) { return nil }
        if name.unicodeScalars.contains(where: { [.control, .format].contains($0.properties.generalCategory) || $0 == " " }) {
            // Format characters too: U+202E would print a name backwards in a terminal.
            return "name contains spaces or control or format characters"
        }
        return nil
    }
}
