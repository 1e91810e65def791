import Foundation

/// A duration as written in the configuration: `500ms`, `30s`, `5m`, `1h`, `7d`.
public struct ConfigDuration: Hashable, Sendable, Decodable, CustomStringConvertible {
    public let duration: Duration
    let text: String

    public init(_ duration: Duration, text: String) {
        self.duration = duration
        self.text = text
    }

    /// Parses `<number><unit>` with unit `ms`, `s`, `m`, `h` or `d`.
    public init?(parsing raw: String) {
        let text = raw.trimmingCharacters(in: .whitespaces)
        let digits = text.prefix { $0.isNumber }
        let unit = text.dropFirst(digits.count)
        guard let value = Int64(digits), value >= 0 else { return nil }
        switch unit {
        case "ms": duration = .milliseconds(value)
        case "s": duration = .seconds(value)
        case "m": duration = .seconds(value * 60)
        case "h": duration = .seconds(value * 3_600)
        case "d": duration = .seconds(value * 86_400)
        default: return nil
        }
        self.text = text
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let raw = try container.decode(String.self)
        guard let parsed = ConfigDuration(parsing: raw) else {
            throw DecodingError.dataCorruptedError(
                in: container, debugDescription: "'\(raw)' is not a duration (write 500ms, 30s, 5m, 1h or 7d)")
        }
        self = parsed
    }

    public var description: String { text }
}

/// `host:port`, where host is a name, an IPv4 address or `[IPv6]`.
public struct HostAndPort: Hashable, Sendable, Decodable, CustomStringConvertible {
    public let host: String
    public let port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public init?(parsing raw: String) {
        let text = raw.trimmingCharacters(in: .whitespaces)
        guard let colon = text.lastIndex(of: ":") else { return nil }
        var host = String(text[..<colon])
        guard let port = Int(text[text.index(after: colon)...]), (0...65_535).contains(port) else { return nil }
        if host.hasPrefix("[") && host.hasSuffix("]") {
            host = String(host.dropFirst().dropLast())
        } else if host.contains(":") {
            return nil  // IPv6 must be bracketed
        }
        guard !host.isEmpty else { return nil }
        self.host = host
        self.port = port
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let raw = try container.decode(String.self)
        guard let parsed = HostAndPort(parsing: raw) else {
            throw DecodingError.dataCorruptedError(
                in: container, debugDescription: "'\(raw)' is not host:port (IPv6 as [::1]:8443)")
        }
        self = parsed
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}
