import CertificateKit
import Yams

/// The keys the configuration file may hold, section by section, so that a key certgate
/// does not know — a typo like `tls_kye` — is an error naming the key, its line and the
/// closest known key (as nginx and Caddy do), never silently ignored.
///
/// The known keys come from each section's `CodingKeys`, so a key added to a type is
/// known here without a second list.
indirect enum ConfigurationSchema: Sendable {
    /// A mapping with these keys, each value of its own shape.
    case section([String: ConfigurationSchema])
    /// A mapping whose keys are names the user chooses (`certificates:`, `headers:`).
    case named(ConfigurationSchema)
    /// A list of items of one shape.
    case list(ConfigurationSchema)
    /// A value whose insides are not keys (a scalar, a list of strings).
    case value

    /// A section whose keys are `keys`' cases; `nested` gives the shape of some of them.
    static func section<Keys: CodingKey & CaseIterable>(
        _ keys: Keys.Type, nested: [String: ConfigurationSchema] = [:]
    ) -> ConfigurationSchema {
        section(names: keys.allCases.map(\.stringValue), nested: nested)
    }

    static func section(names: [String], nested: [String: ConfigurationSchema] = [:]) -> ConfigurationSchema {
        var known: [String: ConfigurationSchema] = [:]
        for name in names { known[name] = nested[name] ?? .value }
        return .section(known)
    }

    /// Every key in `node` that this schema does not know, in file order.
    func unknownKeys(in node: Node, file: String) -> [ConfigurationError] {
        var errors: [ConfigurationError] = []
        collectUnknownKeys(in: node, path: { [] }, file: file, into: &errors)
        return errors
    }

    /// Adds to `errors` every key in `node` this schema does not know. `path` (the keys
    /// leading to `node`) is made only for an error: a `certificates:` section of 100,000
    /// entries has nothing to quote when every key is known.
    private func collectUnknownKeys(
        in node: Node, path: () -> [String], file: String, into errors: inout [ConfigurationError]
    ) {
        switch self {
        case .value:
            return
        case .list(let item):
            guard let sequence = node.sequence else { return }
            for (index, element) in sequence.enumerated() {
                item.collectUnknownKeys(in: element, path: { path() + ["\(index)"] }, file: file, into: &errors)
            }
        case .named(let value):
            guard let mapping = node.mapping else { return }
            for (key, element) in mapping {
                value.collectUnknownKeys(
                    in: element, path: { path() + [QuotedValue.shown(key.string ?? "?", limit: 253)] }, file: file, into: &errors)
            }
        case .section(let known):
            guard let mapping = node.mapping else { return }
            for (key, element) in mapping {
                guard key.scalar != nil else {
                    errors.append(ConfigurationError(
                        file: file, key: path().joined(separator: "."), line: key.mark?.line, column: key.mark?.column,
                        reason: "a key is a name, not a list or a mapping"))
                    continue
                }
                let name = key.string ?? ""
                if let shape = known[name] {
                    shape.collectUnknownKeys(in: element, path: { path() + [name] }, file: file, into: &errors)
                    continue
                }
                var reason = "unknown key"
                if let suggestion = Self.closest(to: name, among: known.keys) {
                    reason += "; did you mean '\(suggestion)'?"
                } else {
                    reason += " (known here: \(known.keys.sorted().joined(separator: ", ")))"
                }
                errors.append(ConfigurationError(
                    file: file, key: (path() + [QuotedValue.shown(name)]).joined(separator: "."),
                    line: key.mark?.line, column: key.mark?.column, reason: reason))
            }
        }
    }

    /// The known key nearest to `key` by edit distance, when it is near enough to be the
    /// one meant (at most a third of its letters differ); else a known key that starts
    /// with it or that it starts with (`cache` → `cache_size`, `alpn_list` → `alpn`).
    static func closest(to key: String, among known: some Sequence<String>) -> String? {
        let typed = Array(key.lowercased().utf8)
        var best: (name: String, distance: Int)?
        var prefixed: String?
        for name in known.sorted() {
            let distance = editDistance(typed, Array(name.utf8))
            if distance <= max(1, typed.count / 3), distance < (best?.distance ?? .max) {
                best = (name, distance)
            }
            let lowered = key.lowercased()
            if prefixed == nil, min(lowered.count, name.count) >= 4, lowered.hasPrefix(name) || name.hasPrefix(lowered) {
                prefixed = name
            }
        }
        return best?.name ?? prefixed
    }

    /// Levenshtein distance (insert, delete, substitute), with a swap of two neighbours
    /// counted as one edit.
    static func editDistance(_ a: [UInt8], _ b: [UInt8]) -> Int {
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var before = [Int](repeating: 0, count: b.count + 1)
        var previous = Array(0...b.count)
        var current = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            current[0] = i
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                    current[j] = min(current[j], before[j - 2] + 1)
                }
            }
            (before, previous, current) = (previous, current, before)
        }
        return previous[b.count]
    }
}
