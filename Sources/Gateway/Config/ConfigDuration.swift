import CertificateKit
import Foundation

/// A duration as written in the configuration: `500ms`, `30s`, `5m`, `1h`, `7d`.
public struct ConfigDuration: Hashable, Sendable, Decodable, CustomStringConvertible {
    public let duration: Duration
    let text: String

    public init(_ duration: Duration, text: String) {
        self.duration = duration
        self.text = text
    }

    /// The longest duration any key takes (10 years); every key also has its own range,
    /// checked by ``ConfigurationRules``. Longer ones are refused here so that no
    /// conversion downstream (NIO `TimeAmount` in nanoseconds, `Task.sleep`) can overflow.
    public static let longest = Duration.seconds(3_650 * 86_400)

    /// Parses `<number><unit>` with unit `ms`, `s`, `m`, `h` or `d`, up to ``longest``.
    public init?(parsing raw: String) {
        guard case .success(let parsed) = Self.parse(raw) else { return nil }
        self = parsed
    }

    /// Parses `<number><unit>`; the failure is the reason, quoting the text only when it
    /// is short (see ``ConfigQuote``).
    public static func parse(_ raw: String) -> Result<ConfigDuration, ConfigValueError> {
        let text = raw.trimmingCharacters(in: .whitespaces)
        let digits = text.prefix { $0.isASCII && $0.isNumber }
        let unit = text.dropFirst(digits.count)
        let secondsPerUnit: Int64
        switch unit {
        case "ms": secondsPerUnit = 0
        case "s": secondsPerUnit = 1
        case "m": secondsPerUnit = 60
        case "h": secondsPerUnit = 3_600
        case "d": secondsPerUnit = 86_400
        default:
            return .failure(ConfigValueError("\(QuotedValue.quote(raw)) is not a duration (write 500ms, 30s, 5m, 1h or 7d)"))
        }
        let tooLong = ConfigValueError("\(QuotedValue.quote(raw)) is longer than any setting allows (at most 3650d)")
        guard !digits.isEmpty else {
            return .failure(ConfigValueError("\(QuotedValue.quote(raw)) is not a duration (write 500ms, 30s, 5m, 1h or 7d)"))
        }
        guard let value = Int64(digits) else { return .failure(tooLong) }
        let duration: Duration
        if secondsPerUnit == 0 {
            duration = .milliseconds(value)
        } else {
            let (seconds, overflow) = value.multipliedReportingOverflow(by: secondsPerUnit)
            guard !overflow else { return .failure(tooLong) }
            duration = .seconds(seconds)
        }
        guard duration <= longest else { return .failure(tooLong) }
        return .success(ConfigDuration(duration, text: text))
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let raw = try container.decode(String.self)
        switch Self.parse(raw) {
        case .success(let parsed): self = parsed
        case .failure(let failure): throw DecodingError.dataCorruptedError(in: container, debugDescription: failure.reason)
        }
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
                in: container, debugDescription: "\(QuotedValue.quote(raw)) is not host:port with a port of 0 to 65535 (IPv6 as [::1]:8443)")
        }
        self = parsed
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// Why one configuration value cannot be used.
public struct ConfigValueError: Error, Sendable, Equatable, CustomStringConvertible {
    public let reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}
