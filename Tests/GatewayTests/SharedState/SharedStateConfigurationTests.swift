import Foundation
@testable import Gateway
import Testing

/// `shared_state:` as the file gives it: the URL read as libpq reads it, a password never
/// taken from (or echoed out of) the URL, each misuse named by key.
@Suite("shared_state configuration", .timeLimit(.minutes(2)))
struct SharedStateConfigurationTests {
    @Test("a postgres URL gives host, port, user, database and TLS mode; defaults as libpq's (port 5432, database = user, sslmode prefer)", arguments: [
        ("postgres://certgate@db.example:6432/fleet?sslmode=require", "db.example", 6432, "certgate", "fleet", PostgresLocation.TLSMode.require),
        ("postgresql://edge@10.0.0.7", "10.0.0.7", 5432, "edge", "edge", .prefer),
        ("postgres://certgate@[::1]:5433/certgate?sslmode=disable", "::1", 5433, "certgate", "certgate", .disable),
        ("postgres://app%40corp@db/x?sslmode=verify-ca&application_name=y", "db", 5432, "app@corp", "x", .verifyFull),
    ])
    func parsesURL(url: String, host: String, port: Int, user: String, database: String, tls: PostgresLocation.TLSMode) throws {
        let location = try PostgresLocation(url: url, environment: [:])
        #expect(location.host == host)
        #expect(location.port == port)
        #expect(location.user == user)
        #expect(location.database == database)
        #expect(location.tls == tls)
    }

    @Test("without a user in the URL, PGUSER is the user")
    func userFromEnvironment() throws {
        #expect(try PostgresLocation(url: "postgres://db:5432/fleet", environment: ["PGUSER": "ops"]).user == "ops")
        #expect(try PostgresLocation(url: "postgres://db:5432/fleet", environment: ["PGUSER": "ops"]).description == "ops@db:5432/fleet")
        #expect(try PostgresLocation(url: "postgres://u@db/f?application_name=edge%20one", environment: [:]).applicationName == "edge one")
    }

    @Test("a bad URL says which part is wrong and never quotes the URL (it may hold a password)", arguments: [
        ("postgres://certgate:hunter2@db/fleet", "the URL holds a password; put it in password_file or PGPASSWORD instead"),
        ("postgres://certgate@db/fleet?password=hunter2", "the URL holds a password; put it in password_file or PGPASSWORD instead"),
        ("mysql://certgate@db/fleet", "the scheme must be postgres:// or postgresql://"),
        ("db.example:5432", "expected a URL like postgres://user@host:5432/database"),
        ("postgres://certgate@db:99999/fleet", "the port must be a number from 1 to 65535"),
        ("postgres://certgate@/fleet", "the URL names no host"),
        ("postgres://certgate@db/fleet?sslmode=always", "sslmode must be disable, allow, prefer, require, verify-ca or verify-full"),
        ("postgres://certgate@[::1/fleet", "an IPv6 host must be closed with ']'"),
        ("postgres://certgate@db/cert%00gate", "the database name holds a control character"),
        ("postgres://certgate@db/fleet\u{07}", "the URL holds a control character"),
        ("postgres://certgate@db/fleet#main", "a URL fragment ('#...') is not allowed"),
        ("postgres://certgate@db/" + String(repeating: "d", count: 64), "the database name is 64 bytes; PostgreSQL's limit is 63"),
        ("postgres://certgate@db/fleet?connect_timeout=3", "set shared_state.connect_timeout instead of the URL's connect_timeout"),
        ("postgres://certgate@db/fleet?foo=bar", "the URL parameter foo is not one certgate knows (sslmode, application_name)"),
        ("postgres://certgate@db/fleet?application_name=%00", "application_name must be 1 to 63 printable ASCII characters"),
    ])
    func refusesBadURL(url: String, reason: String) {
        #expect(throws: PostgresLocationError(reason)) { try PostgresLocation(url: url, environment: [:]) }
    }

