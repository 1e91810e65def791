import CertificateTestSupport
import ControlProtocol
import Foundation
import GRPCCore
import NIOPosix
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("Reloads through the real binary: every section applied live or reported as needing a restart; errors per entry", .serialized, .timeLimit(.minutes(3)))
struct ReloadInteropTests {
    static let authority = GatewayInteropTests.authority

    /// The log lines that contain every one of `parts`.
    static func lines(_ log: String, containing parts: String...) -> [Substring] {
        log.split(separator: "\n").filter { line in parts.allSatisfy { line.contains($0) } }
    }

    /// Rewrites the gateway's configuration (with its real port) and sends SIGHUP.
    static func reload(_ gateway: GatewayProcess, folder: FixtureFolder, config: String) throws {
        try folder.write(config.replacingOccurrences(of: "PORT", with: String(gateway.port)), to: "certgate.yaml")
        gateway.signal(SIGHUP)
    }

    @Test("SIGHUP puts new issuing: limits in force: with burst 1 at 0 per second, one more new name is signed, the next gets the default, cached names still serve")
    func issuingAppliedLive() async throws {
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        try folder.write(Self.authority.key.pkcs8PEM, to: "ca.key")
        let config = GatewayInteropTests.config(extraCertificates: "  dev-ca: { tls_cert: ca.pem, tls_key: ca.key, is_ca: true, domains: \"*.dev.test\" }")
        let gateway = try await GatewayProcess(config: config, folder: folder)
        defer { gateway.stop() }
        func served(_ name: String) async throws -> String? {
            try await servedCommonName(port: gateway.port, serverName: name, folder: folder).cn
        }
        // The defaults (burst 400) sign three new names.
        for name in ["a.dev.test", "b.dev.test", "c.dev.test"] { await #expect(try served(name) == name) }

        try Self.reload(gateway, folder: folder, config: config + "\nissuing: { rate_per_second: 0, burst: 1 }\n")
        #expect(try await gateway.waitForLog("configuration reloaded"))
        #expect(Self.lines(gateway.logText, containing: "issuing limits changed", "burst=1", "rate_per_second=0.0").count == 1)
        await #expect(try served("d.dev.test") == "d.dev.test")  // the one token left
        await #expect(try served("e.dev.test") == "fallback.test")  // rate_limited: the default serves
        await #expect(try served("a.dev.test") == "a.dev.test")  // cached before the reload: still served
    }

    /// Connects to 127.0.0.1:`port`, sends nothing, and waits (on a thread of its own) up to
    /// `timeout` for the server to close: whether it did.
    static func closedWhileSilent(port: Int, timeout: Int32) async -> Bool {
        await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                let (fd, connected) = loopbackConnection(port: port)
                defer { if fd >= 0 { close(fd) } }
                var wait = timeval(tv_sec: Int(timeout), tv_usec: 0)
                setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, socklen_t(MemoryLayout<timeval>.size))
                var byte: UInt8 = 0
                let read = connected ? recv(fd, &byte, 1, 0) : -1
                continuation.resume(returning: connected && read == 0)
            }
        }
    }

    @Test("SIGHUP puts new routes, handshake_timeout and shutdown_timeout in force: the next request gets the new route's answer, a silent connection is closed after the new 1 s (not the old 30 s), and SIGTERM with a connection open ends the gateway within the new 1 s (not the old 60 s)")
    func routesAndTimeoutsReloaded() async throws {
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        let before = GatewayInteropTests.config(handshakeTimeout: "30s").replacingOccurrences(of: "shutdown_timeout: 5s", with: "shutdown_timeout: 60s")
        #expect(before.contains("shutdown_timeout: 60s"))
        let gateway = try await GatewayProcess(config: before, folder: folder)
        defer { gateway.stop() }
        let caFile = folder.url.appendingPathComponent("ca.pem").path
        func body() async throws -> String {
            try await runTool("/usr/bin/curl", [
                "-sS", "--cacert", caFile, "--resolve", "exact.test:\(gateway.port):127.0.0.1", "https://exact.test:\(gateway.port)/",
            ]).output
        }
        #expect(try await body() == "served exact.test\n")

        let routes = """
              - server_names: ["*"]
                respond: { body: "reloaded {sni}\\n" }
            """
        let after = GatewayInteropTests.config(routes: routes, handshakeTimeout: "1s").replacingOccurrences(of: "shutdown_timeout: 5s", with: "shutdown_timeout: 1s")
        #expect(after.contains("shutdown_timeout: 1s") && after.contains("handshake_timeout: 1s"))
        try Self.reload(gateway, folder: folder, config: after)
        #expect(try await gateway.waitForLog("configuration reloaded"), "\(gateway.logText)")
        #expect(try await body() == "reloaded exact.test\n")
        // A connection that never starts its handshake: closed after the new 1 s.
        #expect(await Self.closedWhileSilent(port: gateway.port, timeout: 10))

        // SIGTERM with a connection open: the gateway waits the new 1 s for it, not 60 s.
        let open = try await TestTLSClient(group: GatewayInteropTests.group, trustRoots: try HandshakeInteropTests.trust()).connect(port: gateway.port, serverName: "exact.test")
        defer { Task { await open.close() } }
        let stopping = ContinuousClock.now
        gateway.signal(SIGTERM)
        #expect(await withCheckedContinuation { continuation in
            Thread.detachNewThread { continuation.resume(returning: gateway.process.waitForExit(timeout: .seconds(30))) }
        })
        #expect(ContinuousClock.now - stopping < .seconds(15))
        #expect(gateway.process.terminationStatus == 0)
    }

    @Test("SIGHUP puts a new validity.interval in force: an entry that expired after start is reported at the new period, not at the old one")
    func validityIntervalAppliedLive() async throws {
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        let notAfter = Date().addingTimeInterval(5)
        let brief = Self.authority.leaf(dnsNames: ["brief.test"], notAfter: notAfter)
        try folder.write(brief.pem, to: "certs/brief.pem")
        try folder.write(brief.key.pkcs8PEM, to: "certs/brief.key")
        let config = GatewayInteropTests.config(extraCertificates: "  brief: { tls_cert: certs/brief.pem, tls_key: certs/brief.key }")
        let gateway = try await GatewayProcess(config: config + "\nvalidity: { interval: 1h }\n", folder: folder)
        defer { gateway.stop() }
        #expect(Self.lines(gateway.logText, containing: "certificate validity changed", "entry=brief", "state=expiring").count == 1)

        // Past its notAfter, the hourly monitor has not looked again: nothing said yet.
        try await Task.sleep(until: .now + .seconds(max(0, notAfter.timeIntervalSinceNow) + 1), clock: .continuous)
        #expect(Self.lines(gateway.logText, containing: "certificate validity changed", "entry=brief", "state=expired").isEmpty)

        try Self.reload(gateway, folder: folder, config: config + "\nvalidity: { interval: 1s }\n")
        #expect(try await gateway.waitForLog("validity interval changed"))
        // The reload itself does not re-check an unchanged entry; the monitor, now every second, does.
        #expect(try await gateway.waitForLog("state=expired", timeout: .seconds(15)))
        #expect(Self.lines(gateway.logText, containing: "certificate validity changed", "entry=brief", "from=expiring", "state=expired").count == 1)
    }

    @Test("a reload that moves a listener, state_dir and metrics.listen applies the rest, says each needs a restart, keeps serving where it was, and says so again at the next reload")
    func restartSectionsReported() async throws {
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        let config = GatewayInteropTests.config()
        let gateway = try await GatewayProcess(config: config, folder: folder)
        defer { gateway.stop() }
        let other = try ReservedPort()
        let moved = config
            .replacingOccurrences(of: "listen: 127.0.0.1:PORT", with: "listen: 127.0.0.1:\(other.port)")
            .replacingOccurrences(of: "log_level: info", with: "log_level: debug")
            + "\nstate_dir: elsewhere\nmetrics: { listen: 127.0.0.1:\(other.port) }\n"
        #expect(moved.contains("log_level: debug") && !moved.contains("PORT"))
        try Self.reload(gateway, folder: folder, config: moved)
        #expect(try await gateway.waitForLog("configuration reloaded"))
        #expect(try await gateway.waitForLog("log level changed"))
        let restarts = Self.lines(gateway.logText, containing: "change needs a restart")
        #expect(restarts.count == 3)
        #expect(Self.lines(gateway.logText, containing: "change needs a restart", "section=listeners", "listener https moves from 127.0.0.1:\(gateway.port) to 127.0.0.1:\(other.port)").count == 1)
        #expect(Self.lines(gateway.logText, containing: "change needs a restart", "section=state_dir", "/elsewhere").count == 1)
        #expect(Self.lines(gateway.logText, containing: "change needs a restart", "section=metrics", "metrics.listen changes from none to 127.0.0.1:\(other.port)").count == 1)
        // Still serving on the old port; nothing bound on the new one.
        #expect(try await servedCommonName(port: gateway.port, serverName: "exact.test", folder: folder).cn == "exact.test")

        // The running values stayed, so the next reload reports the same three again.
        try Self.reload(gateway, folder: folder, config: moved)
        #expect(try await gateway.waitForLog("configuration reloaded", occurrences: 2))
        #expect(Self.lines(gateway.logText, containing: "change needs a restart").count == 6)
    }

    @Test("a reloaded file with a configuration error: SIGHUP logs the summary, then the error with file=, key= and line= metadata and its place in the message")
    func configurationErrorMetadata() async throws {
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        let config = GatewayInteropTests.config()
        let gateway = try await GatewayProcess(config: config, folder: folder)
        defer { gateway.stop() }
        // Line 2 of the file is `shutdown_timeout: 5s`.
        let broken = config.replacingOccurrences(of: "shutdown_timeout: 5s", with: "shutdown_timout: 5s")
        #expect(broken != config)
        try Self.reload(gateway, folder: folder, config: broken)
        #expect(try await gateway.waitForLog("configuration reload rejected"))
        let message = "certgate.yaml:2:1: shutdown_timout: unknown key; did you mean 'shutdown_timeout'?"
        #expect(try await gateway.waitForLog(message))
        let path = folder.url.appendingPathComponent("certgate.yaml").path
        let summary = Self.lines(gateway.logText, containing: "configuration reload rejected")
        #expect(summary.count == 1 && summary.allSatisfy { $0.contains("errors=1") && $0.contains("source=signal") })
        let reasons = Self.lines(gateway.logText, containing: message)
        #expect(reasons.count == 1)
        for part in ["file=\(path) ", "key=shutdown_timout ", "line=2 ", "source=signal "] {
            #expect(reasons.first?.contains(part) == true, "\(part)")
        }
    }

    @Test("a reload to a quieter log_level says \"log level changed\" while still at the old level, to a more verbose one at the new; between two levels quieter than notice it is not logged")
    func logLevelChangeIsLoggedAtTheMoreVerbose() async throws {
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        let config = GatewayInteropTests.config() + "\nmetrics: { listen: 127.0.0.1:0 }\n"  // log_level: info
        let gateway = try await GatewayProcess(config: config, folder: folder)
        defer { gateway.stop() }
        let metricsPort = try #require(gateway.metricsPort)
        func level(_ level: String) -> String { config.replacingOccurrences(of: "log_level: info", with: "log_level: \(level)") }
        func appliedReloads() async throws -> Double? {
            try await scrapeMetrics(port: metricsPort).value("certgate_updates_total", ["source": "signal", "result": "applied"])
        }

        // info → warning: told at info, before the switch.
        try Self.reload(gateway, folder: folder, config: level("warning"))
        #expect(try await gateway.waitForLog("log level changed"))
        #expect(Self.lines(gateway.logText, containing: "log level changed", "from=info", "to=warning").count == 1)
        // warning → notice: told at notice, after the switch.
        try Self.reload(gateway, folder: folder, config: level("notice"))
        #expect(try await gateway.waitForLog("log level changed", occurrences: 2))
        #expect(Self.lines(gateway.logText, containing: "log level changed", "from=warning", "to=notice").count == 1)
        // notice → warning: told at notice, before the switch. warning → error: at neither
        // level (notice is quieter than both); it is done when the fourth applied reload is
        // counted, and a rejected reload logged at error after it ends the log read.
        try Self.reload(gateway, folder: folder, config: level("warning"))
        #expect(try await gateway.waitForLog("log level changed", occurrences: 3))
        #expect(Self.lines(gateway.logText, containing: "log level changed", "from=notice", "to=warning").count == 1)
        try Self.reload(gateway, folder: folder, config: level("error"))
        #expect(try await eventually { try await appliedReloads() == 4 })
        try Self.reload(gateway, folder: folder, config: level("error").replacingOccurrences(of: "shutdown_timeout: 5s", with: "shutdown_timout: 5s"))
        #expect(try await gateway.waitForLog("configuration reload rejected"))
        #expect(Self.lines(gateway.logText, containing: "log level changed").count == 3)
    }

    @Test("an invalid entry in a reloaded file: SIGHUP logs it with entry and field; ReloadConfig answers INVALID_ARGUMENT with exactly UpdateCertificates' message")
    func perEntryErrors() async throws {
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        let config = ControlInteropTests.config()
        let gateway = try await GatewayProcess(config: config, folder: folder)
        defer { gateway.stop() }
        let leaf = Self.authority.leaf(dnsNames: ["bad.test"])
        let otherKey = TestKey.make()
        try folder.write(leaf.pem, to: "certs/bad.pem")
        try folder.write(otherKey.pkcs8PEM, to: "certs/bad.key")
        let broken = config.replacingOccurrences(of: "certificates:\n", with: "certificates:\n  bad: { tls_cert: certs/bad.pem, tls_key: certs/bad.key }\n")
        #expect(broken != config)
        // Worked out from the validator's rule: the key's public half is not the certificate's.
        let expected = "bad: tls_key: the private key does not match the certificate (CN=bad.test)"

        try Self.reload(gateway, folder: folder, config: broken)
        #expect(try await gateway.waitForLog("configuration reload rejected"))
        #expect(try await gateway.waitForLog(expected))  // logged after the line above
        #expect(Self.lines(gateway.logText, containing: "entry=bad field=tls_key source=signal", expected).count == 1)

        func message(_ body: () async throws -> Void) async -> (RPCError.Code, String)? {
            do { try await body() } catch let error as RPCError { return (error.code, error.message) } catch { return nil }
            return nil
        }
        try await ControlInteropTests.withControl(socket: ControlInteropTests.socket(folder)) { control in
            let reload = await message { _ = try await control.reloadConfig(.init()) }
            let update = await message {
                _ = try await control.updateCertificates(.with {
                    $0.upsert = [.with { $0.name = "bad"; $0.tlsCert = leaf.pem; $0.tlsKey = otherKey.pkcs8PEM }]
                })
            }
            #expect(reload?.0 == .invalidArgument)
            #expect(reload?.1 == expected)
            #expect(update?.0 == .invalidArgument)
            #expect(update?.1 == reload?.1)
        }
        // Logged before each reply was sent; read from the log pipe by now or shortly.
        #expect(try await gateway.waitForLog(expected, occurrences: 3))
        #expect(Self.lines(gateway.logText, containing: "entry=bad field=tls_key source=control", expected).count == 2)
    }
}
