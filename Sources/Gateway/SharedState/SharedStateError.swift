import NIOCore
import PostgresNIO

/// The fleet's database could not be used: doing what, and why — in certgate's words, never
/// the driver's text (which can quote a query's values) and never a password.
public struct SharedStateError: Error, Sendable, CustomStringConvertible {
    /// What could not be done ("connect", "commit generation 12", ...).
    public let operation: String
    public let reason: String
    /// The database is not reachable (or went away mid-way): nothing was changed, and the
    /// caller may try again later (`UNAVAILABLE`). False: it answered, and refused.
    public let unreachable: Bool

    public init(operation: String, reason: String, unreachable: Bool = false) {
        self.operation = operation
        self.reason = reason
        self.unreachable = unreachable
    }

    public var description: String { "shared state: cannot \(operation): \(reason)" }

    /// `error` from the driver (or the socket under it) as certgate's reason.
    /// - Parameter passwordSource: where the password came from, named when the server refuses it.
    static func from(_ error: any Error, operation: String, passwordSource: String? = nil) -> SharedStateError {
        if let error = error as? SharedStateError { return error }
        if let error = error as? PostgresTransactionError {
            let inner = error.closureError ?? error.beginError ?? error.commitError ?? error.rollbackError
            return inner.map { from($0, operation: operation) } ?? SharedStateError(operation: operation, reason: "the transaction failed")
        }
        guard let error = error as? PSQLError else {
            if let error = error as? ChannelError, case .ioOnClosedChannel = error {
                return SharedStateError(operation: operation, reason: "the connection to the database is closed", unreachable: true)
            }
            return SharedStateError(operation: operation, reason: SocketFailure.describe(error), unreachable: true)
        }
        switch error.code {
        case .server:
            let state = error.serverInfo?[.sqlState] ?? "?"
            var reason = serverReason(sqlState: state)
            if state == "28P01", let passwordSource { reason += "; the password came from \(passwordSource)" }
            return SharedStateError(operation: operation, reason: reason, unreachable: unreachableStates.contains(state))
        case .connectionError:
            let reason = error.underlying.map { SocketFailure.describe($0) } ?? "cannot connect"
            return SharedStateError(operation: operation, reason: "cannot reach the database: \(reason)", unreachable: true)
        case .serverClosedConnection, .uncleanShutdown, .clientClosedConnection:
            return SharedStateError(operation: operation, reason: "the database closed the connection", unreachable: true)
        case .sslUnsupported:
            return SharedStateError(operation: operation, reason: "the server does not offer TLS, which sslmode requires")
        case .failedToAddSSLHandler, .receivedUnencryptedDataAfterSSLRequest:
            return SharedStateError(operation: operation, reason: "the TLS handshake with the database failed", unreachable: true)
        case .authMechanismRequiresPassword:
            return SharedStateError(operation: operation, reason: "the server asks for a password: set shared_state.password_file or PGPASSWORD")
        case .unsupportedAuthMechanism, .saslError:
            return SharedStateError(operation: operation, reason: "the server's authentication method failed or is not supported (use scram-sha-256, md5 or trust)")
        case .queryCancelled:
            return SharedStateError(operation: operation, reason: "the query was cancelled", unreachable: true)
        default:
            return SharedStateError(operation: operation, reason: "the exchange with the database failed (\(error.code))", unreachable: true)
        }
    }

    /// SQLSTATEs that mean "try again later" rather than "refused".
    private static let unreachableStates: Set<String> = ["57P01", "57P02", "57P03", "53300", "08006", "08001", "08004", "40001", "40P01", "55P03", "57014"]

    private static func serverReason(sqlState: String) -> String {
        switch sqlState {
        case "28P01": return "password authentication failed (SQLSTATE 28P01)"
        case "28000": return "the server refused this user (SQLSTATE 28000: see pg_hba.conf)"
        case "3D000": return "the database does not exist (SQLSTATE 3D000)"
        case "42501": return "the user lacks a privilege certgate needs (SQLSTATE 42501)"
        case "57P01", "57P02", "57P03": return "the database is shutting down or starting (SQLSTATE \(sqlState))"
        case "53300": return "the database has no connection slot left (SQLSTATE 53300)"
        case "40001", "40P01": return "the transaction conflicted with another one (SQLSTATE \(sqlState))"
        case "57014": return "the statement took too long and was cancelled (SQLSTATE 57014)"
        default: return "the database answered with an error (SQLSTATE \(sqlState))"
        }
    }
}
