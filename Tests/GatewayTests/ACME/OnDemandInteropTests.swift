import CertificateTestSupport
import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import Testing
import X509

@Suite("On-demand ACME through the real binary against a real Pebble", .serialized, .timeLimit(.minutes(4)))
struct OnDemandInteropTests {
    /// A gateway with a default entry, a static entry for one customer name, and an on-demand
    /// entry for `*.customers.test` behind an `ask` endpoint; Pebble validates tls-alpn-01 at
    /// the gateway's own TLS listener.
    struct Setup {
        let pebble: PebbleServer
        let ask: AskEndpoint
        let folder: FixtureFolder
        let httpsPort: Int
        let pebbleRoot: NIOSSLCertificate
        let testRoot: NIOSSLCertificate
        let defaultLeaf: [UInt8]
        let staticLeaf: [UInt8]

        func config(onDemand: String) -> String {
            """
            log_level: info
            shutdown_timeout: 1s
            listeners:
              - name: https
                listen: 127.0.0.1:\(httpsPort)
            routes:
              - server_names: ["*"]
                respond: { body: "served {sni}\\n" }
            acme:
              pebble: { directory: "\(pebble.directoryURL)", ca_roots: pebble-https-root.pem, challenges: [tls-alpn-01] }
            on_demand: \(onDemand)
            certificates:
              fallback: { tls_cert: certs/default.pem, tls_key: certs/default.key, is_default: true }
              fixed: { tls_cert: certs/fixed.pem, tls_key: certs/fixed.key }
              customers: { acme: pebble, on_demand: true, domains: "*.customers.test", ask: "\(ask.url)" }
            control:
              socket: run/control.sock
            metrics:
              listen: 127.0.0.1:0
            """
        }

        var socket: String { folder.url.appendingPathComponent("run/control.sock").path }

        func stop() async {
            pebble.stop()
            await ask.close()
            folder.remove()
        }
    }

    /// - Parameter validity: Pebble's certificate lifetime in seconds (its default: 5 years).
    static func setUp(validity: Int? = nil) async throws -> Setup {
        let httpsPort = unusedLocalPort()
        let pebble = try await PebbleServer(
            extraConfig: validity.map { "\"certificateValidityPeriod\": \($0)," } ?? "", validationPorts: (http: unusedLocalPort(), tls: httpsPort))
        // Allowed: every name but those starting with "denied".
        let ask = try await AskEndpoint { !$0.hasPrefix("denied") }
        let folder = try FixtureFolder()
        try folder.write(pebble.httpsRootPEM, to: "pebble-https-root.pem")
        let authority = TestCertificate.authority(commonName: "on-demand test CA")
        let fallback = authority.leaf(dnsNames: ["fallback.test"])
        let fixed = authority.leaf(dnsNames: ["fixed.customers.test"])
        try folder.write(fallback.pem, to: "certs/default.pem")
        try folder.write(fallback.key.pkcs8PEM, to: "certs/default.key")
        try folder.write(fixed.pem + authority.pem, to: "certs/fixed.pem")
        try folder.write(fixed.key.pkcs8PEM, to: "certs/fixed.key")
        return Setup(
            pebble: pebble, ask: ask, folder: folder, httpsPort: httpsPort,
            pebbleRoot: try NIOSSLCertificate(bytes: Array(try await pebble.issuingRoot().utf8), format: .pem),
            testRoot: try NIOSSLCertificate(bytes: authority.parsed.der, format: .der),
            defaultLeaf: fallback.parsed.der, staticLeaf: fixed.parsed.der)
    }

    /// The leaf served for `name`, verified against Pebble's root with the host name checked.
    static func verified(_ name: String, _ setup: Setup) async throws -> [UInt8]? {
        let client = TestTLSClient(group: MultiThreadedEventLoopGroup.singleton, trustRoots: [setup.pebbleRoot])
        let connection = try await client.connect(port: setup.httpsPort, serverName: name)
        await connection.close()
        return try connection.servedCertificate?.toDERBytes()
    }

    /// The leaf served for `name` by any CA of the test (the host name not checked).
    static func served(_ name: String, _ setup: Setup) async throws -> [UInt8]? {
        var client = TestTLSClient(group: MultiThreadedEventLoopGroup.singleton, trustRoots: [setup.pebbleRoot, setup.testRoot])
        client.verifyHostname = false
        let connection = try await client.connect(port: setup.httpsPort, serverName: name)
        await connection.close()
        return try connection.servedCertificate?.toDERBytes()
    }

