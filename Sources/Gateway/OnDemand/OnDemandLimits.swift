import CertificateKit
import Foundation

/// The bounds on new on-demand orders, so that names chosen by clients cannot exhaust the
/// CA's rate limits or the gateway: a token bucket over all new orders, a count per client
/// address per hour, and a negative cache of names refused or failed whose wait doubles
/// with each failure. A value type; its owner locks it and passes the time in.
struct OnDemandLimits: Sendable {
    struct Policy: Sendable, Equatable {
        /// Orders running at once (enforced by the owner's slots, kept here for status).
        var maxConcurrent: Int
        /// New orders per minute, sustained, and the burst above it.
        var ordersPerMinute: Double
        var burst: Double
        /// New orders one client may cause per hour (an IPv6 client is its /64).
        var perClientPerHour: Int
        /// The first wait after a refusal or failure, doubled by each further one up to a day.
        var failureBackoff: TimeInterval
    }

    /// Why a name was not ordered (`certgate_issue_refused_total{reason}`).
    enum Refusal: String, Sendable, CaseIterable, Error {
        /// The `ask` endpoint did not say yes (or did not answer in time).
        case askDenied = "ask_denied"
        /// The client caused `per_client_per_hour` new orders in the last hour.
        case clientRateLimited = "client_rate_limited"
        /// No token left in the bucket of new orders.
        case rateLimited = "rate_limited"
        /// The name was refused or its order failed a short while ago (negative cache).
        case failedRecently = "failed_recently"
        /// Already as many names being looked up or ordered as the gateway takes at once
        /// (the local CA's reason for a full queue).
        case busy = "cache_full"
    }

    /// A name remembered as refused or failed.
    struct Remembered: Sendable, Equatable {
        var until: Date
        var failures: Int
        var reason: String
    }

    static let longestBackoff: TimeInterval = 86_400
    /// Names and clients remembered at most (the oldest are forgotten first past this).
    static let rememberedLimit = 100_000

    private(set) var policy: Policy
    private var tokens: Double
    private var lastRefill: Date?
    private var clients: [IPAddress: [Date]] = [:]
    private(set) var remembered: [String: Remembered] = [:]

    init(policy: Policy) {
        self.policy = policy
        self.tokens = policy.burst
    }

    mutating func replacePolicy(_ policy: Policy) {
        self.policy = policy
        tokens = min(tokens, policy.burst)
    }

    /// The client key of an address: IPv4 as is, IPv6 by its /64 (one subscriber's prefix).
    static func client(_ address: IPAddress) -> IPAddress {
        switch address {
        case .v4: return address
        case .v6(let high, _): return .v6(high, 0)
        }
    }

    /// When `name` was refused or failed recently: until when, and why.
    func refusal(of name: String, now: Date) -> Remembered? {
        guard let entry = remembered[name], entry.until > now else { return nil }
        return entry
    }

    /// Whether `client` may cause one more new order now (nothing is counted).
    func clientAllowed(_ client: IPAddress?, now: Date) -> Bool {
        guard let client else { return true }
        let recent = clients[Self.client(client)]?.filter { now.timeIntervalSince($0) < 3_600 }.count ?? 0
        return recent < policy.perClientPerHour
    }

    /// Takes the right to start one new order for `client`: a token from the bucket and one
    /// of the client's orders this hour. Nothing is taken when it is refused.
    mutating func takeOrder(for client: IPAddress?, now: Date) -> Refusal? {
        guard clientAllowed(client, now: now) else { return .clientRateLimited }
        refill(now: now)
        guard tokens >= 1 else { return .rateLimited }
        tokens -= 1
        if let client {
            let key = Self.client(client)
            var times = clients[key]?.filter { now.timeIntervalSince($0) < 3_600 } ?? []
            times.append(now)
            clients[key] = times
            if clients.count > Self.rememberedLimit {
                clients = clients.filter { _, times in times.contains { now.timeIntervalSince($0) < 3_600 } }
            }
        }
        return nil
    }

    /// Remembers `name` as refused or failed: refused until the backoff has passed, the
    /// backoff doubling with each failure in a row (up to a day).
    mutating func failed(_ name: String, reason: String, now: Date) {
        let failures = (remembered[name]?.failures ?? 0) + 1
        let wait = min(policy.failureBackoff * pow(2, Double(min(failures - 1, 30))), Self.longestBackoff)
        remembered[name] = Remembered(until: now.addingTimeInterval(wait), failures: failures, reason: reason)
        if remembered.count > Self.rememberedLimit { forgetOldest(now: now) }
    }

    /// A name obtained: its failures are forgotten.
    mutating func succeeded(_ name: String) {
        remembered[name] = nil
    }

    private mutating func refill(now: Date) {
        if let lastRefill {
            let elapsed = max(0, now.timeIntervalSince(lastRefill))
            tokens = min(policy.burst, tokens + elapsed * policy.ordersPerMinute / 60)
        }
        lastRefill = now
    }

    /// Drops names whose wait is over, then, if still too many, the quarter that ends soonest.
    private mutating func forgetOldest(now: Date) {
        remembered = remembered.filter { $0.value.until > now }
        guard remembered.count > Self.rememberedLimit else { return }
        let soonest = remembered.sorted { $0.value.until < $1.value.until }.prefix(remembered.count / 4)
        for (name, _) in soonest { remembered[name] = nil }
    }
}