    @Test("the section decodes with its defaults (poll 5 s, connect 5 s); each misuse is an error at its key, and a password in the URL is refused without echoing it")
    func section() throws {
        let base = "listeners:\n  - listen: 127.0.0.1:8443\n"
        let parsed = try GatewayConfiguration.parse(
            yaml: base + "shared_state:\n  postgres: postgres://certgate@db.example/fleet\n  node: edge-1\n", file: "c.yaml", baseDirectory: "/")
        let shared = try #require(parsed.sharedState)
        #expect(shared.location.description == "certgate@db.example:5432/fleet")
        #expect(shared.node == "edge-1")
        #expect(shared.pollInterval.duration == .seconds(5))
        #expect(shared.connectTimeout.duration == .seconds(5))
        #expect(shared.passwordFile == nil)

        func errors(_ section: String) -> [String] {
            do {
                _ = try GatewayConfiguration.parse(yaml: base + section, file: "c.yaml", baseDirectory: "/nonexistent-certgate")
                return []
            } catch {
                return error.errors.map { "\($0.key): \($0.reason)" }
            }
        }
        let withPassword = errors("shared_state:\n  postgres: postgres://certgate:hunter2@db/fleet\n")
        #expect(withPassword == ["shared_state.postgres: the URL holds a password; put it in password_file or PGPASSWORD instead"])
        #expect(!withPassword.joined().contains("hunter2"))
        #expect(errors("shared_state:\n  postgres: postgres://c@db/f\n  node: \"edge 1\"\n  poll_interval: 10ms\n  connect_timeout: 2m\n  password_file: pg.pass\n") == [
            "shared_state.node: the node name holds ' '; use letters, digits, '-', '_' and '.'",
            "shared_state.poll_interval: must be from 100ms to 1h (got 10ms)",
            "shared_state.connect_timeout: must be from 100ms to 1m (got 2m)",
            "shared_state.password_file: /nonexistent-certgate/pg.pass does not exist",
        ])
        #expect(SharedStateConfiguration.nodeNameProblem("-") == "a node name starts with a letter or a digit")
        #expect(SharedStateConfiguration.nodeNameProblem(".") == "a node name starts with a letter or a digit")
        #expect(SharedStateConfiguration.nodeNameProblem("") == "a node name cannot be empty")
        #expect(SharedStateConfiguration.nodeNameProblem(String(repeating: "n", count: 64)) == "the node name is 64 bytes; at most 63")
        #expect(SharedStateConfiguration.nodeNameProblem("edge-1.eu_west") == nil)
        #expect(errors("shared_state:\n  postgres: postgres://c@db/f\n  pasword_file: x\n").first?.hasPrefix("shared_state.pasword_file: ") == true)
    }

    @Test("the password is the password file's first line (a trailing CR dropped), else PGPASSWORD, else none; an empty first line is refused")
    func password() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("certgate-pw-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        try "s3cret\r\nignored\n".write(to: folder.appendingPathComponent("pg.pass"), atomically: true, encoding: .utf8)
        try "\nlater\n".write(to: folder.appendingPathComponent("empty.pass"), atomically: true, encoding: .utf8)
        let location = try PostgresLocation(url: "postgres://c@db/f", environment: [:])
        let fromFile = SharedStateConfiguration(location: location, passwordFile: "pg.pass", node: "n")
        #expect(try fromFile.password(baseDirectory: folder.path, environment: ["PGPASSWORD": "env"]).get() == "s3cret")
        let fromEnvironment = SharedStateConfiguration(location: location, node: "n")
        #expect(try fromEnvironment.password(baseDirectory: folder.path, environment: ["PGPASSWORD": "env"]).get() == "env")
        #expect(try fromEnvironment.password(baseDirectory: folder.path, environment: [:]).get() == nil)
        let folderAsFile = SharedStateConfiguration(location: location, passwordFile: ".", node: "n")
        if case .failure(let error) = folderAsFile.password(baseDirectory: folder.path) {
            #expect(error.description == "shared state: cannot read shared_state.password_file: \(folder.path)/. is a folder, not a file")
        } else {
            Issue.record("a folder gave a password")
        }
        #expect(fromFile.passwordSource(environment: ["PGPASSWORD": "env"]) == "shared_state.password_file")
        #expect(fromEnvironment.passwordSource(environment: ["PGPASSWORD": "env"]) == "PGPASSWORD")
        #expect(fromEnvironment.passwordSource(environment: [:]) == "none given (no password_file, no PGPASSWORD)")
        let empty = SharedStateConfiguration(location: location, passwordFile: "empty.pass", node: "n")
        #expect(throws: SharedStateError.self) { try empty.password(baseDirectory: folder.path).get() }
        if case .failure(let error) = empty.password(baseDirectory: folder.path) {
            #expect(error.description == "shared state: cannot read shared_state.password_file: the file's first line is empty")
        }
    }
}
