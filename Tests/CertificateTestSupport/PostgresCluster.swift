import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A throw-away PostgreSQL cluster for one test: `initdb` into a temporary folder, started
/// with `pg_ctl` on a free port of 127.0.0.1, a superuser `certgate` with a random password
/// (scram-sha-256 for TCP) and a database `certgate`; stopped and removed at the end. Never
/// a system service. Run as root (as CI does), the server runs as an unprivileged user
/// (`postgres` when the package made one, else `nobody`), since PostgreSQL refuses root.
public final class PostgresCluster: Sendable {
    public struct Failure: Error, CustomStringConvertible { public let description: String }

    public let folder: URL
    public let port: Int
    public let user = "certgate"
    public let password: String
    public let database = "certgate"
    private let bin: String
    private let runAs: String?
    /// `-c` settings added to the server's command line (TLS).
    private let serverOptions: String
    private let running = Mutex(false)

    /// - Parameter tls: the server's certificate and key (PEM): with them it offers TLS
    ///   (`ssl=on`), else it speaks plain TCP only.
    public init(tls: (certificatePEM: String, keyPEM: String)? = nil) async throws {
        guard let bin = Self.binaries() else {
            throw Failure(description: "PostgreSQL's initdb/pg_ctl are missing: apt-get install postgresql (CI's .ci/run installs it)")
        }
        self.bin = bin
        let runAs = geteuid() == 0 ? (getpwnam("postgres") != nil ? "postgres" : "nobody") : nil
        self.runAs = runAs
        folder = URL(fileURLWithPath: "/tmp").appendingPathComponent("certgate-pg-\(UUID().uuidString.prefix(8))")
        password = UUID().uuidString
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        let data = folder.appendingPathComponent("data")
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        let passwordFile = folder.appendingPathComponent("password")
        try password.write(to: passwordFile, atomically: true, encoding: .utf8)
        var serverOptions = ""
        var owned = [data.path, passwordFile.path]
        if let tls {
            // The server refuses a key file others can read; it must be its user's.
            let certificate = folder.appendingPathComponent("server.crt"), key = folder.appendingPathComponent("server.key")
            try tls.certificatePEM.write(to: certificate, atomically: true, encoding: .utf8)
            try tls.keyPEM.write(to: key, atomically: true, encoding: .utf8)
            chmod(key.path, 0o600)
            owned += [certificate.path, key.path]
            serverOptions = " -c ssl=on -c ssl_cert_file=\(certificate.path) -c ssl_key_file=\(key.path)"
        }
        self.serverOptions = serverOptions
        if let runAs, let entry = getpwnam(runAs) {
            for path in owned { chown(path, entry.pointee.pw_uid, entry.pointee.pw_gid) }
        }
        _ = try await Self.offCooperativeThreads {
            try Self.execute(
                "\(bin)/initdb", ["-D", data.path, "-U", "certgate", "--pwfile=\(passwordFile.path)", "--auth=scram-sha-256", "-E", "UTF8", "--no-sync"],
                environment: [:], runAs: runAs)
        }
        var attempt = 0
        while true {
            attempt += 1
            let port = unusedLocalPort()
            do {
                try await Self.offCooperativeThreads { [serverOptions] in
                    try Self.start(bin: bin, runAs: runAs, data: data.path, port: port, options: serverOptions)
                }
                self.port = port
                break
            } catch {
                guard attempt < 3 else { throw error }
            }
        }
        running.withLock { $0 = true }
        _ = try await psql("CREATE DATABASE \(database)", database: "postgres")
    }

    /// `postgres://certgate@127.0.0.1:PORT/certgate?sslmode=disable` (the password apart).
    public var url: String { "postgres://\(user)@127.0.0.1:\(port)/\(database)?sslmode=disable" }

    /// Stops the server (fast: connections are cut, as in an outage).
    public func stop() async throws {
        guard running.withLock({ $0 }) else { return }
        _ = try await Self.offCooperativeThreads { [self] in try run("pg_ctl", ["-D", folder.appendingPathComponent("data").path, "-m", "fast", "-w", "stop"]) }
        running.withLock { $0 = false }
    }

