import CertificateTestSupport
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("Validity notifications (the real binary)", .serialized, .timeLimit(.minutes(3)))
struct NotifierInteropTests {
    /// Entries expiring in 3 days, expired, not yet valid, and fine.
    static func fixture() throws -> FixtureFolder {
        let folder = try GatewayInteropTests.fixture()
        let authority = GatewayInteropTests.authority
        let now = Date()
        let leaves: [(String, TestCertificate)] = [
            ("soon", authority.leaf(dnsNames: ["soon.test"], notAfter: now.addingTimeInterval(3 * 86_400 + 3_600))),
            ("gone", authority.leaf(dnsNames: ["gone.test"], notBefore: now.addingTimeInterval(-30 * 86_400), notAfter: now.addingTimeInterval(-86_400))),
            ("later", authority.leaf(dnsNames: ["later.test"], notBefore: now.addingTimeInterval(5 * 86_400), notAfter: now.addingTimeInterval(60 * 86_400))),
        ]
        for (name, leaf) in leaves {
            try folder.write(leaf.pem, to: "certs/\(name).pem")
            try folder.write(leaf.key.pkcs8PEM, to: "certs/\(name).key")
        }
        return folder
    }

    static let extraCertificates = """
          soon: { tls_cert: certs/soon.pem, tls_key: certs/soon.key }
          gone: { tls_cert: certs/gone.pem, tls_key: certs/gone.key }
          later: { tls_cert: certs/later.pem, tls_key: certs/later.key }
        """

