import Testing
@testable import Gateway

@Suite("The ACME loop's wakeup", .timeLimit(.minutes(1)))
struct LoopWakeupTests {
    @Test("a signal ends a wait at once; a signal with nobody waiting ends the next wait at once, and only that one")
    func signalEndsWait() async {
        let wakeup = LoopWakeup()
        let clock = ContinuousClock()
        // Signalled while waiting (the wait would otherwise last 60 s, beyond the time limit).
        async let waited: Duration = clock.measure { await wakeup.wait(atMost: .seconds(60)) }
        try? await Task.sleep(for: .milliseconds(50))
        wakeup.signal()
        #expect(await waited < .seconds(30))
        // Signalled before the wait.
        wakeup.signal()
        let early = await clock.measure { await wakeup.wait(atMost: .seconds(60)) }
        #expect(early < .seconds(30))
        // The pending signal was used up: this wait lasts its timeout.
        let timed = await clock.measure { await wakeup.wait(atMost: .milliseconds(200)) }
        #expect(timed >= .milliseconds(200))
    }

    @Test("the timeout of a wait ended early does not end a later wait")
    func lateTimeoutIgnored() async {
        let wakeup = LoopWakeup()
        let clock = ContinuousClock()
        wakeup.signal()
        await wakeup.wait(atMost: .milliseconds(100))  // ended by the pending signal; no timer
        async let first: Void = wakeup.wait(atMost: .milliseconds(100))
        try? await Task.sleep(for: .milliseconds(20))
        wakeup.signal()
        await first  // its 100 ms timer is still running
        let second = await clock.measure { await wakeup.wait(atMost: .milliseconds(600)) }
        #expect(second >= .milliseconds(600))
    }
}
