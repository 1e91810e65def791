import CertificateTestSupport
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A running `certgate run` in a throw-away folder, with its log (standard error) captured.
final class GatewayProcess: Sendable {
    let folder: FixtureFolder
    let port: Int
    /// The metrics endpoint's port, when the configuration has a `metrics:` section: give
    /// it port 0 (`metrics: { listen: 127.0.0.1:0 }`) and read the bound one here — no other
    /// test can take it between a choice and the bind.
    let metricsPort: Int?
    let process: LaunchedProcess

    /// Writes `certgate.yaml` (with `PORT` replaced by a free port) and starts the binary;
    /// returns once it logs that it is serving (and, when configured, that its control
    /// socket listens). A free port can be taken by another test between the choice and
    /// certgate's bind: a start that fails to bind it is tried again on another port.
    /// - Parameter command: the command line before `arguments` (default `run --config PATH`);
    ///   it runs in `folder`.
    init(
        config: String, folder: FixtureFolder, configPath: String = "certgate.yaml", arguments: [String] = [],
        command: [String]? = nil
    ) async throws {
        self.folder = folder
        var attempt = 0
        var started: (port: Int, process: LaunchedProcess)
        while true {
            attempt += 1
            let port = try freePort()
            try folder.write(config.replacingOccurrences(of: "PORT", with: String(port)), to: configPath)
            let process = try LaunchedProcess(
                CertgateProcess.binary, (command ?? ["run", "--config", folder.url.appendingPathComponent(configPath).path]) + arguments,
                directory: folder.url, standardOutput: .discarded, standardError: .collected)
            // The line that follows the binding of every listener (its message ends the line).
            if try await Self.waitForLog("] serving\n", of: process, timeout: .seconds(20)) {
                started = (port, process)
                break
            }
            process.stop()
            let text = process.standardErrorText
            guard attempt < 3, text.contains("cannot listen on 127.0.0.1:\(port)") else {
                throw GatewayProcessError(message: "certgate did not start:\n\(text)")
            }
        }
        // The metrics endpoint and the control socket are bound right after.
        let process = started.process
        if config.hasPrefix("metrics:") || config.contains("\nmetrics:") {
            guard try await Self.waitForLog("metrics endpoint listening", of: process, timeout: .seconds(10)),
                  let line = process.standardErrorText.split(separator: "\n").first(where: { $0.contains("metrics endpoint listening") }),
                  let match = line.firstMatch(of: /address=\S*:(\d+)\s/), let bound = Int(match.1) else {
                process.stop()
                throw GatewayProcessError(message: "certgate did not open its metrics endpoint:\n\(process.standardErrorText)")
            }
            metricsPort = bound
        } else {
            metricsPort = nil
        }
        port = started.port
        self.process = process
        if config.contains("\ncontrol:"), !(try await waitForLog("control socket listening")) {
            stop()
            throw GatewayProcessError(message: "certgate did not open its control socket:\n\(logText)")
        }
    }

    private static func waitForLog(_ text: String, of process: LaunchedProcess, timeout: Duration) async throws -> Bool {
        try await eventually(timeout: timeout) {
            process.standardErrorText.contains(text) || !process.isRunning
        } && process.standardErrorText.contains(text)
    }

    var logText: String { process.standardErrorText }

    /// Waits until the log holds `text` (counting from the start).
    func waitForLog(_ text: String, occurrences: Int = 1, timeout: Duration = .seconds(10)) async throws -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if logText.components(separatedBy: text).count - 1 >= occurrences { return true }
            if !process.isRunning { return false }
            try await Task.sleep(for: .milliseconds(20))
        }
        return false
    }

    func signal(_ number: Int32) {
        process.signal(number)
    }

    /// SIGKILL — no drain, no cleanup — then wait for the exit.
    func kill9() {
        process.kill9()
    }

    /// SIGTERM, then wait for the exit: SIGKILL after 45 s (past the default 30 s
    /// `shutdown_timeout`), and a test that needed a clean stop fails on the status.
    @discardableResult
    func stop() -> Int32 {
        process.stop(grace: .seconds(45))
        reportCrash()
        return process.terminationStatus
    }

    /// When the gateway died of a crash signal (a Swift trap is SIGILL), its log — with the
    /// runtime's backtrace — goes to the test output, so that CI shows where.
    func reportCrash() {
        guard !process.isRunning, process.terminationReason == .uncaughtSignal,
              [SIGILL, SIGTRAP, SIGABRT, SIGSEGV, SIGBUS].contains(process.terminationStatus) else { return }
        print("certgate crashed (signal \(process.terminationStatus)); its log:\n\(logText)\n(end of certgate's log)")
    }
}

struct GatewayProcessError: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}

/// A TCP port on 127.0.0.1 held bound but not listening for as long as this lives: a
/// connection to it is refused, and no other test can take it meanwhile (a "dead upstream"
/// or a dead webhook).
final class ReservedPort: Sendable {
    let port: Int
    private let descriptor: Int32
    /// Whether the socket was handed to a listener (which closes it), see ``listen()``.
    private let handedOver = Mutex(false)

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw GatewayProcessError(message: "socket() failed") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        let named = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        guard bound == 0, named == 0 else {
            close(fd)
            throw GatewayProcessError(message: "bind() failed")
        }
        descriptor = fd
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    /// Makes the bound socket listen and hands it over (to NIO's
    /// `ServerBootstrap.withBoundSocket`): the port goes from refusing connections to
    /// accepting them without ever being free for another test to take.
    func listen() throws -> Int32 {
        guard Glibc.listen(descriptor, 128) == 0 else { throw GatewayProcessError(message: "listen() failed") }
        handedOver.withLock { $0 = true }
        return descriptor
    }

    deinit {
        if !handedOver.withLock({ $0 }) { close(descriptor) }
    }
}

/// A TCP port on 127.0.0.1 nobody listens on right now (it may be taken before it is used:
/// prefer ``ReservedPort`` where the port must stay free or dead).
func freePort() throws -> Int {
    try ReservedPort().port
}

/// Runs a command-line client (openssl, curl) and captures its output (see `runCommand`).
func runTool(_ executable: String, _ arguments: [String], input: Data? = nil) async throws -> (status: Int32, output: String) {
    try await runCommand(executable, arguments, input: input)
}
