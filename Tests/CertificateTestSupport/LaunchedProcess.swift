import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A long-running process a test starts and stops — the gateway, `ctl watch`, Pebble and
/// its challenge server — with its output collected in memory, written to a file, or
/// discarded.
///
/// Every wait is bounded, so a process that does not end cannot hang the test run:
/// ``stop(grace:)`` sends SIGTERM and, after `grace`, SIGKILL (children of the test runner
/// inherit a blocked SIGTERM, so a process that does not unblock it never sees a TERM);
/// ``waitForExit(timeout:)`` gives up after its timeout.
public final class LaunchedProcess: Sendable {
    /// Where one of its output streams goes.
    public enum Stream: Sendable, Equatable {
        /// Read into memory (``standardOutputText``, ``standardErrorText``) on a thread of its own.
        case collected
        case discarded
        /// Written to this file (created empty first); both streams may name the same file.
        case file(URL)
    }

    private let process: Process
    private let collectedOutput: CollectedOutput?
    private let collectedErrors: CollectedOutput?
    private let outputFile: URL?
    private let errorFile: URL?

    /// Starts `executable`. The environment is the test runner's with `environment` over it.
    public init(
        _ executable: URL, _ arguments: [String], directory: URL? = nil, environment: [String: String] = [:],
        standardOutput: Stream = .collected, standardError: Stream = .collected
    ) throws {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        if let directory { process.currentDirectoryURL = directory }
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        }
        var opened: [URL: FileHandle] = [:]
        var pipes: [Pipe?] = []
        for stream in [standardOutput, standardError] {
            var pipe: Pipe?
            let destination: Any
            switch stream {
            case .collected:
                pipe = Pipe()
                destination = pipe!
            case .discarded:
                destination = FileHandle.nullDevice
            case .file(let url):
                if let handle = opened[url] {
                    destination = handle
                } else {
                    _ = FileManager.default.createFile(atPath: url.path, contents: nil)
                    let handle = try FileHandle(forWritingTo: url)
                    opened[url] = handle
                    destination = handle
                }
            }
            if pipes.isEmpty { process.standardOutput = destination } else { process.standardError = destination }
            pipes.append(pipe)
        }
        try process.run()
        for handle in opened.values { try? handle.close() }
        collectedOutput = pipes[0].map { CollectedOutput(reading: $0) }
        collectedErrors = pipes[1].map { CollectedOutput(reading: $0) }
        if case .file(let url) = standardOutput { outputFile = url } else { outputFile = nil }
        if case .file(let url) = standardError { errorFile = url } else { errorFile = nil }
        self.process = process
    }

    public var isRunning: Bool { process.isRunning }
    public var processIdentifier: Int32 { process.processIdentifier }
    /// The exit status, or the signal that ended it (see ``terminationReason``); only once it ended.
    public var terminationStatus: Int32 { process.terminationStatus }
    public var terminationReason: Process.TerminationReason { process.terminationReason }

    /// What it wrote to its standard output so far (collected or in its file).
    public var standardOutputText: String { Self.text(collectedOutput, outputFile) }
    /// What it wrote to its standard error so far.
    public var standardErrorText: String { Self.text(collectedErrors, errorFile) }

    private static func text(_ collected: CollectedOutput?, _ file: URL?) -> String {
        if let collected { return collected.text.withLock { $0 } }
        return file.flatMap { try? String(contentsOf: $0, encoding: .utf8) } ?? ""
    }

    public func signal(_ number: Int32) {
        if process.isRunning { kill(process.processIdentifier, number) }
    }

    /// Waits for the process to end, at most `timeout`; whether it ended.
    @discardableResult
    public func waitForExit(timeout: Duration = .seconds(30)) -> Bool {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning {
            guard ContinuousClock.now < deadline else { return false }
            Thread.sleep(forTimeInterval: 0.01)
        }
        // Reaped: the termination status is set.
        process.waitUntilExit()
        return true
    }

    /// SIGTERM, then SIGKILL if it has not ended after `grace`; returns once it ended (a
    /// SIGKILLed process ends at once). Returns whether SIGTERM alone ended it.
    @discardableResult
    public func stop(grace: Duration = .seconds(15)) -> Bool {
        guard process.isRunning else { return true }
        signal(SIGTERM)
        if waitForExit(timeout: grace) { return true }
        kill9()
        return false
    }

    /// SIGKILL — no drain, no cleanup — and wait for the end.
    public func kill9() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
}

/// What a pipe carries, read on a thread of its own with blocking reads until its end
/// (Foundation's `readabilityHandler` once crashed the test process inside libdispatch while
/// another test waited for a process to exit).
final class CollectedOutput: Sendable {
    let text = Mutex<String>("")

    init(reading pipe: Pipe) {
        let handle = pipe.fileHandleForReading
        let thread = Thread { [self] in
            while true {
                let data = handle.availableData
                if data.isEmpty { return }
                text.withLock { $0 += String(decoding: data, as: UTF8.self) }
            }
        }
        thread.start()
    }
}
