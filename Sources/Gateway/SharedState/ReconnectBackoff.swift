/// How long a node waits before reopening its lost connection to the fleet's database:
/// 100 ms after the first failure, doubling with each further one, at most 5 s; back to
/// 100 ms once a connection works again.
struct ReconnectBackoff: Sendable, Equatable {
    static let first: Duration = .milliseconds(100)
    static let limit: Duration = .seconds(5)

    /// The wait before the next attempt.
    private(set) var next: Duration = Self.first

    /// An attempt failed (or a working connection was lost): the wait before the next one;
    /// the one after waits twice as long, up to ``limit``.
    mutating func failed() -> Duration {
        defer { next = min(next * 2, Self.limit) }
        return next
    }

    /// A connection works: the next loss waits ``first`` again.
    mutating func connected() {
        next = Self.first
    }
}
