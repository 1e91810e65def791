import CertificateKit

/// Decodes a configuration value that is one of a few words, with certgate's reason when it
/// is not: Swift's own ("Cannot initialize X from invalid String value …") quotes the whole
/// value, which may be a key pasted into the wrong field.
enum ConfigEnum {
    static func decode<Value: RawRepresentable & CaseIterable>(from decoder: any Decoder) throws -> Value where Value.RawValue == String {
        let container = try decoder.singleValueContainer()
        let raw = try container.decode(String.self)
        guard let value = Value(rawValue: raw) else {
            let allowed = Value.allCases.map(\.rawValue).joined(separator: ", ")
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "must be one of \(allowed), not \(QuotedValue.quote(raw))")
        }
        return value
    }
}
