import CertificateTestSupport
import Foundation
import Testing

/// The tests' own guard against hanging CI: a command run to its end is stopped at its
/// deadline (tried here with a command that would take 30 s).
@Suite("A command the tests run is stopped at its deadline", .timeLimit(.minutes(1)))
struct BoundedProcessTests {
    @Test("a command past its deadline is killed: it is reported as stopped, with what it printed, in about the deadline")
    func stoppedAtTheDeadline() throws {
        let started = ContinuousClock.now
        let finished = try FinishedProcess.run(
            URL(fileURLWithPath: "/bin/sh"), ["-c", "echo before; exec sleep 30"], timeout: .seconds(1))
        let elapsed = ContinuousClock.now - started
        #expect(finished.timedOut)
        #expect(finished.status == SIGKILL)
        #expect(finished.stdout == "before\n")
        #expect(elapsed < .seconds(10), "took \(elapsed)")
    }

    @Test("a command that ends in time is not stopped: its status and both outputs, read at once (100 KiB on stderr does not block stdout)")
    func endsInTime() throws {
        let finished = try FinishedProcess.run(
            URL(fileURLWithPath: "/bin/sh"), ["-c", "head -c 102400 /dev/zero >&2; echo out; exit 3"], timeout: .seconds(30))
        #expect(!finished.timedOut)
        #expect(finished.status == 3)
        #expect(finished.stdout == "out\n")
        #expect(finished.stderr.utf8.count == 102_400)
    }
}