    /// Starts it again on the same port.
    public func start() async throws {
        guard !running.withLock({ $0 }) else { return }
        try await Self.offCooperativeThreads { [self] in
            try Self.start(bin: bin, runAs: runAs, data: folder.appendingPathComponent("data").path, port: port, options: serverOptions)
        }
        running.withLock { $0 = true }
    }

    /// Runs SQL with psql as the superuser (never over TLS; 10 s to connect, 30 s a
    /// statement); returns its unaligned, tuples-only output.
    @discardableResult
    public func psql(_ sql: String, database: String? = nil) async throws -> String {
        try await Self.offCooperativeThreads { [self] in
            try Self.execute(
                "\(bin)/psql", ["-h", "127.0.0.1", "-p", String(port), "-U", user, "-d", database ?? self.database, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql],
                environment: ["PGPASSWORD": password, "PGSSLMODE": "disable", "PGCONNECT_TIMEOUT": "10", "PGOPTIONS": "-c statement_timeout=30000"], runAs: nil)
        }
    }

    /// Runs a tool's wait on a thread of its own, not on one of Swift concurrency's
    /// cooperative threads (see ``FinishedProcess``).
    private static func offCooperativeThreads<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread { continuation.resume(with: Result { try body() }) }
        }
    }

    deinit {
        if running.withLock({ $0 }) { _ = try? run("pg_ctl", ["-D", folder.appendingPathComponent("data").path, "-m", "immediate", "-w", "stop"]) }
        try? FileManager.default.removeItem(at: folder)
    }

    private static func start(bin: String, runAs: String?, data: String, port: Int, options extra: String) throws {
        let options = "-p \(port) -k \(data) -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=50" + extra
        _ = try execute("\(bin)/pg_ctl", ["-D", data, "-l", "\(data)/server.log", "-w", "-t", "30", "-o", options, "start"], environment: [:], runAs: runAs)
    }

    @discardableResult
    private func run(_ tool: String, _ arguments: [String]) throws -> String {
        try Self.execute("\(bin)/\(tool)", arguments, environment: [:], runAs: runAs)
    }

    /// Runs a tool to its end with posix_spawn and waitpid. (Foundation's `Process` never
    /// saw a tool running under another user id exit.) Output goes to a file, not a pipe:
    /// the server pg_ctl starts inherits it and would hold a pipe open while it runs.
    private static func execute(_ executable: String, _ arguments: [String], environment: [String: String], runAs: String?) throws -> String {
        var argv = [executable] + arguments
        if let runAs, let entry = getpwnam(runAs) {
            argv = ["/usr/bin/setpriv", "--reuid=\(entry.pointee.pw_uid)", "--regid=\(entry.pointee.pw_gid)", "--clear-groups", "--"] + argv
        }
        let outputPath = "/tmp/certgate-pg-output-\(UUID().uuidString)"
        defer { unlink(outputPath) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let environmentList = ProcessInfo.processInfo.environment.merging(environment) { $1 }.map { "\($0.key)=\($0.value)" }
        var cArguments = argv.map { strdup($0) } + [nil]
        var cEnvironment = environmentList.map { strdup($0) } + [nil]
        defer {
            for pointer in cArguments { free(pointer) }
            for pointer in cEnvironment { free(pointer) }
        }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, argv[0], &actions, nil, &cArguments, &cEnvironment)
        guard spawned == 0 else { throw Failure(description: "cannot run \(argv[0]): \(String(cString: strerror(spawned)))") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let text = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        let exited = (status & 0x7f) == 0
        let code = (status >> 8) & 0xff
        guard exited, code == 0 else {
            throw Failure(description: "\((executable as NSString).lastPathComponent) \(exited ? "exited \(code)" : "was killed by signal \(status & 0x7f)"): \(text)")
        }
        return text
    }

    /// The newest PostgreSQL's bin folder (Debian keeps it off PATH).
    private static func binaries() -> String? {
        let root = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).compactMap(Int.init).sorted(by: >)
        for version in versions where FileManager.default.isExecutableFile(atPath: "\(root)/\(version)/bin/pg_ctl") {
            return "\(root)/\(version)/bin"
        }
        return nil
    }
}
