import CertificateTestSupport
import Foundation
import Testing

/// Runs the real `certgate` binary built next to the test bundle.
enum CertgateProcess {
    struct Output {
        let status: Int32
        let stdout: String
        let stderr: String
    }

    static var binary: URL {
        if let override = ProcessInfo.processInfo.environment["CERTGATE_BINARY"] {
            return URL(fileURLWithPath: override)
        }
        var folder = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        while folder.path != "/" {
            let candidate = folder.appendingPathComponent("certgate")
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: candidate.path, isDirectory: &isDirectory), !isDirectory.boolValue {
                return candidate
            }
            folder.deleteLastPathComponent()
        }
        return packageRoot.appendingPathComponent(".build/debug/certgate")
    }

    static var packageRoot: URL {
        // Tests/GatewayTests/Support/CertgateProcess.swift → the package folder
        URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    /// Runs the binary to its end; one that has not finished within two minutes is stopped
    /// and the test fails (it does not hang).
    static func run(_ arguments: [String], in directory: URL? = nil) async throws -> Output {
        let finished = try await FinishedProcess.run(binary, arguments, in: directory)
        if finished.timedOut {
            Issue.record("certgate \(arguments.joined(separator: " ")) did not finish within 120 s; stopped")
        }
        return Output(status: finished.status, stdout: finished.stdout, stderr: finished.stderr)
    }
}

/// A throw-away folder with a config file and certificate files.
struct FixtureFolder {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("certgate-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url.appendingPathComponent("certs"), withIntermediateDirectories: true)
    }

    func write(_ text: String, to path: String) throws {
        try text.write(to: url.appendingPathComponent(path), atomically: true, encoding: .utf8)
    }

    func remove() { try? FileManager.default.removeItem(at: url) }
}

