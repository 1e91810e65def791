import Foundation
import NIOCore
import NIOPosix
import Synchronization
import Testing
@testable import Gateway

@Suite("event loop lag", .timeLimit(.minutes(2)))
struct EventLoopLagTests {
    @Test("a loop blocked for 200 ms records a lag of at least 150 ms; a stopped monitor records nothing more")
    func blockedLoopShowsAsLag() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let samples = Mutex<[Int64]>([])
        let lag = EventLoopLag { nanoseconds in samples.withLock { $0.append(nanoseconds) } }
        lag.start(on: group, every: .milliseconds(10))
        // Samples arrive while the loop is free.
        #expect(try await eventually(timeout: .seconds(5)) { samples.withLock { $0.count } >= 3 })
        let loop = group.next()
        try await loop.submit { _ = usleep(200_000) }.get()
        #expect(try await eventually(timeout: .seconds(5)) { samples.withLock { $0.contains { $0 >= 150_000_000 } } })
        lag.stop()
        try await loop.submit {}.get()  // a run already due has run
        let count = samples.withLock { $0.count }
        try await Task.sleep(for: .milliseconds(100))
        #expect(samples.withLock { $0.count } == count)
        try await group.shutdownGracefully()
    }
    @Test("by default a loop is measured every 100 ms: never more samples than 100 ms periods have passed since the start (one loop)")
    func defaultIntervalIs100Milliseconds() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let samples = Mutex(0)
        let lag = EventLoopLag { _ in samples.withLock { $0 += 1 } }
        let started = ContinuousClock.now
        lag.start(on: group)
        #expect(try await eventually(timeout: .seconds(10)) { samples.withLock { $0 } >= 3 })
        lag.stop()
        let elapsed = ContinuousClock.now - started
        // The first run is due 100 ms after the start, each next one 100 ms after the last:
        // at most elapsed / 100 ms of them (a slow machine makes fewer, never more).
        let periods = Int(elapsed / .milliseconds(100))
        #expect(samples.withLock { $0 } <= periods, "\(samples.withLock { $0 }) samples in \(elapsed)")
        try await group.shutdownGracefully()
    }
}
