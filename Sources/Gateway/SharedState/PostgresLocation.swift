import CertificateKit
import Foundation

/// Where a fleet's PostgreSQL is, from a `postgres://` URL with libpq's defaults
/// (`postgres[ql]://[user@]host[:port][/database][?sslmode=...&application_name=...]`): one
/// host over TCP (a name, an IPv4 address or a bracketed IPv6 one), the port (5432), the user
/// (`PGUSER`, else the system user), the database (the user's name) and whether to use TLS.
/// libpq's `key=value` strings, several hosts and Unix-socket hosts are not accepted.
///
/// A password in the URL is refused — the URL is configuration that `check` echoes and
/// operators paste; the password comes from `password_file` or `PGPASSWORD`. Errors never
/// quote the URL, since it may hold one.
public struct PostgresLocation: Sendable, Equatable, CustomStringConvertible {
    /// `sslmode` as libpq reads it: `prefer` (the default) tries TLS first and `require`
    /// insists on it, neither checking the server's certificate; `verify-full` (and
    /// `verify-ca`, held to the same standard) checks it against the system's trust roots
    /// and the host name.
    public enum TLSMode: String, Sendable, Equatable, CaseIterable {
        case disable, prefer, require
        case verifyFull = "verify-full"
    }

    public var host: String
    public var port: Int
    public var user: String
    public var database: String
    public var tls: TLSMode
    /// `application_name`, when the URL sets it (else certgate names itself and the node).
    public var applicationName: String?

    /// `user@host:port/database`: no password (there is none in it).
    public var description: String {
        let shownHost = host.contains(":") ? "[\(host)]" : host
        return "\(user)@\(shownHost):\(port)/\(database)"
    }

    /// Parses `text`; the error says which part is wrong without quoting the URL.
    public init(url text: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws(PostgresLocationError) {
        guard let schemeEnd = text.range(of: "://") else { throw .init("expected a URL like postgres://user@host:5432/database") }
        guard !text.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw .init("the URL holds a control character")
        }
        guard !text.contains("#") else { throw .init("a URL fragment ('#...') is not allowed") }
        let scheme = text[..<schemeEnd.lowerBound].lowercased()
        guard scheme == "postgres" || scheme == "postgresql" else {
            throw .init("the scheme must be postgres:// or postgresql://")
        }
        var rest = Substring(text[schemeEnd.upperBound...])
        var query: Substring = ""
        if let mark = rest.firstIndex(of: "?") {
            query = rest[rest.index(after: mark)...]
            rest = rest[..<mark]
        }
        var path: Substring = ""
        if let slash = rest.firstIndex(of: "/") {
            path = rest[rest.index(after: slash)...]
            rest = rest[..<slash]
        }
        var userPart: Substring?
        if let at = rest.lastIndex(of: "@") {
            userPart = rest[..<at]
            rest = rest[rest.index(after: at)...]
        }
        if let userPart, userPart.contains(":") {
            throw .init("the URL holds a password; put it in password_file or PGPASSWORD instead")
        }
        // Host and port.
        var hostText: Substring
        var portText: Substring?
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { throw .init("an IPv6 host must be closed with ']'") }
            hostText = rest[rest.index(after: rest.startIndex)..<close]
            let after = rest[rest.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw .init("expected ':port' after the IPv6 host") }
                portText = after.dropFirst()
            }
        } else if let colon = rest.lastIndex(of: ":") {
            hostText = rest[..<colon]
            portText = rest[rest.index(after: colon)...]
        } else {
            hostText = rest
        }
        guard !hostText.isEmpty else { throw .init("the URL names no host") }
        guard hostText.allSatisfy({ $0.isLetter || $0.isNumber || "-._:".contains($0) }), hostText.unicodeScalars.allSatisfy(\.isASCII) else {
            throw .init("the host is not a host name or an IP address")
        }
        host = String(hostText)
        if let portText {
            guard let port = Int(portText), (1...65_535).contains(port) else { throw .init("the port must be a number from 1 to 65535") }
            self.port = port
        } else {
            port = 5432
        }
        let decodedUser = try userPart.map { part throws(PostgresLocationError) -> String in
            guard let user = String(part).removingPercentEncoding, !user.isEmpty else { throw .init("the user name is empty or badly %-encoded") }
            try Self.checkIdentifier(user, what: "user name")
            return user
        }
        guard let user = decodedUser ?? environment["PGUSER"] ?? Self.systemUser, !user.isEmpty else {
            throw .init("the URL names no user and PGUSER is not set")
        }
        self.user = user
        guard let database = String(path).removingPercentEncoding else { throw .init("the database name is badly %-encoded") }
        guard !database.contains("/") else { throw .init("the database name cannot hold '/'") }
        try Self.checkIdentifier(database, what: "database name")
        self.database = database.isEmpty ? user : database
        var tls = TLSMode.prefer
        for item in query.split(separator: "&") where !item.isEmpty {
            let pair = item.split(separator: "=", maxSplits: 1)
            let key = String(pair[0])
            let value = pair.count > 1 ? String(pair[1]) : ""
            switch key {
            case "sslmode":
                switch value {
                case "disable": tls = .disable
                case "allow", "prefer": tls = .prefer
                case "require": tls = .require
                case "verify-ca", "verify-full": tls = .verifyFull
                default: throw .init("sslmode must be disable, allow, prefer, require, verify-ca or verify-full")
                }
            case "application_name":
                guard let name = value.removingPercentEncoding, !name.isEmpty, name.utf8.count <= 63,
                      name.unicodeScalars.allSatisfy({ $0.isASCII && $0.value >= 0x20 && $0.value < 0x7F }) else {
                    throw .init("application_name must be 1 to 63 printable ASCII characters")
                }
                applicationName = name
            case "connect_timeout":
                throw .init("set shared_state.connect_timeout instead of the URL's connect_timeout")
            case "password":
                throw .init("the URL holds a password; put it in password_file or PGPASSWORD instead")
            default:
                throw .init("the URL parameter \(QuotedValue.shown(key, limit: 40)) is not one certgate knows (sslmode, application_name)")
            }
        }
        self.tls = tls
    }

    /// PostgreSQL truncates identifiers past 63 bytes (NAMEDATALEN - 1); control characters
    /// are refused earlier, a %-encoded one here.
    private static func checkIdentifier(_ value: String, what: String) throws(PostgresLocationError) {
        guard value.utf8.count <= 63 else { throw .init("the \(what) is \(value.utf8.count) bytes; PostgreSQL's limit is 63") }
        guard !value.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw .init("the \(what) holds a control character")
        }
    }

    private static var systemUser: String? {
        guard let entry = getpwuid(geteuid()), let name = entry.pointee.pw_name else { return nil }
        return String(cString: name)
    }
}

/// What is wrong with a `postgres://` URL (never quoting it).
public struct PostgresLocationError: Error, Sendable, Equatable, CustomStringConvertible {
    public let reason: String
    init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}
