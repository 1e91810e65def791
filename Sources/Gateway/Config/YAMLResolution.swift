import Yams

/// The configuration composed without resolving scalars' types, then resolved where a type
/// is read.
///
/// Yams resolves an untagged scalar's type (bool, int, float, null, timestamp, …) by trying
/// a regular expression per type, and composing a document resolves every mapping key so
/// that duplicate keys can be found: at 100,000 `certificates:` entries that was a tenth of
/// `certgate check`. Here the document is composed with no resolution rules (every key a
/// string, which is what a configuration's keys are); the sections other than
/// `certificates:` — a few dozen values — are copied with Yams' default rules for
/// `YAMLDecoder`, and ``CertificateConfDecoder`` resolves the few entry values that are not
/// strings (`is_default`, `buffer_days`, …) one by one.
enum YAMLResolution {
    /// The document's root, composed without type resolution; nil for an empty document.
    static func compose(_ yaml: String) throws -> Node? {
        try Parser(yaml: yaml, resolver: .basic).singleRoot()
    }

    /// Whether `mapping` was written in block style (keys on their own lines) rather than
    /// flow style (`{ … }`). Yams 6 composes every mapping with the style `.any` (it reads
    /// the style from the mapping's end event, which has none), so the style is told by where
    /// the mapping starts: a block mapping at its first key, a flow mapping at its `{`. A
    /// mapping with an anchor or a tag in front, or an empty one, is not taken as block. For
    /// a document's root or a mapping's value only: a one-pair mapping inside a flow
    /// sequence (`[a: 1]`) also starts at its key.
    static func isBlock(_ mapping: Node.Mapping) -> Bool {
        guard let start = mapping.mark, let firstKey = mapping.first?.key.mark else { return false }
        return start.line == firstKey.line && start.column == firstKey.column
    }

    /// `node` with its scalars' types resolved by Yams' default rules, as `Yams.compose`
    /// would have made it; the value of each key in `skipping` (at the top level) is left out.
    static func resolved(_ node: Node, skipping: Set<String> = []) -> Node {
        switch node {
        case .scalar(let scalar):
            return .scalar(resolved(scalar))
        case .mapping(let mapping):
            var pairs: [(Node, Node)] = []
            pairs.reserveCapacity(mapping.count)
            for (key, value) in mapping where !(key.string.map(skipping.contains) ?? false) {
                pairs.append((resolved(key), resolved(value)))
            }
            return .mapping(Node.Mapping(pairs, mapping.tag.copy(resolver: .default), mapping.style, mapping.mark))
        case .sequence(let sequence):
            return .sequence(Node.Sequence(sequence.map { resolved($0) }, sequence.tag.copy(resolver: .default), sequence.style, sequence.mark))
        case .alias:
            return node
        }
    }

    /// One scalar with its type resolved by Yams' default rules.
    static func resolved(_ scalar: Node.Scalar) -> Node.Scalar {
        Node.Scalar(scalar.string, scalar.tag.copy(resolver: .default), scalar.style, scalar.mark)
    }
}
