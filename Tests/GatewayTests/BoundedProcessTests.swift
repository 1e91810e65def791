import CertificateTestSupport
import Foundation
import Testing

/// The tests' own guard against hanging CI: a command run to its end is stopped at its
/// deadline (tried here with a command that would take 30 s), and a long-running process
/// that does not take SIGTERM is killed after its grace period.
@Suite("A command the tests run is stopped at its deadline; a launched process is stopped in bounded time", .timeLimit(.minutes(1)))
struct BoundedProcessTests {
    @Test("a command past its deadline is killed: it is reported as stopped, with what it printed, in about the deadline")
    func stoppedAtTheDeadline() async throws {
        let started = ContinuousClock.now
        let finished = try await FinishedProcess.run(
            URL(fileURLWithPath: "/bin/sh"), ["-c", "echo before; exec sleep 30"], timeout: .seconds(1))
        let elapsed = ContinuousClock.now - started
        #expect(finished.timedOut)
        #expect(finished.status == SIGKILL)
        #expect(finished.stdout == "before\n")
        #expect(elapsed < .seconds(10), "took \(elapsed)")
    }

    @Test("a command that ends in time is not stopped: its status and both outputs, read at once (100 KiB on stderr does not block stdout)")
    func endsInTime() async throws {
        let finished = try await FinishedProcess.run(
            URL(fileURLWithPath: "/bin/sh"), ["-c", "head -c 102400 /dev/zero >&2; echo out; exit 3"], timeout: .seconds(30))
        #expect(!finished.timedOut)
        #expect(finished.status == 3)
        #expect(finished.stdout == "out\n")
        #expect(finished.stderr.utf8.count == 102_400)
    }
    @Test("a launched process that ignores SIGTERM is stopped with SIGKILL after the grace period, in about that time")
    func stuckProcessIsKilled() async throws {
        let process = try LaunchedProcess(URL(fileURLWithPath: "/bin/sh"), ["-c", "trap '' TERM; echo ready; while :; do sleep 1; done"])
        #expect(try await eventually { process.standardOutputText == "ready\n" })
        #expect(!process.waitForExit(timeout: .milliseconds(200)))
        let started = ContinuousClock.now
        #expect(!process.stop(grace: .seconds(1)), "SIGTERM alone ended it")
        let elapsed = ContinuousClock.now - started
        #expect(!process.isRunning)
        #expect(process.terminationReason == .uncaughtSignal)
        #expect(process.terminationStatus == SIGKILL)
        #expect(elapsed >= .seconds(1) && elapsed < .seconds(10), "took \(elapsed)")
    }

    @Test("a launched process's standard output and error are collected apart, or written to one file")
    func launchedProcessOutputs() async throws {
        let apart = try LaunchedProcess(URL(fileURLWithPath: "/bin/sh"), ["-c", "echo out; echo err >&2"])
        #expect(apart.waitForExit(timeout: .seconds(10)))
        #expect(apart.terminationStatus == 0)
        #expect(try await eventually { apart.standardOutputText == "out\n" && apart.standardErrorText == "err\n" })

        let file = FileManager.default.temporaryDirectory.appendingPathComponent("certgate-launched-\(UUID().uuidString).log")
        defer { try? FileManager.default.removeItem(at: file) }
        let together = try LaunchedProcess(
            URL(fileURLWithPath: "/bin/sh"), ["-c", "echo out; echo err >&2"], standardOutput: .file(file), standardError: .file(file))
        #expect(together.waitForExit(timeout: .seconds(10)))
        #expect(together.terminationStatus == 0)
        #expect(together.standardOutputText == "out\nerr\n")
        #expect(together.standardErrorText == "out\nerr\n")
    }
}
