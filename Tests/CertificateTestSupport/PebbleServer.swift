import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Pebble (Let's Encrypt's test ACME server) and pebble-challtestsrv, started for one test
/// on free ports and stopped after: Pebble's HTTPS uses a certificate made here; every name
/// resolves to 127.0.0.1 through challtestsrv's DNS. Pebble validates http-01 and
/// tls-alpn-01 against challtestsrv's own ports (the test answers challenges through its
/// management API), or, given `validationPorts`, against those (a gateway's own
/// listeners). Random nonce rejection stays on (Pebble's default 5 %).
public final class PebbleServer: Sendable {
    public struct Failure: Error, CustomStringConvertible { public let description: String }

    public let folder: URL
    public let directoryURL: String
    /// DER of the CA that signed Pebble's HTTPS certificate (the client's `ca_roots`).
    public let httpsRoot: [UInt8]
    public let managementPort: Int
    public let challengePorts: (http: Int, tls: Int, dns: Int, management: Int)
    private let processes: Mutex<(pebble: LaunchedProcess, challengeServer: LaunchedProcess)>
    private let listenPort: Int
    private let environment: [String: String]
    private let answersItself: Bool

    /// - Parameter config: extra members of Pebble's config object (JSON text, each
    ///   ending with a comma), e.g. EAB settings.
    public init(extraConfig: String = "", environment: [String: String] = [:], validationPorts: (http: Int, tls: Int)? = nil) async throws {
        for tool in ["/usr/bin/pebble", "/usr/bin/pebble-challtestsrv"] where !FileManager.default.isExecutableFile(atPath: tool) {
            throw Failure(description: "\(tool) is missing: apt-get install pebble (CI's .ci/run installs it)")
        }
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("pebble-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let authority = TestCertificate.authority(commonName: "Pebble HTTPS test CA")
        let serving = authority.leaf(dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"])
        try serving.pem.write(to: folder.appendingPathComponent("cert.pem"), atomically: true, encoding: .utf8)
        try serving.key.pkcs8PEM.write(to: folder.appendingPathComponent("key.pem"), atomically: true, encoding: .utf8)
        httpsRoot = authority.parsed.der

        var attempt = 0
        while true {
            attempt += 1
            let (listen, management) = (unusedLocalPort(), unusedLocalPort())
            let ports = (http: validationPorts?.http ?? unusedLocalPort(), tls: validationPorts?.tls ?? unusedLocalPort(), dns: unusedLocalPort(), management: unusedLocalPort())
            let config = """
                {"pebble": {\(extraConfig)
                  "listenAddress": "127.0.0.1:\(listen)", "managementListenAddress": "127.0.0.1:\(management)",
                  "certificate": "\(folder.path)/cert.pem", "privateKey": "\(folder.path)/key.pem",
                  "httpPort": \(ports.http), "tlsPort": \(ports.tls), "ocspResponderURL": ""}}
                """
            try config.write(to: folder.appendingPathComponent("pebble.json"), atomically: true, encoding: .utf8)
            let answersItself = validationPorts == nil
            let (pebble, challenge) = try Self.launchBoth(folder: folder, ports: ports, answersItself: answersItself, environment: environment)
            if await Self.waitUntil({ isListening(port: listen) && isListening(port: management) && isListening(port: ports.management) }) {
                self.processes = Mutex((pebble, challenge))
                self.listenPort = listen
                self.environment = environment
                self.answersItself = answersItself
                self.directoryURL = "https://127.0.0.1:\(listen)/dir"
                self.managementPort = management
                self.challengePorts = ports
                return
            }
            pebble.stop(); challenge.stop()
            guard attempt < 3 else {
                let log = (try? String(contentsOf: folder.appendingPathComponent("pebble.log"), encoding: .utf8)) ?? ""
                throw Failure(description: "Pebble did not start: \(log.suffix(2_000))")
            }
        }
    }

    /// The PEM of the CA of Pebble's own HTTPS (for `ca_roots`).
    public var httpsRootPEM: String {
        "-----BEGIN CERTIFICATE-----\n" + Data(httpsRoot).base64EncodedString(options: [.lineLength64Characters, .endLineWithLineFeed]) + "\n-----END CERTIFICATE-----\n"
    }

    /// Pebble's issuing root (PEM), to verify what it issued.
    public func issuingRoot() async throws -> String {
        let caFile = folder.appendingPathComponent("https-root.pem")
        let pem = "-----BEGIN CERTIFICATE-----\n" + Data(httpsRoot).base64EncodedString(options: [.lineLength64Characters, .endLineWithLineFeed]) + "\n-----END CERTIFICATE-----\n"
        try pem.write(to: caFile, atomically: true, encoding: .utf8)
        let (status, output) = try await runCommand("/usr/bin/curl", ["-sS", "--fail", "--cacert", caFile.path, "https://127.0.0.1:\(managementPort)/roots/0"])
        guard status == 0 else { throw Failure(description: "fetching Pebble's root: \(output)") }
        return output
    }

    /// A POST of `json` to challtestsrv's management API (`/add-http01`, `/set-txt`, …).
    public func manage(_ path: String, _ json: String) async throws {
        let (status, output) = try await runCommand("/usr/bin/curl", [
            "-sS", "--fail", "-X", "POST", "-H", "Content-Type: application/json", "-d", json,
            "http://127.0.0.1:\(challengePorts.management)\(path)",
        ])
        guard status == 0 else { throw Failure(description: "challtestsrv \(path): \(output)") }
    }

    /// What Pebble has logged so far.
    public var logText: String {
        (try? String(contentsOf: folder.appendingPathComponent("pebble.log"), encoding: .utf8)) ?? ""
    }

    public func stop() {
        terminate()
        try? FileManager.default.removeItem(at: folder)
    }

    /// Stops both processes and keeps the folder (for ``restart()``).
    public func terminate() {
        let (pebble, challengeServer) = processes.withLock { $0 }
        for process in [pebble, challengeServer] { process.stop() }
    }

    /// Starts Pebble and challtestsrv again on the same ports, as after an outage. The new
    /// Pebble knows no account, order or certificate of the old one, and has a new issuing
    /// root (read it again with ``issuingRoot()``).
    public func restart() async throws {
        terminate()
        let (pebble, challenge) = try Self.launchBoth(folder: folder, ports: challengePorts, answersItself: answersItself, environment: environment)
        processes.withLock { $0 = (pebble, challenge) }
        let (listen, management, challengeManagement) = (listenPort, managementPort, challengePorts.management)
        guard await Self.waitUntil({ isListening(port: listen) && isListening(port: management) && isListening(port: challengeManagement) }) else {
            let log = (try? String(contentsOf: folder.appendingPathComponent("pebble.log"), encoding: .utf8)) ?? ""
            throw Failure(description: "Pebble did not start again: \(log.suffix(2_000))")
        }
    }

    private static func launchBoth(
        folder: URL, ports: (http: Int, tls: Int, dns: Int, management: Int), answersItself: Bool, environment: [String: String]
    ) throws -> (LaunchedProcess, LaunchedProcess) {
        let challenge = try launch("/usr/bin/pebble-challtestsrv", [
            "-http01", answersItself ? "127.0.0.1:\(ports.http)" : "", "-https01", "", "-tlsalpn01", answersItself ? "127.0.0.1:\(ports.tls)" : "",
            "-dns01", "127.0.0.1:\(ports.dns)", "-management", "127.0.0.1:\(ports.management)",
            "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
        ], environment: [:], log: folder.appendingPathComponent("challtestsrv.log"))
        var pebbleEnvironment = ["PEBBLE_VA_NOSLEEP": "1"]
        pebbleEnvironment.merge(environment) { _, new in new }
        let pebble = try launch("/usr/bin/pebble", ["-config", folder.appendingPathComponent("pebble.json").path, "-dnsserver", "127.0.0.1:\(ports.dns)"],
                                environment: pebbleEnvironment, log: folder.appendingPathComponent("pebble.log"))
        return (pebble, challenge)
    }

    private static func launch(_ executable: String, _ arguments: [String], environment: [String: String], log: URL) throws -> LaunchedProcess {
        try LaunchedProcess(URL(fileURLWithPath: executable), arguments, environment: environment, standardOutput: .file(log), standardError: .file(log))
    }

    private static func waitUntil(_ condition: () -> Bool, timeout: Duration = .seconds(10)) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if condition() { return true }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return condition()
    }
}
