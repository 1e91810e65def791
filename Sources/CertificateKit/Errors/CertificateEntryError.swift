/// What is wrong with one `certificates:` entry: which entry, which field, why.
/// Printed as `entry: field: reason`.
public struct CertificateEntryError: Error, Hashable, Sendable, CustomStringConvertible, Codable {
    public var entry: String
    public var field: String
    public var reason: String

    public init(entry: String, field: String, reason: String) {
        self.entry = entry
        self.field = field
        self.reason = reason
    }

    public var description: String { "\(entry): \(field): \(reason)" }
}

/// A certificate set that could not be built: every entry's error at once.
/// Nothing of the update it came from takes effect.
public struct CertificateSetError: Error, Hashable, Sendable, CustomStringConvertible {
    public var errors: [CertificateEntryError]

    public init(_ errors: [CertificateEntryError]) {
        self.errors = errors
    }

    public var description: String {
        "certificate set rejected (\(errors.count) error\(errors.count == 1 ? "" : "s")):\n"
            + errors.map { "  \($0)" }.joined(separator: "\n")
    }
}
