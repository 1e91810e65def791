import Foundation

// Helpers shared by ControlCommandInteropTests and LifecycleInteropTests: certgate's log
// lines without their timestamps, and `certgate ctl` on a socket.

/// The lines of a certgate log without their leading timestamp, as swift-log's
/// `StreamLogHandler` writes them after it: `notice certgate: key=value … [Gateway] message`
/// (metadata sorted by key; no metadata: `notice certgate: [certgate] stopped`).
func logEntries(_ log: String) -> [String] {
    log.split(separator: "\n").map { line in
        guard let space = line.firstIndex(of: " ") else { return String(line) }
        return String(line[line.index(after: space)...])
    }
}

/// `certgate ctl --socket SOCKET arguments…`, run to its end.
func runCtl(socket: String, _ arguments: [String]) async throws -> CertgateProcess.Output {
    try await CertgateProcess.run(["ctl", "--socket", socket] + arguments)
}
