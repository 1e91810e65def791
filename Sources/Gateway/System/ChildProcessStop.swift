import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Ends a child process that ran past its timeout (a notification command, a `dns_hook`).
///
/// SIGTERM first, then SIGKILL once `grace` has passed: certgate ignores SIGTERM, SIGINT and
/// SIGHUP itself (swift-service-lifecycle sets them to `SIG_IGN` to read them from a signal
/// source), and an ignored signal stays ignored across `exec` — so a child that installs no
/// handler of its own would never end on SIGTERM alone.
enum ChildProcessStop {
    static func stop(_ process: Process, grace: Duration = .seconds(2)) {
        guard process.isRunning else { return }
        process.terminate()
        let pid = process.processIdentifier
        Task {
            try? await Task.sleep(for: grace)
            if process.isRunning { kill(pid, SIGKILL) }
        }
    }
}
