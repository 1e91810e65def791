import Foundation
import Logging
import NIOCore
import PostgresNIO
import Synchronization

/// Challenge answers shared by a fleet: the CA may reach any node behind the load balancer,
/// so the node that orders publishes each answer in the fleet's database and every node
/// serves it from its own ``ChallengeResponses``.
///
/// Publishing writes the answer and `NOTIFY`s; each node, told (or at its periodic check),
/// mirrors the table into its responses and records that it did; the publisher returns once
/// every node alive (a heartbeat in the last 15 s) has — or after 3 s, so a node that died
/// without a word does not hold an order up. Withdrawing deletes the answer everywhere the
/// same way. All calls block: made on this object's own queue and connection.
final class FleetChallenges: Sendable {
    enum Kind: String, Sendable {
        case http01 = "http-01"
        case tlsALPN01 = "tls-alpn-01"
    }

    private struct Answer: Hashable {
        var kind: String
        var key: String
        var answer: String
        var certificate: [UInt8]?
        var privateKey: [UInt8]?
    }

    private let database: FleetDatabase
    private let responses: ChallengeResponses
    private let node: String
    private let logger: Logger
    let queue = DispatchQueue(label: "certgate.fleet.challenges")
    /// The answers of other nodes this node mirrors now, by kind and key.
    private let mirrored = Mutex<[String: Answer]>([:])
    /// This process, in the heartbeat: another process heartbeating under the same node name
    /// is a configuration mistake, said once.
    private let instance = UUID().uuidString
    private let namesakeReported = Mutex(false)
    private let heartbeats = Mutex(0)

    static let channel = "certgate_challenges"
    /// How long a publisher waits for the other nodes at most.
    static let acknowledgementLimit: Duration = .seconds(3)

    init(database: FleetDatabase, responses: ChallengeResponses, node: String, logger: Logger) {
        self.database = database
        self.responses = responses
        self.node = node
        self.logger = logger
    }

    /// Publishes an answer this node serves already, and waits for the others to serve it.
    func publish(_ kind: Kind, key: String, answer: String, certificate: [UInt8]? = nil, privateKey: [UInt8]? = nil) async throws {
        let (database, node) = (self.database, self.node)
        let expected: Int = try await onQueue {
            try database.withSession(operation: "publish a challenge answer") { session in
                try session.transaction {
                    try session.query("DELETE FROM certgate_challenge_seen WHERE kind = \(kind.rawValue) AND key = \(key)")
                    try session.query("""
                        INSERT INTO certgate_challenges (kind, key, answer, certificate, private_key, node, created_at)
                        VALUES (\(kind.rawValue), \(key), \(answer), \(certificate.map { ByteBuffer(bytes: $0) }), \(privateKey.map { ByteBuffer(bytes: $0) }),
                                \(node), \(Date().timeIntervalSince1970))
                        ON CONFLICT (kind, key) DO UPDATE SET answer = excluded.answer, certificate = excluded.certificate,
                            private_key = excluded.private_key, node = excluded.node, created_at = excluded.created_at
                        """)
                    try session.query("SELECT pg_notify(\(Self.channel), '')")
                }
                let alive = Date().timeIntervalSince1970 - 15
                return try session.query("SELECT count(*) FROM certgate_nodes WHERE node <> \(node) AND seen_at > \(alive)").first?.decode(Int.self) ?? 0
            }
        }
        guard expected > 0 else { return }
        let deadline = ContinuousClock.now + Self.acknowledgementLimit
        while ContinuousClock.now < deadline {
            let acknowledged: Int = try await onQueue {
                try database.withSession(operation: "read the challenge acknowledgements") { session in
                    try session.query("SELECT count(*) FROM certgate_challenge_seen WHERE kind = \(kind.rawValue) AND key = \(key) AND node <> \(node)")
                        .first?.decode(Int.self) ?? 0
                }
            }
            if acknowledged >= expected { return }
            try await Task.sleep(for: .milliseconds(10))
        }
        logger.notice("not every node of the fleet confirmed a challenge answer in time; the CA may reach one without it", metadata: [
            "challenge": "\(kind.rawValue)", "expected": "\(expected)",
        ])
    }

    /// Removes an answer from the fleet (every node drops it at its next mirror).
    func withdraw(_ kind: Kind, key: String) async {
        let database = self.database
        do {
            _ = try await onQueue {
                try database.withSession(operation: "withdraw a challenge answer") { session in
                    try session.transaction {
                        try session.query("DELETE FROM certgate_challenges WHERE kind = \(kind.rawValue) AND key = \(key)")
                        try session.query("DELETE FROM certgate_challenge_seen WHERE kind = \(kind.rawValue) AND key = \(key)")
                        try session.query("SELECT pg_notify(\(Self.channel), '')")
                    }
                }
                return 0
            }
        } catch {
            logger.warning("a challenge answer could not be withdrawn from the fleet; it is ignored once the order is over", metadata: [
                "challenge": "\(kind.rawValue)", "reason": "\(describeStoreFailure(error))",
            ])
        }
    }

