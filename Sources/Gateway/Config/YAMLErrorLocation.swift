import Yams

/// Turns Yams and decoding errors into ``ConfigurationError``s with key, line and column.
enum YAMLErrorLocation {
    static func configurationError(_ error: YamlError, file: String) -> ConfigurationError {
        switch error {
        case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _), .composer(_, let problem, let mark, _):
            return ConfigurationError(file: file, key: "", line: mark.line, column: mark.column, reason: "invalid YAML: \(problem)")
        case .duplicatedKeysInMapping(let duplicates, let context):
            return ConfigurationError(file: file, key: duplicates.joined(separator: ", "), line: context.mark.line,
                                      column: context.mark.column, reason: "duplicate key")
        case .reader(let problem, let offset, _, _):
            // The reader's problem is libyaml's own words (no input quoted); the rest of
            // Yams' description quotes the text, which may hold a key.
            return ConfigurationError(file: file, key: "", reason: "invalid YAML: \(problem)" + (offset.map { " (at byte \($0))" } ?? ""))
        case .dataCouldNotBeDecoded:
            return ConfigurationError(file: file, key: "", reason: "not UTF-8 text")
        default:
            return ConfigurationError(file: file, key: "", reason: "invalid YAML")
        }
    }

    /// `under` is the path of the node the failed decode started at (an entry decoded on
    /// its own), prefixed to the error's own coding path.
    static func configurationError(_ error: DecodingError, root: Node, file: String, under: [String] = []) -> ConfigurationError {
        let path: [any CodingKey]
        let reason: String
        switch error {
        case .typeMismatch(let type, let context):
            path = context.codingPath
            reason = "expected \(describe(type))"
        case .valueNotFound(let type, let context):
            path = context.codingPath
            reason = "expected \(describe(type)), found nothing"
        case .keyNotFound(let key, let context):
            path = context.codingPath + [key]
            reason = "missing"
        case .dataCorrupted(let context):
            path = context.codingPath
            // Swift's synthesized messages quote the value ("Cannot initialize X from invalid
            // String value …"); certgate's own quote through QuotedValue.
            reason = context.debugDescription.hasPrefix("Cannot initialize") ? "is not one of the values this key takes" : context.debugDescription
        @unknown default:
            path = []
            reason = "cannot be decoded"
        }
        let components = under + path.map { $0.intValue.map(String.init) ?? $0.stringValue }
        let key = components.joined(separator: ".")
        let mark = locate(components, in: root)?.mark
        return ConfigurationError(file: file, key: key, line: mark?.line, column: mark?.column, reason: reason)
    }

    /// The deepest node along `path` (mapping keys and sequence indices) that exists.
    static func locate(_ path: [String], in root: Node) -> Node? {
        var node = root
        for key in path {
            let next: Node?
            if let index = Int(key), let sequence = node.sequence, sequence.indices.contains(index) {
                next = sequence[index]
            } else {
                next = node[key]
            }
            guard let next else { break }
            node = next
        }
        return node
    }

    private static func describe(_ type: Any.Type) -> String {
        switch type {
        case is Bool.Type: return "true or false"
        case is Int.Type: return "a whole number"
        case is Double.Type: return "a number"
        case is String.Type: return "a string"
        default:
            let name = String(describing: type)
            if name.hasPrefix("Array") || name == "Sequence" { return "a list" }
            if name.hasPrefix("Dictionary") || name == "Mapping" { return "a mapping" }
            if name == "Scalar" { return "a single value (not a list or a mapping)" }
            // A type of certgate's own (a duration, an address, …): its decoder says more when
            // the value is the wrong kind; the Swift name is not shown.
            return "a value of another kind"
        }
    }
}
