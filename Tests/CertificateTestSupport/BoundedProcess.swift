import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A command run to its end — or stopped at a deadline, so that a test waiting for a tool
/// or for the certgate binary fails instead of hanging CI: past `timeout` the process is
/// killed (SIGKILL). Standard output and error are read at the same time
/// (reading one to its end first would block on a process filling the other's pipe).
///
/// `run` waits on a thread of its own, not on one of Swift concurrency's few cooperative
/// threads (two on a two-core machine): tests waiting for tools at once must not starve
/// the ones that are running.
public struct FinishedProcess: Sendable {
    public let status: Int32
    public let stdout: String
    public let stderr: String
    /// The process was stopped at the deadline.
    public let timedOut: Bool

    public static func run(
        _ executable: URL, _ arguments: [String], in directory: URL? = nil, input: Data? = nil,
        mergingErrors: Bool = false, timeout: Duration = .seconds(120)
    ) async throws -> FinishedProcess {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(with: Result {
                    try runBlocking(executable, arguments, in: directory, input: input, mergingErrors: mergingErrors, timeout: timeout)
                })
            }
        }
    }

    /// The same, waiting on the calling thread (for callers outside Swift concurrency).
    public static func runBlocking(
        _ executable: URL, _ arguments: [String], in directory: URL? = nil, input: Data? = nil,
        mergingErrors: Bool = false, timeout: Duration = .seconds(120)
    ) throws -> FinishedProcess {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        if let directory { process.currentDirectoryURL = directory }
        let out = Pipe()
        let err = mergingErrors ? out : Pipe()
        process.standardOutput = out
        process.standardError = err
        let stdin = Pipe()
        process.standardInput = stdin
        try process.run()
        if let input { stdin.fileHandleForWriting.write(input) }
        try stdin.fileHandleForWriting.close()

        let pid = process.processIdentifier
        let finished = Mutex(false)
        let stopped = Mutex(false)
        let (seconds, attoseconds) = timeout.components
        let deadline = DispatchTime.now() + .nanoseconds(Int(seconds) * 1_000_000_000 + Int(attoseconds / 1_000_000_000))
        DispatchQueue.global().asyncAfter(deadline: deadline) {
            guard !finished.withLock({ $0 }) else { return }
            stopped.withLock { $0 = true }
            // SIGKILL at once: a child of the test runner may inherit SIGTERM blocked.
            kill(pid, SIGKILL)
        }
        let errors = Mutex(Data())
        let readErrors = DispatchGroup()
        if !mergingErrors {
            readErrors.enter()
            DispatchQueue.global().async {
                let data = err.fileHandleForReading.readDataToEndOfFile()
                errors.withLock { $0 = data }
                readErrors.leave()
            }
        }
        let output = out.fileHandleForReading.readDataToEndOfFile()
        readErrors.wait()
        process.waitUntilExit()
        finished.withLock { $0 = true }
        return FinishedProcess(
            status: process.terminationStatus, stdout: String(decoding: output, as: UTF8.self),
            stderr: String(decoding: errors.withLock { $0 }, as: UTF8.self), timedOut: stopped.withLock { $0 })
    }
}