    /// Serves exactly the other nodes' answers the table holds, and records that this node
    /// does. Runs on ``queue``.
    func mirror() {
        do {
            let node = self.node
            let answers = try database.withSession(operation: "read the challenge answers") { session in
                try session.query("SELECT kind, key, answer, certificate, private_key FROM certgate_challenges WHERE node <> \(node)").map { row in
                    let (kind, key, answer, certificate, privateKey) = try row.decode((String, String, String, ByteBuffer?, ByteBuffer?).self)
                    return Answer(kind: kind, key: key, answer: answer, certificate: certificate.map { Array($0.readableBytesView) },
                                  privateKey: privateKey.map { Array($0.readableBytesView) })
                }
            }
            var current: [String: Answer] = [:]
            for answer in answers { current[answer.kind + " " + answer.key] = answer }
            let previous = mirrored.withLock { mirrored in
                defer { mirrored = current }
                return mirrored
            }
            for (id, answer) in previous where current[id] != answer { remove(answer) }
            var added: [Answer] = []
            for (id, answer) in current where previous[id] != answer {
                if install(answer) { added.append(answer) }
            }
            guard !added.isEmpty else { return }
            try database.withSession(operation: "confirm the challenge answers") { session in
                for answer in added {
                    try session.query("""
                        INSERT INTO certgate_challenge_seen (kind, key, node) VALUES (\(answer.kind), \(answer.key), \(node))
                        ON CONFLICT DO NOTHING
                        """)
                }
            }
        } catch {
            // The database is away: the update follower reports it; answers already mirrored stay.
        }
    }

    /// Says this node is alive (publishers wait for the live nodes' confirmations); says,
    /// once, when another live process uses the same node name. Runs on ``queue``.
    func heartbeat() {
        let (node, instance) = (self.node, self.instance)
        let now = Date().timeIntervalSince1970
        let namesake = try? database.withSession(operation: "record the node's heartbeat") { session -> Double? in
            let previous = try session.query("SELECT instance, seen_at FROM certgate_nodes WHERE node = \(node)").first
                .map { try $0.decode((String, Double).self) }
            try session.query("""
                INSERT INTO certgate_nodes (node, instance, seen_at) VALUES (\(node), \(instance), \(now))
                ON CONFLICT (node) DO UPDATE SET instance = excluded.instance, seen_at = excluded.seen_at
                """)
            // Another instance's row right after a start is this node's previous life; one that
            // overwrote this process's own heartbeat since the last one is alive now.
            guard let previous, previous.0 != instance, now - previous.1 < 15 else { return nil }
            return now - previous.1
        }
        let beatenBefore = heartbeats.withLock { count in defer { count += 1 }; return count > 0 }
        if beatenBefore, let seconds = namesake ?? nil, !namesakeReported.withLock({ reported in defer { reported = true }; return reported }) {
            logger.error("another certgate process uses this node name in the fleet; node names must be unique (shared_state.node)", metadata: [
                "node": "\(node)", "other_seen_seconds_ago": "\(Int(seconds))",
            ])
        }
    }

    func close() {
        database.close()
    }

    private func install(_ answer: Answer) -> Bool {
        switch Kind(rawValue: answer.kind) {
        case .http01:
            responses.setHTTP01(token: answer.key, keyAuthorization: answer.answer)
            return true
        case .tlsALPN01:
            guard let certificate = answer.certificate, let privateKey = answer.privateKey,
                  let context = try? ListenerTLS.makeChallengeContext(certificateDER: certificate, privateKeyDER: privateKey) else {
                logger.warning("a tls-alpn-01 answer from another node cannot be served here", metadata: ["name": "\(answer.key)"])
                return false
            }
            responses.setTLSALPN01(name: answer.key, context: context)
            return true
        case nil:
            return false
        }
    }

    private func remove(_ answer: Answer) {
        switch Kind(rawValue: answer.kind) {
        case .http01: responses.removeHTTP01(token: answer.key)
        case .tlsALPN01: responses.removeTLSALPN01(name: answer.key)
        case nil: break
        }
    }

    private func onQueue<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        let result: Result<T, any Error> = await runBlocking(on: queue) { Result { try body() } }
        return try result.get()
    }
}
