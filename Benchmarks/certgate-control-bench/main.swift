import BenchmarkSupport
import ControlProtocol
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix

// certgate-control-bench: the control plane end to end — a gRPC client on the Unix socket,
// the real binary, durable SQLite state — in release builds:
//
//   swift build -c release --product certgate
//   swift run -c release certgate-control-bench [--quick] [--binary .build/release/certgate]
//
// 1. loads a 100,000-entry set (10 batches of 10,000 upserts);
// 2. upserts 1 entry (a renewed certificate) into it, 51 times: median and p90, end to end;
// 3. stops the gateway: state size per entry; restarts it: time to serve the stored set;
// 4. on a fresh gateway, applies a whole set of 10,000 distinct certificates, again
//    unchanged, and again with 100 of them renewed.
// Prints a Markdown table for README.

typealias Control = Certgate_Control_V1_CertificateControl.Client<HTTP2ClientTransport.Posix>

let arguments = CommandLine.arguments
let quick = arguments.contains("--quick")
let binary = arguments.firstIndex(of: "--binary").map { arguments[$0 + 1] } ?? ".build/release/certgate"
// --postgres URL --password-file PATH: the set lives in that fleet database (shared_state).
let postgres = arguments.firstIndex(of: "--postgres").map { arguments[$0 + 1] }
let passwordFile = arguments.firstIndex(of: "--password-file").map { arguments[$0 + 1] }
let sharedState = postgres.map { url in
    "shared_state:\n  postgres: \(url)\n  node: bench\n" + (passwordFile.map { "  password_file: \($0)\n" } ?? "")
} ?? ""
let clock = ContinuousClock()
let certificates = try BenchCertificates()
var rows: [String] = []
@MainActor func row(_ cells: String...) { rows.append("| " + cells.joined(separator: " | ") + " |") }

/// A `certgate run` in a throw-away folder with a control socket and its own state.
@MainActor final class Gateway {
    let folder: URL
    var process: Process?
    var socket: String { folder.appendingPathComponent("control.sock").path }
    var stateFiles: [String] { ["", "-wal", "-shm"].map { folder.appendingPathComponent("state/certgate.db").path + $0 } }

