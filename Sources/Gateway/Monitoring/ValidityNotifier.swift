import AsyncHTTPClient
import CertificateKit
import Foundation
import Logging
import NIOCore

/// What a notifier is told when an entry's validity state changes.
public struct ValidityNotification: Codable, Sendable, Equatable {
    public var entry: String
    public var names: [String]
    public var notAfter: Date
    public var daysLeft: Int
    public var state: CertificateValidity.State
    public var previousState: CertificateValidity.State?
    public var host: String

    enum CodingKeys: String, CodingKey {
        case entry, names, state, host
        case notAfter = "not_after"
        case daysLeft = "days_left"
        case previousState = "previous_state"
    }

    public static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        return encoder
    }
}

/// Sends validity notifications to every configured notifier, in the background: a failing
/// or slow notifier never delays serving or updates. Webhooks are retried with backoff.
final class ValidityNotifier: Sendable {
    private let notifiers: [NotifierConfiguration]
    private let client: HTTPClient
    private let logger: Logger

    init(notifiers: [NotifierConfiguration], client: HTTPClient, logger: Logger) {
        self.notifiers = notifiers
        self.client = client
        self.logger = logger
    }

    func notify(_ notifications: [ValidityNotification]) {
        guard !notifiers.isEmpty, !notifications.isEmpty else { return }
        for notification in notifications {
            guard let body = try? ValidityNotification.encoder().encode(notification) else { continue }
            for notifier in notifiers {
                Task { [self] in
                    switch notifier {
                    case .webhook(let url, let timeout, let retries):
                        await post(body, to: url, timeout: timeout.duration, retries: retries, entry: notification.entry)
                    case .command(let arguments, let timeout):
                        await run(arguments, input: body, timeout: timeout.duration, entry: notification.entry)
                    }
                }
            }
        }
    }

    private func post(_ body: Data, to url: String, timeout: Duration, retries: Int, entry: String) async {
        var delay = Duration.milliseconds(500)
        for attempt in 0...retries {
            do {
                var request = HTTPClientRequest(url: url)
                request.method = .POST
                request.headers.add(name: "content-type", value: "application/json")
                request.body = .bytes(ByteBuffer(bytes: Array(body)))
                let response = try await client.execute(request, timeout: TimeAmount(timeout))
                guard (200..<300).contains(response.status.code) else {
                    throw NotifierError(reason: "HTTP \(response.status.code)")
                }
                return
            } catch {
                let last = attempt == retries
                logger.log(level: last ? .error : .warning, last ? "webhook notification failed; giving up" : "webhook notification failed; will retry",
                           metadata: ["url": "\(url)", "entry": "\(entry)", "attempt": "\(attempt + 1)",
                                     "reason": "\((error as? NotifierError)?.reason ?? SocketFailure.describe(error))"])
                if last { return }
                try? await Task.sleep(for: delay)
                delay *= 2
            }
        }
    }

    private func run(_ arguments: [String], input: Data, timeout: Duration, entry: String) async {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: arguments[0])
        process.arguments = Array(arguments.dropFirst())
        let stdin = Pipe()
        process.standardInput = stdin
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        let status: Int32? = await withCheckedContinuation { continuation in
            process.terminationHandler = { finished in continuation.resume(returning: finished.terminationStatus) }
            do {
                try process.run()
            } catch {
                process.terminationHandler = nil
                logger.error("notification command cannot start", metadata: ["command": "\(arguments[0])", "entry": "\(entry)", "reason": "it cannot be executed (missing, or not executable)"])
                continuation.resume(returning: nil)
                return
            }
            stdin.fileHandleForWriting.write(input)
            try? stdin.fileHandleForWriting.close()
            let deadline = Task {
                try await Task.sleep(for: timeout)
                ChildProcessStop.stop(process)
            }
            _ = deadline
        }
        if let status, status != 0 {
            logger.error("notification command failed", metadata: ["command": "\(arguments[0])", "entry": "\(entry)", "status": "\(status)"])
        }
    }
}

struct NotifierError: Error, CustomStringConvertible {
    let reason: String
    var description: String { reason }
}