    /// How many orders Pebble has finalized (one "Issued certificate" log line each).
    static func issuedByPebble(_ setup: Setup) -> Int {
        setup.pebble.logText.components(separatedBy: "Issued certificate serial").count - 1
    }

    static func orders(in log: String, for name: String? = nil) -> Int {
        let lines = log.split(separator: "\n").filter { $0.contains("ordering a certificate on demand") }
        guard let name else { return lines.count }
        return lines.filter { $0.contains("name=\(name) ") || $0.hasSuffix("name=\(name)") }.count
    }

    @Test("20 allowed names get 20 certificates that verify, each ordered once even when 10 clients ask for the same new name at once; a name a static entry claims is never ordered; ctl list --on-demand and ctl status show them")
    func twentyNamesEachOrderedOnce() async throws {
        let setup = try await Self.setUp()
        defer { Task { await setup.stop() } }
        let gateway = try await GatewayProcess(config: setup.config(onDemand: "{ handshake_wait: 30s, per_client_per_hour: 100, burst: 40 }"), folder: setup.folder)
        defer { _ = gateway.stop() }

        // Ten clients at once for one new name: one order, the same certificate for all ten.
        let leaves = try await withThrowingTaskGroup(of: [UInt8]?.self) { group in
            for _ in 0..<10 { group.addTask { try await Self.verified("shop-0.customers.test", setup) } }
            return try await group.reduce(into: [[UInt8]?]()) { $0.append($1) }
        }
        #expect(leaves.count == 10)
        #expect(Set(leaves.compactMap { $0 }).count == 1, "\(gateway.logText)")
        #expect(leaves.allSatisfy { $0 != nil })
        #expect(Self.orders(in: gateway.logText, for: "shop-0.customers.test") == 1, "\(gateway.logText)")

        // Nineteen more, four at a time.
        var obtained: [String: [UInt8]] = ["shop-0.customers.test": leaves[0]!]
        for batch in stride(from: 1, to: 20, by: 4) {
            let names = (batch..<min(batch + 4, 20)).map { "shop-\($0).customers.test" }
            let results = try await withThrowingTaskGroup(of: (String, [UInt8]?).self) { group in
                for name in names { group.addTask { (name, try await Self.verified(name, setup)) } }
                return try await group.reduce(into: [(String, [UInt8]?)]()) { $0.append($1) }
            }
            for (name, leaf) in results {
                #expect(leaf != nil, "\(name)")
                obtained[name] = leaf
            }
        }
        #expect(obtained.count == 20)
        #expect(Set(obtained.values).count == 20)
        #expect(Self.orders(in: gateway.logText) == 20, "\(gateway.logText)")
        #expect(Self.issuedByPebble(setup) == 20)
        // Asked once per name, never for a name served from memory.
        #expect(setup.ask.askedNames.count == 20)

        // Served again from memory: the same certificates, no order, no question.
        for name in ["shop-0.customers.test", "shop-7.customers.test", "shop-19.customers.test"] {
            #expect(try await Self.verified(name, setup) == obtained[name])
        }
        // The static entry's name is its own, not ordered; the default for a name outside the patterns.
        #expect(try await Self.served("fixed.customers.test", setup) == setup.staticLeaf)
        #expect(try await Self.served("elsewhere.example.test", setup) == setup.defaultLeaf)
        #expect(Self.orders(in: gateway.logText) == 20)
        #expect(setup.ask.askedNames.count == 20)

        let list = try await CertgateProcess.run(["ctl", "--socket", setup.socket, "--json", "list", "--on-demand"])
        #expect(list.status == 0, "\(list.stderr)")
        let json = try JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [String: Any]
        let rows = json?["on_demand"] as? [[String: Any]] ?? []
        #expect(rows.compactMap { $0["name"] as? String } == obtained.keys.sorted())
        #expect(rows.allSatisfy { $0["entry"] as? String == "customers" && $0["acme"] as? String == "pebble" && $0["cached"] as? Bool == true })
        #expect(json?["certificates"] == nil)
        #expect(!list.stdout.contains("PRIVATE KEY"))

        let status = try await CertgateProcess.run(["ctl", "--socket", setup.socket, "status"])
        #expect(status.status == 0, "\(status.stderr)")
        #expect(status.stdout.contains("on demand    1 entries; 20 certificates stored, 20 in memory; 0 names being obtained; 0 names refused for now"), "\(status.stdout)")
        #expect(status.stdout.contains("limits       handshake_wait 30s, max_concurrent 4, orders_per_minute 10 (burst 40), per_client_per_hour 100, max_certificates 10000, idle_timeout 30d, ask_timeout 3s, ask_cache 10m, failure_backoff 5m"), "\(status.stdout)")

        let metrics = try await scrapeMetrics(port: try #require(gateway.metricsPort))
        #expect(metrics.value("certgate_acme_orders_total", ["acme": "pebble", "result": "valid"]) == 20)
        // 10 + 19 first handshakes + 3 from memory.
        #expect(metrics.value("certgate_handshakes_total", ["listener": "https", "match": "on_demand"]) == 32)
    }

    @Test("beside an issuer for '*': names the set claims itself (an issuer's own pattern, an acme entry with its certificate) are never ordered on demand; an allowed name is (the on-demand pattern before the issuer), a denied name and a name outside the patterns get the issuer's leaf (not the default); ctl list and ctl show describe the on-demand entry; the cached and stored gauges count its certificate; ctl watch shows no on-demand event")
    func catchAllIssuerBesideOnDemand() async throws {
        let setup = try await Self.setUp()
        defer { Task { await setup.stop() } }
        let ca = TestCertificate.authority(commonName: "catch-all CA")
        try setup.folder.write(ca.pem, to: "certs/catchall.pem")
        try setup.folder.write(ca.key.pkcs8PEM, to: "certs/catchall.key")
        // Entries of the set whose own names fall under the on-demand pattern: an issuer for
        // one name and an acme entry (ordered at the start).
        let own = TestCertificate.authority(commonName: "own-pattern CA")
        try setup.folder.write(own.pem, to: "certs/own.pem")
        try setup.folder.write(own.key.pkcs8PEM, to: "certs/own.key")
        let base = setup.config(onDemand: "{ handshake_wait: 30s }")
        let config = base.replacingOccurrences(
            of: "  customers:", with: """
                  catchall: { tls_cert: certs/catchall.pem, tls_key: certs/catchall.key, is_ca: true, domains: "*" }
                  internal: { tls_cert: certs/own.pem, tls_key: certs/own.key, is_ca: true, domains: internal.customers.test }
                  shop: { acme: pebble, domains: shop.customers.test }
                  customers:
                """)
        #expect(config != base)
        let gateway = try await GatewayProcess(config: config, folder: setup.folder)
        defer { _ = gateway.stop() }
        #expect(try await gateway.waitForLog("source=acme [Gateway] certificate set committed", timeout: .seconds(60)), "\(gateway.logText)")
        #expect(Self.issuedByPebble(setup) == 1)
        // 1 before 3: the set's own names, though the on-demand pattern takes them too.
        #expect(try await Self.verified("shop.customers.test", setup) != nil)
        let ownClient = TestTLSClient(group: MultiThreadedEventLoopGroup.singleton, trustRoots: [try NIOSSLCertificate(bytes: own.parsed.der, format: .der)])
        let ownIssued = try await ownClient.connect(port: setup.httpsPort, serverName: "internal.customers.test")
        await ownIssued.close()
        #expect(try ownIssued.servedCertificate.map { try Certificate(derEncoded: try $0.toDERBytes()).dnsNames } == ["internal.customers.test"])
        #expect(setup.ask.askedNames == [])
        #expect(Self.orders(in: gateway.logText) == 0)
        #expect(Self.issuedByPebble(setup) == 1)
        // ctl renew of such a name points to the entry that serves it, not to the on-demand one.
        for (name, entry) in [("shop.customers.test", "shop"), ("internal.customers.test", "internal")] {
            let renew = try await CertgateProcess.run(["ctl", "--socket", setup.socket, "renew", name])
            #expect(renew.status == 1)
            #expect(renew.stderr == "notFound: no acme entry named '\(name)'; the name is served by entry '\(entry)'\n")
        }

        let watcher = try RunningCommand(["ctl", "--socket", setup.socket, "watch"])
        defer { watcher.stop() }
        let subscribed = try await ControlCommandInteropTests.subscribe([watcher], socket: setup.socket)

        // 3 before 4: the issuer for '*' would sign this name; the on-demand entry takes it.
        #expect(try await Self.verified("allowed.customers.test", setup) != nil)
        #expect(Self.issuedByPebble(setup) == 2)
        // Refused by ask, and outside the patterns: the issuer's leaf, not the default.
        let client = TestTLSClient(group: MultiThreadedEventLoopGroup.singleton, trustRoots: [try NIOSSLCertificate(bytes: ca.parsed.der, format: .der)])
        for name in ["denied.customers.test", "elsewhere.example.test"] {
            let connection = try await client.connect(port: setup.httpsPort, serverName: name)
            await connection.close()
            let served = try #require(try connection.servedCertificate?.toDERBytes(), "\(name)")
            let leaf = try Certificate(derEncoded: served)
            #expect(leaf.issuer.commonName == "catch-all CA", "\(name)")
            #expect(leaf.dnsNames == [name])
        }
        #expect(Self.issuedByPebble(setup) == 2)
        #expect(setup.ask.askedNames == ["allowed.customers.test", "denied.customers.test"])

        let list = try await CertgateProcess.run(["ctl", "--socket", setup.socket, "list"])
        #expect(list.status == 0, "\(list.stderr)")
        let rows = list.stdout.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init) }
        #expect(rows.contains(["customers", "on-demand", "*.customers.test", "-", "-", "-", "-"]), "\(list.stdout)")
        #expect(list.stdout.contains("\ncustomers: on demand from acme pebble, ask \(setup.ask.url); its certificates: ctl list --on-demand\n"), "\(list.stdout)")
        let show = try await CertgateProcess.run(["ctl", "--socket", setup.socket, "show", "customers"])
        #expect(show.stdout == """
            name         customers
            kind         on-demand acme entry
            patterns     *.customers.test
            acme         pebble
            ask          \(setup.ask.url)
            certificates ctl list --on-demand