    init() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("certgate-control-bench-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try """
        log_level: warning
        listeners:
          - name: https
            listen: 127.0.0.1:0
        routes:
          - server_names: ["*"]
            respond: { body: "ok\\n" }
        state_dir: state
        control:
          socket: control.sock
        \(sharedState)certificates: {}
        """.write(to: folder.appendingPathComponent("certgate.yaml"), atomically: true, encoding: .utf8)
    }

    /// Starts the binary and waits until the control socket answers; returns how long that took.
    @discardableResult
    func start() async throws -> Double {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["run", "--config", folder.appendingPathComponent("certgate.yaml").path]
        let log = folder.appendingPathComponent("certgate.log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        process.standardError = try FileHandle(forWritingTo: log)
        let started = clock.now
        try process.run()
        self.process = process
        while clock.now - started < .seconds(120) {
            if FileManager.default.fileExists(atPath: socket),
               (try? await withControl({ try await $0.getStatus(Certgate_Control_V1_GetStatusRequest()) })) != nil {
                return nanoseconds(clock.now - started) / 1e6
            }
            guard process.isRunning else { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw BenchError("certgate did not start: \((try? String(contentsOf: log, encoding: .utf8)) ?? "")")
    }

    func stop() {
        guard let process, process.isRunning else { return }
        process.terminate()
        process.waitUntilExit()
    }

    var stateBytes: Int {
        stateFiles.reduce(0) { total, path in
            total + ((try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? nil ?? 0)
        }
    }

    func withControl<T: Sendable>(_ body: (Control) async throws -> T) async throws -> T {
        let transport = try HTTP2ClientTransport.Posix(target: .unixDomainSocket(path: socket), transportSecurity: .plaintext)
        return try await withGRPCClient(transport: transport) { try await body(Control(wrapping: $0)) }
    }

    /// Stops the gateway and removes its folder.
    func remove() {
        stop()
        try? FileManager.default.removeItem(at: folder)
    }
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

func entry(_ name: String, domains: [String], _ leaf: (cert: String, key: String)) -> Certgate_Control_V1_CertificateEntry {
    .with {
        $0.name = name
        $0.domains = domains
        $0.tlsCert = leaf.cert
        $0.tlsKey = leaf.key
    }
}

// 1–3: a large set, then single upserts into it.
let large = quick ? 10_000 : 100_000
let batch = 10_000
do {
    print("loading \(large) entries…")
    // Entries share one certificate and differ by `domains` (each is still validated and stored).
    let shared = try certificates.leaf(names: ["bench.example.com"])
    let gateway = try Gateway()
    try await gateway.start()
    var loadSeconds = 0.0
    try await gateway.withControl { control in
        for start in stride(from: 0, to: large, by: batch) {
            let request = Certgate_Control_V1_UpdateCertificatesRequest.with {
                $0.upsert = (start..<min(large, start + batch)).map { entry("e\($0)", domains: ["site\($0).example.com"], shared) }
            }
            let began = clock.now
            _ = try await control.updateCertificates(request)
            loadSeconds += nanoseconds(clock.now - began) / 1e9
        }
    }
    row("load \(large) entries through the socket (batches of \(batch) upserts, durable)", String(format: "%.1f s (%.0f µs per entry)", loadSeconds, loadSeconds * 1e6 / Double(large)))

    let rounds = quick ? 21 : 51
    let renewals = try (0..<rounds).map { round in try certificates.leaf(names: ["site\(round * 7).example.com"]) }
    var samples: [Double] = []
    try await gateway.withControl { control in
        for round in 0..<rounds {
            let request = Certgate_Control_V1_UpdateCertificatesRequest.with {
                $0.upsert = [entry("e\(round * 7)", domains: ["site\(round * 7).example.com"], renewals[round])]
            }
            let began = clock.now
            let result = try await control.updateCertificates(request)
            samples.append(nanoseconds(clock.now - began) / 1e6)
            guard result.changed == ["e\(round * 7)"] else { throw BenchError("unexpected result \(result)") }
        }
    }
    row("upsert 1 entry into \(large) through the socket, durable, end to end", String(format: "median %.1f ms · p90 %.1f ms", median(samples), percentile(samples, 0.9)))

    gateway.stop()
    if postgres == nil { row("state size at \(large) entries (one shared ~1 KB certificate + key per row)", String(format: "%.1f MB (%.2f KB per entry)", Double(gateway.stateBytes) / 1e6, Double(gateway.stateBytes) / 1024 / Double(large))) }
    let restart = try await gateway.start()
    row("restart serving the stored \(large)-entry set\(postgres == nil ? "" : " (from PostgreSQL)") (start → control socket answers)", String(format: "%.1f s", restart / 1000))
    gateway.remove()
}

// 4: whole-set applies of distinct certificates.
if postgres == nil {
    let count = quick ? 2_000 : 10_000
    print("applying \(count) distinct certificates…")
    let leaves = try (0..<count).map { try certificates.leaf(names: ["d\($0).example.com"]) }
    let entries = leaves.enumerated().map { entry("d\($0.offset)", domains: [], $0.element) }
    let gateway = try Gateway()
    try await gateway.start()
    @MainActor func apply(_ entries: [Certgate_Control_V1_CertificateEntry]) async throws -> (Double, Certgate_Control_V1_UpdateResult) {
        try await gateway.withControl { control in
            let began = clock.now
            let result = try await control.applyCertificateSet(.with { $0.entries = entries })
            return (nanoseconds(clock.now - began) / 1e6, result)
        }
    }
    let (first, firstResult) = try await apply(entries)
    guard firstResult.added.count == count else { throw BenchError("apply added \(firstResult.added.count)") }
    row("apply a whole set of \(count) distinct certificates (all new)", String(format: "%.2f s (%.0f µs per entry)", first / 1000, first * 1000 / Double(count)))
    let (same, sameResult) = try await apply(entries)
    guard sameResult.changed.isEmpty && sameResult.added.isEmpty else { throw BenchError("unchanged apply changed \(sameResult.changed.count)") }
    row("apply the same \(count) again (nothing changed)", String(format: "%.0f ms", same))
    var renewed = entries
    for index in stride(from: 0, to: count, by: count / 100) {
        let leaf = try certificates.leaf(names: ["d\(index).example.com"])
        renewed[index] = entry("d\(index)", domains: [], leaf)
    }
    let (partial, partialResult) = try await apply(renewed)
    row("apply the \(count) with 100 renewed", String(format: "%.0f ms (%d changed)", partial, partialResult.changed.count))
    gateway.stop()
    row("state size at \(count) distinct entries", String(format: "%.1f MB (%.2f KB per entry)", Double(gateway.stateBytes) / 1e6, Double(gateway.stateBytes) / 1024 / Double(count)))
    gateway.remove()
}

print("")
print("| measurement | figure |")
print("|---|---|")
rows.forEach { print($0) }
