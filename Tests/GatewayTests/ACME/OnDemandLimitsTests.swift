import CertificateKit
import Foundation
import Testing
@testable import Gateway

@Suite("the bounds on new on-demand orders", .timeLimit(.minutes(2)))
struct OnDemandLimitsTests {
    static let start = Date(timeIntervalSince1970: 1_800_000_000)
    static let client = IPAddress("192.0.2.7")!

    static func limits(ordersPerMinute: Double = 60, burst: Double = 3, perClient: Int = 100, backoff: TimeInterval = 300) -> OnDemandLimits {
        OnDemandLimits(policy: .init(maxConcurrent: 4, ordersPerMinute: ordersPerMinute, burst: burst, perClientPerHour: perClient, failureBackoff: backoff))
    }

    @Test("the token bucket allows the burst at once, then one order per 60/orders_per_minute seconds")
    func tokenBucket() {
        var limits = Self.limits(ordersPerMinute: 60, burst: 3)
        let now = Self.start
        #expect(limits.takeOrder(for: nil, now: now) == nil)
        #expect(limits.takeOrder(for: nil, now: now) == nil)
        #expect(limits.takeOrder(for: nil, now: now) == nil)
        #expect(limits.takeOrder(for: nil, now: now) == .rateLimited)
        #expect(limits.takeOrder(for: nil, now: now.addingTimeInterval(0.5)) == .rateLimited)
        // One token a second at 60 per minute.
        #expect(limits.takeOrder(for: nil, now: now.addingTimeInterval(1)) == nil)
        #expect(limits.takeOrder(for: nil, now: now.addingTimeInterval(1)) == .rateLimited)
        // An hour later the bucket holds the burst again, not more.
        let later = now.addingTimeInterval(3_600)
        #expect((0..<4).map { _ in limits.takeOrder(for: nil, now: later) } == [nil, nil, nil, .rateLimited])
    }

    @Test("orders_per_minute 0 allows the burst and then nothing")
    func zeroRate() {
        var limits = Self.limits(ordersPerMinute: 0, burst: 1)
        #expect(limits.takeOrder(for: nil, now: Self.start) == nil)
        #expect(limits.takeOrder(for: nil, now: Self.start.addingTimeInterval(86_400)) == .rateLimited)
    }

    @Test("a client has per_client_per_hour orders in any hour; other clients are not affected; an IPv6 client is its /64")
    func perClient() {
        var limits = Self.limits(burst: 1_000, perClient: 2)
        let now = Self.start
        #expect(limits.takeOrder(for: Self.client, now: now) == nil)
        #expect(limits.takeOrder(for: Self.client, now: now.addingTimeInterval(10)) == nil)
        #expect(!limits.clientAllowed(Self.client, now: now.addingTimeInterval(20)))
        #expect(limits.takeOrder(for: Self.client, now: now.addingTimeInterval(20)) == .clientRateLimited)
        #expect(limits.takeOrder(for: IPAddress("192.0.2.8")!, now: now.addingTimeInterval(20)) == nil)
        // The first order leaves the window an hour after it was made; the second 10 s later.
        #expect(limits.takeOrder(for: Self.client, now: now.addingTimeInterval(3_600)) == nil)
        #expect(limits.takeOrder(for: Self.client, now: now.addingTimeInterval(3_601)) == .clientRateLimited)
        #expect(limits.takeOrder(for: Self.client, now: now.addingTimeInterval(3_610)) == nil)

        let a = IPAddress("2001:db8:1:2::10")!, b = IPAddress("2001:db8:1:2:ffff::1")!, c = IPAddress("2001:db8:1:3::10")!
        #expect(OnDemandLimits.client(a) == OnDemandLimits.client(b))
        #expect(OnDemandLimits.client(a) != OnDemandLimits.client(c))
        #expect(limits.takeOrder(for: a, now: now) == nil)
        #expect(limits.takeOrder(for: b, now: now) == nil)
        #expect(limits.takeOrder(for: a, now: now) == .clientRateLimited)
        #expect(limits.takeOrder(for: c, now: now) == nil)
    }

    @Test("a refused order takes nothing: a client refused by the bucket keeps its hourly orders, and the bucket is not charged for a client over its limit")
    func refusalTakesNothing() {
        var limits = Self.limits(ordersPerMinute: 60, burst: 1, perClient: 1)
        let now = Self.start
        #expect(limits.takeOrder(for: IPAddress("192.0.2.1")!, now: now) == nil)
        #expect(limits.takeOrder(for: Self.client, now: now) == .rateLimited)
        #expect(limits.clientAllowed(Self.client, now: now))
        #expect(limits.takeOrder(for: IPAddress("192.0.2.1")!, now: now.addingTimeInterval(1)) == .clientRateLimited)
        // The token refilled in that second is still there for the client refused before.
        #expect(limits.takeOrder(for: Self.client, now: now.addingTimeInterval(1)) == nil)
    }

    @Test("a refused or failed name waits failure_backoff, doubling with each failure up to a day; success forgets it")
    func backoff() {
        var limits = Self.limits(backoff: 300)
        var now = Self.start
        #expect(limits.refusal(of: "x.test", now: now) == nil)
        limits.failed("x.test", reason: "the ask endpoint answered 403", now: now)
        #expect(limits.refusal(of: "x.test", now: now) == .init(until: now.addingTimeInterval(300), failures: 1, reason: "the ask endpoint answered 403"))
        #expect(limits.refusal(of: "x.test", now: now.addingTimeInterval(299)) != nil)
        #expect(limits.refusal(of: "x.test", now: now.addingTimeInterval(300)) == nil)
        var waits: [TimeInterval] = []
        for _ in 0..<12 {
            now = now.addingTimeInterval(100_000)
            limits.failed("x.test", reason: "order failed", now: now)
            waits.append(limits.refusal(of: "x.test", now: now)!.until.timeIntervalSince(now))
        }
        #expect(waits == [600, 1_200, 2_400, 4_800, 9_600, 19_200, 38_400, 76_800, 86_400, 86_400, 86_400, 86_400])
        #expect(limits.refusal(of: "y.test", now: now) == nil)
        limits.succeeded("x.test")
        #expect(limits.refusal(of: "x.test", now: now) == nil)
        limits.failed("x.test", reason: "again", now: now)
        #expect(limits.refusal(of: "x.test", now: now)?.until == now.addingTimeInterval(300))
    }
}
