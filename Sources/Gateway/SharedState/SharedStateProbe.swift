import Foundation
import NIOPosix
import PostgresNIO

/// `certgate check --connect`: reaches the fleet's database with the configuration's
/// settings and says where the fleet stands, changing nothing (no tables created).
public enum SharedStateProbe {
    /// One line on success ("reached USER@HOST:PORT/DB: the fleet is at generation N");
    /// the error says why not (never quoting the password).
    public static func check(_ configuration: GatewayConfiguration) throws(SharedStateError) -> String {
        guard let shared = configuration.sharedState else {
            throw SharedStateError(operation: "connect", reason: "the configuration has no shared_state section")
        }
        let password: String?
        switch shared.password(baseDirectory: configuration.baseDirectory) {
        case .success(let value): password = value
        case .failure(let error): throw error
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let database = FleetDatabase(configuration: shared, password: password, group: group)
        defer { database.close() }
        return try database.withSession(operation: "read the fleet's state") { session in
            let tables = try session.query("SELECT to_regclass('certgate_schema') IS NOT NULL").first?.decode(Bool.self) ?? false
            guard tables else { return "reached \(database.location): no fleet there yet (the first node to start sets it up)" }
            let applied = Set(try session.query("SELECT version FROM certgate_schema").map { try $0.decode(String.self) })
            let newer = applied.subtracting(FleetSchema.migrations.map(\.version)).sorted()
            guard newer.isEmpty else {
                throw SharedStateError(operation: "read the fleet's state", reason: "the database was set up by a newer certgate (schema \(newer.joined(separator: ", ")))")
            }
            guard let row = try session.query("SELECT generation, node FROM certgate_fleet WHERE id = 1").first else {
                return "reached \(database.location): the fleet holds no set yet"
            }
            let (generation, node) = try row.decode((Int64, String).self)
            return "reached \(database.location): the fleet is at generation \(generation) (last committed by \(node))"
        }
    }
}