    @Test("one webhook POST and one command run per entry per state change, with the JSON body")
    func webhookAndCommand() async throws {
        let folder = try Self.fixture()
        defer { folder.remove() }
        let receiver = try await WebhookReceiver(group: MultiThreadedEventLoopGroup.singleton)
        // Each run writes its own file (runs may overlap).
        let output = folder.url.appendingPathComponent("notified").path
        try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
        let notify = """

            validity:
              interval: 1h
              notify:
                - webhook: http://127.0.0.1:\(receiver.port)/hook
                - command: ["/bin/sh", "-c", 'cat > "$0/$$.json"', "\(output)"]
            """
        let config = GatewayInteropTests.config(extraCertificates: Self.extraCertificates) + notify
        let gateway = try await GatewayProcess(config: config, folder: folder)
        defer { gateway.stop() }

        try await eventually { receiver.bodies.all.count >= 3 }
        let bodies = receiver.bodies.all
        #expect(bodies.count == 3)
        let byEntry = Dictionary(uniqueKeysWithValues: bodies.map { ($0["entry"] as? String ?? "?", $0) })
        #expect(byEntry["soon"]?["state"] as? String == "expiring")
        #expect(byEntry["soon"]?["days_left"] as? Int == 3)
        #expect(byEntry["soon"]?["names"] as? [String] == ["soon.test"])
        #expect(byEntry["gone"]?["state"] as? String == "expired")
        #expect(byEntry["later"]?["state"] as? String == "not_yet_valid")
        #expect(byEntry["soon"]?["host"] as? String == ProcessInfo.processInfo.hostName)
        #expect((byEntry["soon"]?["not_after"] as? String)?.hasSuffix("Z") == true)

        // The command got the same JSON (each file complete once it parses).
        func commandEntries() -> [String] {
            let files = (try? FileManager.default.contentsOfDirectory(atPath: output)) ?? []
            return files.compactMap { FileManager.default.contents(atPath: output + "/" + $0) }
                .compactMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] }.compactMap { $0["entry"] as? String }
        }
        try await eventually { commandEntries().count >= 3 }
        #expect(commandEntries().sorted() == ["gone", "later", "soon"])

        // A reload that changes nothing tells nothing again. Proof that anything it would
        // have sent has arrived: a second reload that adds an expiring entry, whose one
        // notification comes after.
        gateway.signal(SIGHUP)
        #expect(try await gateway.waitForLog("configuration reloaded"))
        let soon2 = GatewayInteropTests.authority.leaf(dnsNames: ["soon2.test"], notAfter: Date().addingTimeInterval(2 * 86_400 + 3_600))
        try folder.write(soon2.pem, to: "certs/soon2.pem")
        try folder.write(soon2.key.pkcs8PEM, to: "certs/soon2.key")
        let withSoon2 = GatewayInteropTests.config(extraCertificates: Self.extraCertificates + "\n  soon2: { tls_cert: certs/soon2.pem, tls_key: certs/soon2.key }") + notify
        try folder.write(withSoon2.replacingOccurrences(of: "PORT", with: String(gateway.port)), to: "certgate.yaml")
        gateway.signal(SIGHUP)
        #expect(try await gateway.waitForLog("configuration reloaded", occurrences: 2))
        try await eventually { receiver.bodies.all.count >= 4 }
        #expect(receiver.bodies.all.compactMap { $0["entry"] as? String }.dropFirst(3) == ["soon2"])
        try await eventually { commandEntries().count >= 4 }
        #expect(commandEntries().sorted() == ["gone", "later", "soon", "soon2"])
        try? await receiver.channel.close()
    }

    @Test("a command past its timeout is ended even though it ignores SIGTERM (as every child of certgate does unless it sets a handler): logged as failed with the signal, and the process is gone")
    func commandPastItsTimeoutIsKilled() async throws {
        let folder = try Self.fixture()
        defer { folder.remove() }
        let pids = folder.url.appendingPathComponent("pids").path
        // Records its PID, then waits far past the 1 s timeout without a SIGTERM handler.
        let notify = """

            validity:
              interval: 1h
              notify:
                - command: ["/bin/sh", "-c", 'echo $$ >> "$0"; exec sleep 60', "\(pids)"]
                  timeout: 1s
            """
        let gateway = try await GatewayProcess(config: GatewayInteropTests.config(extraCertificates: Self.extraCertificates) + notify, folder: folder)
        defer { gateway.stop() }
        // Three entries changed state at start: three runs, each ended past its second.
        #expect(try await gateway.waitForLog("notification command failed", occurrences: 3, timeout: .seconds(20)), "\(gateway.logText)")
        let failures = ReloadInteropTests.lines(gateway.logText, containing: "notification command failed")
        #expect(failures.count == 3)
        #expect(failures.allSatisfy { $0.contains("command=/bin/sh") && $0.contains("status=9") }, "\(failures)")
        let started = ((try? String(contentsOfFile: pids, encoding: .utf8)) ?? "").split(separator: "\n").compactMap { Int32($0) }
        #expect(started.count == 3)
        // Gone: signal 0 finds no such process.
        #expect(started.allSatisfy { kill($0, 0) == -1 && errno == ESRCH }, "\(started)")
    }

    @Test("a webhook that is down is retried and logged; handshakes and reloads are unaffected")
    func webhookDown() async throws {
        let folder = try Self.fixture()
        defer { folder.remove() }
        let dead = try ReservedPort()
        defer { withExtendedLifetime(dead) {} }  // held until the test ends
        let deadPort = dead.port
        let notify = """

            validity:
              notify:
                - { webhook: "http://127.0.0.1:\(deadPort)/hook", retries: 1, timeout: 1s }
            """
        let config = GatewayInteropTests.config(extraCertificates: Self.extraCertificates) + notify
        let gateway = try await GatewayProcess(config: config, folder: folder)
        defer { gateway.stop() }
        #expect(try await servedCommonName(port: gateway.port, serverName: "exact.test", folder: folder).cn == "exact.test")
        #expect(try await gateway.waitForLog("will retry"))
        #expect(try await gateway.waitForLog("giving up", timeout: .seconds(15)))
        gateway.signal(SIGHUP)
        #expect(try await gateway.waitForLog("configuration reloaded"))
        #expect(try await servedCommonName(port: gateway.port, serverName: "exact.test", folder: folder).cn == "exact.test")
    }
}
