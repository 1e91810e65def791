import Foundation
import Logging
import NIOCore
import NIOSSL
import PostgresNIO
import Synchronization

/// A node's link to its fleet's PostgreSQL: one connection, used from one thread at a time
/// (the update queue, which runs every commit and every catch-up), reopened when it was
/// lost. Every call blocks its caller — never an event loop or Swift's cooperative pool —
/// for at most the connect timeout plus the query timeout.
///
/// The driver logs nothing: its debug output can hold a query's values (key PEM).
final class FleetDatabase: Sendable {
    let configuration: SharedStateConfiguration
    private let password: String?
    /// Where `password` came from, named when the server refuses it.
    private let passwordSource: String
    let group: any EventLoopGroup
    private let connection = Mutex<PostgresConnection?>(nil)
    private let connectionCount = Atomic<Int>(0)
    let silent = Logger(label: "certgate.postgres", factory: { _ in SwiftLogNoOpLogHandler() })
    /// How long one statement may take before the connection is dropped (and the caller told UNAVAILABLE).
    let queryTimeout: TimeAmount

    init(configuration: SharedStateConfiguration, password: String?, group: any EventLoopGroup, queryTimeout: TimeAmount = .seconds(10)) {
        self.configuration = configuration
        self.password = password
        self.passwordSource = configuration.passwordSource()
        self.group = group
        self.queryTimeout = queryTimeout
    }

    /// Another link to the same database, with a connection of its own.
    func sibling() -> FleetDatabase {
        FleetDatabase(configuration: configuration, password: password, group: group, queryTimeout: queryTimeout)
    }

    /// `user@host:port/database`, for logs.
    var location: String { configuration.location.description }

    // MARK: - Connections

    /// The driver's configuration for a new connection (listening ones too).
    func connectionConfiguration() throws(SharedStateError) -> PostgresConnection.Configuration {
        let location = configuration.location
        let tls: PostgresConnection.Configuration.TLS
        do {
            switch location.tls {
            case .disable:
                tls = .disable
            case .prefer, .require:
                var settings = TLSConfiguration.makeClientConfiguration()
                settings.certificateVerification = .none
                let context = try NIOSSLContext(configuration: settings)
                tls = location.tls == .prefer ? .prefer(context) : .require(context)
            case .verifyFull:
                tls = .require(try NIOSSLContext(configuration: .makeClientConfiguration()))
            }
        } catch {
            throw SharedStateError(operation: "connect", reason: "the TLS settings cannot be made")
        }
        var result = PostgresConnection.Configuration(
            host: location.host, port: location.port, username: location.user, password: password, database: location.database, tls: tls)
        result.options.connectTimeout = TimeAmount(configuration.connectTimeout.duration)
        result.options.additionalStartupParameters = [("application_name", location.applicationName ?? "certgate \(configuration.node)")]
        return result
    }

    /// A new connection, for the caller to own (the follower's listening one).
    func connect() async throws(SharedStateError) -> PostgresConnection {
        let settings = try connectionConfiguration()
        do {
            return try await PostgresConnection.connect(
                on: group.any(), configuration: settings, id: connectionCount.add(1, ordering: .relaxed).newValue, logger: silent)
        } catch {
            throw SharedStateError.from(error, operation: "connect to \(location)", passwordSource: passwordSource)
        }
    }

    /// The shared connection, opened when there is none or it was lost.
    private func session() throws(SharedStateError) -> PostgresConnection {
        if let open = connection.withLock({ $0 }), !open.isClosed { return open }
        let settings = try connectionConfiguration()
        let opened: PostgresConnection
        do {
            opened = try PostgresConnection.connect(
                on: group.any(), configuration: settings, id: connectionCount.add(1, ordering: .relaxed).newValue, logger: silent
            ).wait()
        } catch {
            throw SharedStateError.from(error, operation: "connect to \(location)", passwordSource: passwordSource)
        }
        connection.withLock { $0 = opened }
        return opened
    }

    /// Runs `body` on the shared connection; a failure that leaves the connection in doubt
    /// closes it (the next call reconnects).
    @discardableResult
    func withSession<T>(operation: String, _ body: (Session) throws -> T) throws(SharedStateError) -> T {
        let connection = try session()
        do {
            return try body(Session(connection: connection, logger: silent, timeout: queryTimeout))
        } catch {
            let failure = SharedStateError.from(error, operation: operation)
            if failure.unreachable { let _: EventLoopFuture<Void> = connection.close() }
            throw failure
        }
    }

    /// Closes the shared connection.
    func close() {
        if let open = connection.withLock({ current in defer { current = nil }; return current }) {
            let closed: EventLoopFuture<Void> = open.close()
            try? closed.wait()
        }
    }

    /// One connection lent to a caller: blocking queries, each within the query timeout.
    struct Session {
        let connection: PostgresConnection
        let logger: Logger
        let timeout: TimeAmount

        @discardableResult
        func query(_ query: PostgresQuery) throws -> [PostgresRow] {
            let connection = self.connection
            let deadline = connection.eventLoop.scheduleTask(in: timeout) { let _: EventLoopFuture<Void> = connection.close() }
            defer { deadline.cancel() }
            return try connection.query(query, logger: logger).wait().rows
        }

        /// Runs `body` in a transaction; rolls back (and rethrows) when it throws.
        func transaction<T>(_ begin: String = "BEGIN", _ body: () throws -> T) throws -> T {
            try query(PostgresQuery(unsafeSQL: begin))
            do {
                let result = try body()
                try query("COMMIT")
                return result
            } catch {
                if !connection.isClosed { _ = try? query("ROLLBACK") }
                throw error
            }
        }
    }
}
