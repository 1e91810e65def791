import CertificateKit
import Foundation

/// `shared_state:` — a fleet of gateways sharing one certificate set through PostgreSQL
/// (DESIGN.md "A fleet"). Absent: the set lives in `state_dir`'s SQLite alone.
///
/// ```yaml
/// shared_state:
///   postgres: postgres://certgate@127.0.0.1:5432/certgate
///   password_file: secrets/pg.pass      # or PGPASSWORD
///   node: edge-1                        # default: the host name
/// ```
public struct SharedStateConfiguration: Sendable, Decodable, Equatable {
    /// The database (the URL holds no password).
    public var location: PostgresLocation
    /// A file holding the password (its first line), relative to the config file's folder.
    /// Without one, `PGPASSWORD`; without that, no password.
    public var passwordFile: String?
    /// This node's name in logs, `ctl status` and the fleet's records.
    public var node: String
    /// How often a node asks for commits it was not told about (a lost notification, a
    /// reconnection); default 5 s, 100 ms – 1 h.
    public var pollInterval: ConfigDuration
    /// How long connecting to the database may take; default 5 s, 100 ms – 1 min.
    public var connectTimeout: ConfigDuration

    public static let defaultPollInterval = ConfigDuration(.seconds(5), text: "5s")
    public static let defaultConnectTimeout = ConfigDuration(.seconds(5), text: "5s")

    enum CodingKeys: String, CodingKey, CaseIterable {
        case postgres
        case passwordFile = "password_file"
        case node
        case pollInterval = "poll_interval"
        case connectTimeout = "connect_timeout"
    }

    public init(
        location: PostgresLocation, passwordFile: String? = nil, node: String,
        pollInterval: ConfigDuration = Self.defaultPollInterval, connectTimeout: ConfigDuration = Self.defaultConnectTimeout
    ) {
        self.location = location
        self.passwordFile = passwordFile
        self.node = node
        self.pollInterval = pollInterval
        self.connectTimeout = connectTimeout
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let url = try container.decode(String.self, forKey: .postgres)
        do {
            location = try PostgresLocation(url: url)
        } catch {
            throw DecodingError.dataCorruptedError(forKey: .postgres, in: container, debugDescription: error.reason)
        }
        passwordFile = try container.decodeIfPresent(String.self, forKey: .passwordFile)
        node = try container.decodeIfPresent(String.self, forKey: .node) ?? ProcessInfo.processInfo.hostName
        pollInterval = try container.decodeIfPresent(ConfigDuration.self, forKey: .pollInterval) ?? Self.defaultPollInterval
        connectTimeout = try container.decodeIfPresent(ConfigDuration.self, forKey: .connectTimeout) ?? Self.defaultConnectTimeout
    }

    /// What is wrong beyond decoding, each with its key.
    func problems(baseDirectory: String) -> [ConfigurationRules.Problem] {
        var problems: [ConfigurationRules.Problem] = []
        let section = ["shared_state"]
        if let reason = Self.nodeNameProblem(node) {
            problems.append(.init(path: section + ["node"], reason: reason))
        }
        if pollInterval.duration < .milliseconds(100) || pollInterval.duration > .seconds(3_600) {
            problems.append(.init(path: section + ["poll_interval"], reason: "must be from 100ms to 1h (got \(pollInterval))"))
        }
        if connectTimeout.duration < .milliseconds(100) || connectTimeout.duration > .seconds(60) {
            problems.append(.init(path: section + ["connect_timeout"], reason: "must be from 100ms to 1m (got \(connectTimeout))"))
        }
        if let passwordFile {
            let path = MaterialSource.resolve(path: passwordFile, baseDirectory: baseDirectory)
            if case .failure(let problem) = Self.readPassword(path: path) {
                problems.append(.init(path: section + ["password_file"], reason: problem.description))
            }
        }
        return problems
    }

    /// Where the password comes from, for errors: the file wins over the environment.
    public func passwordSource(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if passwordFile != nil { return "shared_state.password_file" }
        return environment["PGPASSWORD"] != nil ? "PGPASSWORD" : "none given (no password_file, no PGPASSWORD)"
    }

    /// The password to log in with: `password_file`'s first line, else `PGPASSWORD`, else
    /// none. An explicit `password_file` wins over the environment (unlike libpq's own
    /// precedence, where PGPASSWORD beats ~/.pgpass: here the file is configuration).
    public func password(baseDirectory: String, environment: [String: String] = ProcessInfo.processInfo.environment) -> Result<String?, SharedStateError> {
        guard let passwordFile else { return .success(environment["PGPASSWORD"]) }
        let path = MaterialSource.resolve(path: passwordFile, baseDirectory: baseDirectory)
        switch Self.readPassword(path: path) {
        case .success(let password): return .success(password)
        case .failure(let problem): return .failure(SharedStateError(operation: "read shared_state.password_file", reason: problem.description))
        }
    }

    /// Why `name` is not a node name: 1 to 63 ASCII letters, digits, '-', '_' or '.', the
    /// first a letter or a digit (it names the node in logs, metrics and the fleet's tables).
    static func nodeNameProblem(_ name: String) -> String? {
        if name.isEmpty { return "a node name cannot be empty" }
        if name.utf8.count > 63 { return "the node name is \(name.utf8.count) bytes; at most 63" }
        if let bad = name.first(where: { !($0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0))) }) {
            return "the node name holds \(QuotedValue.quote(String(bad))); use letters, digits, '-', '_' and '.'"
        }
        if let first = name.first, !(first.isLetter || first.isNumber) { return "a node name starts with a letter or a digit" }
        return nil
    }

    /// The file's first line (never quoted back: it is the secret).
    private static func readPassword(path: String) -> Result<String, PasswordFileProblem> {
        let shown = QuotedValue.shown(path, limit: 255)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            return .failure(PasswordFileProblem("\(shown) does not exist"))
        }
        guard !isDirectory.boolValue else { return .failure(PasswordFileProblem("\(shown) is a folder, not a file")) }
        guard let data = FileManager.default.contents(atPath: path) else {
            return .failure(PasswordFileProblem("\(shown) cannot be read (permission denied)"))
        }
        guard let text = String(data: data, encoding: .utf8) else { return .failure(PasswordFileProblem("the file is not UTF-8 text")) }
        // "\r\n" is one Character: any line break ends the line.
        let password = text.split(maxSplits: 1, omittingEmptySubsequences: false, whereSeparator: \.isNewline).first.map(String.init) ?? ""
        guard !password.isEmpty else { return .failure(PasswordFileProblem("the file's first line is empty")) }
        return .success(password)
    }
}

/// Why `password_file` gives no password (never quoting its content).
struct PasswordFileProblem: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
