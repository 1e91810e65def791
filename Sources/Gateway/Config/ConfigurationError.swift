/// A configuration file that cannot be used, with the key and (where known) the line
/// and column at fault.
public struct ConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    public let file: String
    /// Dotted path of the key, e.g. `certificates.example.is_default`; empty for the whole file.
    public let key: String
    public let line: Int?
    public let column: Int?
    public let reason: String

    public init(file: String, key: String, line: Int? = nil, column: Int? = nil, reason: String) {
        self.file = file
        self.key = key
        self.line = line
        self.column = column
        self.reason = reason
    }

    public var description: String {
        var place = file
        if let line { place += ":\(line)" + (column.map { ":\($0)" } ?? "") }
        return key.isEmpty ? "\(place): \(reason)" : "\(place): \(key): \(reason)"
    }
}

/// Every problem found in one configuration file.
public struct ConfigurationErrors: Error, Sendable, CustomStringConvertible {
    public let errors: [ConfigurationError]

    public init(_ errors: [ConfigurationError]) {
        self.errors = errors
    }

    public init(_ error: ConfigurationError) {
        self.errors = [error]
    }

    public var description: String { errors.map(\.description).joined(separator: "\n") }
}
