/// One name an entry serves, as written in `domains` or found in a SAN.
public enum NamePattern: Hashable, Sendable, CustomStringConvertible, Comparable {
    /// `api.example.com`
    case exact(ServerName)
    /// `*.example.com`, keyed by its parent `example.com`; matches exactly one more label.
    case wildcard(parent: ServerName)
    /// An IP address, served to clients that send no SNI and connect to it.
    case ip(IPAddress)
    /// `*` — every valid name; only an issuer (`is_ca`) entry may say it.
    case any

    /// Parses one pattern. Returns `nil` (with the reason) for anything else.
    public static func parse(_ raw: String) -> Result<NamePattern, NamePatternError> {
        let text = raw.trimmingSpaces()
        if text.isEmpty { return .failure(.empty) }
        if text == "*" { return .success(.any) }
        if let address = IPAddress(text) { return .success(.ip(address)) }
        if text.hasPrefix("*.") {
            let rest = String(text.dropFirst(2))
            guard let parent = ServerName.normalize(rest) else { return .failure(.invalidName(text)) }
            return .success(.wildcard(parent: parent))
        }
        if text.contains("*") { return .failure(.unsupportedWildcard(text)) }
        guard let name = ServerName.normalize(text) else { return .failure(.invalidName(text)) }
        return .success(.exact(name))
    }

    public var description: String {
        switch self {
        case .exact(let name): return name.text
        case .wildcard(let parent): return "*.\(parent.text)"
        case .ip(let address): return address.description
        case .any: return "*"
        }
    }

    public static func < (lhs: NamePattern, rhs: NamePattern) -> Bool { lhs.description < rhs.description }

    /// Whether this pattern covers `name` (exact, or one-level wildcard, or `*`).
    public func matches(_ name: ServerName) -> Bool {
        switch self {
        case .exact(let own): return own == name
        case .wildcard(let parent): return name.parent.map { $0 == parent.text[...] } ?? false
        case .ip: return false
        case .any: return true
        }
    }
}

public enum NamePatternError: Error, Hashable, Sendable, CustomStringConvertible {
    case empty
    case invalidName(String)
    case unsupportedWildcard(String)

    public var description: String {
        switch self {
        case .empty:
            return "empty name"
        case .invalidName(let text):
            return "\(QuotedValue.quote(text, limit: 253)) is not a valid DNS name (letters, digits and hyphens; labels of 1-63 octets; 253 in all)"
        case .unsupportedWildcard(let text):
            return "\(QuotedValue.quote(text, limit: 253)): a wildcard must be the whole first label ('*.example.com') or '*' alone"
        }
    }
}

extension StringProtocol {
    func trimmingSpaces() -> String {
        var view = Substring(self)
        while let first = view.first, first.isWhitespace { view.removeFirst() }
        while let last = view.last, last.isWhitespace { view.removeLast() }
        return String(view)
    }
}
