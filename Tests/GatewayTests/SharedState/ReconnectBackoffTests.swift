@testable import Gateway
import Testing

@Suite("Reconnecting to the fleet's database", .timeLimit(.minutes(1)))
struct ReconnectBackoffTests {
    @Test("a lost connection is reopened after 100 ms, then 200, 400 … doubling up to 5 s, and after 100 ms again once a connection worked")
    func backoffSchedule() {
        var backoff = ReconnectBackoff()
        let waits = (0..<9).map { _ in backoff.failed() }
        #expect(waits == [100, 200, 400, 800, 1_600, 3_200, 5_000, 5_000, 5_000].map { Duration.milliseconds($0) })
        backoff.connected()
        #expect(backoff.failed() == .milliseconds(100))
        #expect(backoff.failed() == .milliseconds(200))
    }
}