            """)

        let metrics = try await scrapeMetrics(port: try #require(gateway.metricsPort))
        #expect(metrics.value("certgate_on_demand_certificates_cached") == 1)
        #expect(metrics.value("certgate_on_demand_certificates_stored") == 1)

        // One more update: its event ends what the watcher printed since it subscribed; the
        // on-demand certificate made none.
        try await ControlInteropTests.withControl(socket: setup.socket) { control in
            _ = try await control.updateCertificates(.with { $0.delete = ["probe"] })
        }
        #expect(try await eventually { watcher.lines.contains { $0.hasSuffix("generation \(subscribed + 1) (control): +0 ~0 -1") } }, "\(watcher.lines)")
        let since = watcher.lines.drop { !$0.contains("generation \(subscribed) ") }
        #expect(since.count == 2, "\(watcher.lines)")
        #expect(!watcher.lines.contains { $0.contains("customers") })
    }

    @Test("a name the ask endpoint denies, a name outside the patterns and a name from a client over its hourly limit are not ordered (Pebble issues nothing more); each gets the default; each refusal is counted by reason and logged at its level (the ask's no a warning, the client's limit at info, backing off at debug); a denied name is not asked again while it backs off")
    func refusalsOrderNothing() async throws {
        let setup = try await Self.setUp()
        defer { Task { await setup.stop() } }
        // At debug: every refusal's log line is there to be read at its level.
        let config = setup.config(onDemand: "{ handshake_wait: 30s, per_client_per_hour: 2 }").replacingOccurrences(of: "log_level: info", with: "log_level: debug")
        let gateway = try await GatewayProcess(config: config, folder: setup.folder)
        defer { _ = gateway.stop() }

        #expect(try await Self.served("denied-1.customers.test", setup) == setup.defaultLeaf)
        #expect(setup.ask.askedNames == ["denied-1.customers.test"])
        #expect(try await Self.served("other.example.test", setup) == setup.defaultLeaf)
        #expect(setup.ask.askedNames == ["denied-1.customers.test"])
        #expect(Self.issuedByPebble(setup) == 0)

        // This client's two orders for the hour, then a third allowed name is refused.
        #expect(try await Self.verified("a.customers.test", setup) != nil)
        #expect(try await Self.verified("b.customers.test", setup) != nil)
        #expect(Self.issuedByPebble(setup) == 2)
        #expect(try await Self.served("c.customers.test", setup) == setup.defaultLeaf)
        #expect(Self.issuedByPebble(setup) == 2)
        #expect(Self.orders(in: gateway.logText) == 2)
        // Refused before the question: the ask endpoint never heard of c.
        #expect(setup.ask.askedNames == ["denied-1.customers.test", "a.customers.test", "b.customers.test"])

        // The denied name again: refused from the negative cache, not asked again.
        #expect(try await Self.served("denied-1.customers.test", setup) == setup.defaultLeaf)
        #expect(setup.ask.askedNames.filter { $0 == "denied-1.customers.test" }.count == 1)

        #expect(try await gateway.waitForLog("refusal=client_rate_limited"), "\(gateway.logText)")
        let metrics = try await scrapeMetrics(port: try #require(gateway.metricsPort))
        #expect(metrics.value("certgate_issue_refused_total", ["reason": "ask_denied"]) == 1)
        #expect(metrics.value("certgate_issue_refused_total", ["reason": "client_rate_limited"]) == 1)
        #expect(metrics.value("certgate_issue_refused_total", ["reason": "failed_recently"]) == 1)
        #expect(metrics.value("certgate_handshakes_total", ["listener": "https", "match": "default"]) == 4)
        #expect(metrics.value("certgate_handshakes_total", ["listener": "https", "match": "on_demand"]) == 2)
        let status = try await CertgateProcess.run(["ctl", "--socket", setup.socket, "status"])
        #expect(status.stdout.contains("2 certificates stored, 2 in memory; 0 names being obtained; 1 names refused for now"), "\(status.stdout)")

        // Each refusal logged once, with its name, at its level: the ask's no a warning, the
        // client's limit at info, a name still backing off at debug.
        func refusals(_ refusal: String) -> [String] {
            gateway.logText.split(separator: "\n").filter { $0.contains(" refusal=\(refusal) [Gateway] a certificate on demand was refused") }.map { line in
                let words = line.split(separator: " ")
                let name = words.first { $0.hasPrefix("name=") } ?? "?"
                return "\(words[1]) \(name)"
            }
        }
        #expect(refusals("ask_denied") == ["warning name=denied-1.customers.test"], "\(gateway.logText)")
        #expect(refusals("client_rate_limited") == ["info name=c.customers.test"], "\(gateway.logText)")
        #expect(refusals("failed_recently") == ["debug name=denied-1.customers.test"], "\(gateway.logText)")
    }

    @Test("500 random subdomains from one client: new orders stop at the client's hourly limit, every handshake is answered (the default past the limit), a static name keeps being served meanwhile, and nothing is left waiting")
    func randomSubdomainsAreBounded() async throws {
        let setup = try await Self.setUp()
        defer { Task { await setup.stop() } }
        let gateway = try await GatewayProcess(config: setup.config(onDemand: "{ handshake_wait: 30s, per_client_per_hour: 5, orders_per_minute: 600, burst: 100 }"), folder: setup.folder)
        defer { _ = gateway.stop() }

        let storm = Task {
            try await withThrowingTaskGroup(of: Bool.self) { group in
                var answered = 0
                for index in 0..<500 {
                    if index >= 16 { if try await group.next() == true { answered += 1 } }
                    let name = "r\(UInt32.random(in: 0...UInt32.max))-\(index).customers.test"
                    group.addTask { try await Self.served(name, setup) != nil }
                }
                for try await ok in group where ok { answered += 1 }
                return answered
            }
        }
        // A name of a static entry, served throughout.
        var staticServed = 0
        while !storm.isCancelled {
            #expect(try await Self.served("fixed.customers.test", setup) == setup.staticLeaf)
            staticServed += 1
            if staticServed >= 20 { break }
        }
        let answered = try await storm.value
        #expect(answered == 500)
        #expect(staticServed == 20)
        #expect(Self.issuedByPebble(setup) == 5, "\(gateway.logText.suffix(3_000))")
        #expect(Self.orders(in: gateway.logText) == 5)
        let metrics = try await scrapeMetrics(port: try #require(gateway.metricsPort))
        #expect(metrics.value("certgate_issue_refused_total", ["reason": "client_rate_limited"]) == 495)
        // The loops' lateness is measured (its figures under this load: bench/on_demand.sh).
        #expect((metrics.value("certgate_event_loop_lag_seconds_count") ?? 0) > 0)
        let status = try await CertgateProcess.run(["ctl", "--socket", setup.socket, "status"])
        #expect(status.stdout.contains("5 certificates stored, 5 in memory; 0 names being obtained; 0 names refused for now"), "\(status.stdout)")
    }

    @Test("a restart serves the certificates obtained on demand from the state, with no new order and no question to the ask endpoint; so does a restart with --reset-state")
    func restartServesStoredWithoutOrders() async throws {
        let setup = try await Self.setUp()
        defer { Task { await setup.stop() } }
        let config = setup.config(onDemand: "{ handshake_wait: 30s }")
        var gateway: GatewayProcess? = try await GatewayProcess(config: config, folder: setup.folder)
        let first = try await Self.verified("kept.customers.test", setup)
        #expect(first != nil)
        #expect(Self.issuedByPebble(setup) == 1)
        _ = gateway?.stop()
        gateway = nil

        let restarted = try await GatewayProcess(config: config, folder: setup.folder)
        #expect(try await Self.verified("kept.customers.test", setup) == first)
        #expect(Self.issuedByPebble(setup) == 1)
        #expect(Self.orders(in: restarted.logText) == 0, "\(restarted.logText)")
        #expect(setup.ask.askedNames == ["kept.customers.test"])
        let list = try await CertgateProcess.run(["ctl", "--socket", setup.socket, "list", "--on-demand"])
        #expect(list.stdout.contains("kept.customers.test"), "\(list.stdout)")
        #expect(list.stdout.contains("1 certificates obtained on demand"), "\(list.stdout)")

        // --reset-state discards the stored set, not what was obtained on demand.
        #expect(restarted.stop() == 0)
        let reset = try await GatewayProcess(config: config, folder: setup.folder, arguments: ["--reset-state"])
        defer { _ = reset.stop() }
        #expect(reset.logText.contains("state reset: the stored set and issued leaves are discarded"), "\(reset.logText)")
        #expect(try await Self.verified("kept.customers.test", setup) == first)
        #expect(Self.issuedByPebble(setup) == 1)
        #expect(Self.orders(in: reset.logText) == 0, "\(reset.logText)")
        #expect(setup.ask.askedNames == ["kept.customers.test"])
    }

    @Test("a certificate served after its renewal time is renewed in the background while it keeps serving; the next handshake gets the new one, which verifies")
    func dueCertificateRenewedWhileServed() async throws {
        // Pebble's certificates live 30 s here: renewal is due when a third (10 s) remains.
        let setup = try await Self.setUp(validity: 30)
        defer { Task { await setup.stop() } }
        let gateway = try await GatewayProcess(config: setup.config(onDemand: "{ handshake_wait: 30s }"), folder: setup.folder)
        defer { _ = gateway.stop() }
        let first = try #require(try await Self.verified("renew.customers.test", setup))
        let notAfter = try servedNotAfter(Certificate(derEncoded: first))
        let renewAt = notAfter.addingTimeInterval(-10)
        #expect(renewAt.timeIntervalSinceNow > 5, "Pebble's certificate: not after \(notAfter)")
        try await Task.sleep(for: .seconds(max(0, renewAt.timeIntervalSinceNow) + 1))
        // Due: this handshake still gets the current certificate and starts the renewal.
        #expect(try await Self.verified("renew.customers.test", setup) == first)
        #expect(try await gateway.waitForLog("certificate renewed on demand", timeout: .seconds(30)), "\(gateway.logText)")
        let second = try await Self.verified("renew.customers.test", setup)
        #expect(second != nil && second != first)
        #expect(Self.issuedByPebble(setup) == 2)
        #expect(Self.orders(in: gateway.logText, for: "renew.customers.test") == 2)
        #expect(gateway.logText.contains("renewal=true"))
    }

    @Test("past handshake_wait the handshake gets the default and the order goes on; the name's next handshake gets its certificate; with the bucket empty a new name is refused as rate_limited; ctl renew refuses the on-demand entry and each of its names (FAILED_PRECONDITION) and orders nothing; ctl list --on-demand shows the name's entry, CA, not after, last handshake, renewal time and that it is in memory, and (none) once the entry is deleted")
    func handshakeWaitAndRateLimit() async throws {
        let setup = try await Self.setUp()
        defer { Task { await setup.stop() } }
        let gateway = try await GatewayProcess(
            config: setup.config(onDemand: "{ handshake_wait: 100ms, orders_per_minute: 0, burst: 1 }"), folder: setup.folder)
        defer { _ = gateway.stop() }
        // The ask endpoint answers `slow…` after a second: longer than the handshake waits.
        #expect(try await Self.served("slow.customers.test", setup) == setup.defaultLeaf)
        #expect(try await gateway.waitForLog("certificate obtained on demand", timeout: .seconds(30)), "\(gateway.logText)")
        let started = Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down))
        let slow = try Certificate(derEncoded: try #require(try await Self.verified("slow.customers.test", setup)))
        // The burst of 1 is spent and none comes back (0 per minute).
        #expect(try await Self.served("next.customers.test", setup) == setup.defaultLeaf)
        #expect(Self.issuedByPebble(setup) == 1)
        let metrics = try await scrapeMetrics(port: try #require(gateway.metricsPort))
        #expect(metrics.value("certgate_issue_refused_total", ["reason": "rate_limited"]) == 1)
        #expect(gateway.logText.contains("refusal=rate_limited"))
        // ctl renew on the on-demand entry says what it is.
        let renew = try await CertgateProcess.run(["ctl", "--socket", setup.socket, "renew", "customers"])
        #expect(renew.status == 1)
        #expect(renew.stderr == "failedPrecondition: 'customers' is an on-demand entry: its certificates, one per name, are renewed as they are served (ctl list --on-demand)\n")
        // ...and on one of its names, obtained or not yet: not renewed by hand either.
        for name in ["slow.customers.test", "never.customers.test"] {
            let single = try await CertgateProcess.run(["ctl", "--socket", setup.socket, "renew", name])
            #expect(single.status == 1)
            #expect(single.stderr == "failedPrecondition: '\(name)' is a name of the on-demand entry 'customers': its certificate is renewed as it is served (ctl list --on-demand)\n")
        }
        #expect(Self.issuedByPebble(setup) == 1)

        // ctl list --on-demand: its row, time columns included (Pebble has no ARI: a third of
        // the certificate's life before its end).
        func onDemandRow() async throws -> [String] {
            let list = try await CertgateProcess.run(["ctl", "--socket", setup.socket, "list", "--on-demand"])
            #expect(list.status == 0, "\(list.stderr)")
            return list.stdout.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init) }
                .first { $0.first == "slow.customers.test" } ?? []
        }
        let row = try await onDemandRow()
        #expect(row.count == 8, "\(row)")
        if row.count == 8 {
            #expect(row[1] == "customers" && row[2] == "pebble" && row[7] == "yes", "\(row)")
            #expect(ControlCommandInteropTests.date(Substring(row[3])) == slow.notValidAfter, "\(row)")
            let lastHandshake = try #require(ControlCommandInteropTests.date(Substring(row[5])), "\(row)")
            #expect(lastHandshake >= started && lastHandshake <= Date(), "\(row)")
            let renewAt = try #require(ControlCommandInteropTests.date(Substring(row[6])), "\(row)")
            let third = slow.notValidAfter.timeIntervalSince(slow.notValidBefore) / 3
            #expect(abs(renewAt.timeIntervalSince(slow.notValidAfter.addingTimeInterval(-third))) <= 1, "\(row)")
        }
        // Its entry deleted: no entry takes the name; listed as (none).
        #expect(try await runCtl(socket: setup.socket, ["delete", "customers"]).status == 0)
        let orphan = try await onDemandRow()
        #expect(orphan.count > 1 && orphan[1] == "(none)", "\(orphan)")
        let after = try await CertgateProcess.run(["ctl", "--socket", setup.socket, "list", "--on-demand"])
        #expect(after.stdout.contains("\n(none): no on-demand entry takes the name any more; not served, removed once expired\n"), "\(after.stdout)")
    }
}
