import ACME
import CertificateTestSupport
import Crypto
import ControlProtocol
import Foundation
import GRDB
import NIOCore
import NIOPosix
import NIOSSL
import Testing
import X509
#if canImport(Glibc)
import Glibc
#endif

@Suite("ACME through the real binary against a real Pebble", .serialized, .timeLimit(.minutes(3)))
struct ACMEInteropTests {
    /// A gateway whose TLS and HTTP listeners are where Pebble validates, with three ACME
    /// entries: tls-alpn-01, http-01, and a wildcard through a dns-01 hook that writes the
    /// record into pebble-challtestsrv.
    struct Setup {
        let pebble: PebbleServer
        let folder: FixtureFolder
        let httpsPort: Int
        let httpPort: Int
        let config: String
        let root: NIOSSLCertificate
    }

    static func setUp() async throws -> Setup {
        let (httpsPort, httpPort) = (unusedLocalPort(), unusedLocalPort())
        let pebble = try await PebbleServer(validationPorts: (http: httpPort, tls: httpsPort))
        let folder = try FixtureFolder()
        try folder.write(pebble.httpsRootPEM, to: "pebble-https-root.pem")
        let hook = """
            #!/bin/sh
            # certgate's dns_hook: present|cleanup FQDN VALUE, written into pebble-challtestsrv.
            # Output on both streams, which certgate must not log; a file says it ran.
            echo "dns-hook-stdout $1 $2"; echo "dns-hook-stderr $1 $2" >&2; echo "$1" >> "$0.ran"
            case "$1" in
              present) exec /usr/bin/curl -sS --fail -X POST -d "{\\"host\\":\\"$2\\",\\"value\\":\\"$3\\"}" http://127.0.0.1:\(pebble.challengePorts.management)/set-txt ;;
              cleanup) exec /usr/bin/curl -sS --fail -X POST -d "{\\"host\\":\\"$2\\"}" http://127.0.0.1:\(pebble.challengePorts.management)/clear-txt ;;
            esac
            exit 2
            """
        try folder.write(hook, to: "dns-hook.sh")
        chmod(folder.url.appendingPathComponent("dns-hook.sh").path, 0o755)
        let directory = pebble.directoryURL
        let config = """
            log_level: info
            shutdown_timeout: 2s
            listeners:
              - name: https
                listen: 127.0.0.1:\(httpsPort)
              - name: http
                listen: 127.0.0.1:\(httpPort)
                protocol: http
            routes:
              - server_names: ["*"]
                respond: { body: "served {sni}\\n" }
            acme:
              pebble-alpn: { directory: "\(directory)", email: ops@example.test, ca_roots: pebble-https-root.pem, challenges: [tls-alpn-01] }
              pebble-http: { directory: "\(directory)", ca_roots: pebble-https-root.pem, challenges: [http-01] }
              pebble-dns:
                directory: "\(directory)"
                ca_roots: pebble-https-root.pem
                challenges: [dns-01]
                dns_hook: ["\(folder.url.appendingPathComponent("dns-hook.sh").path)"]
            certificates:
              alpn: { acme: pebble-alpn, domains: "alpn.example.test" }
              plain: { acme: pebble-http, domains: "plain.example.test,www.plain.example.test" }
              wild: { acme: pebble-dns, domains: "*.wild.example.test" }
            control:
              socket: run/control.sock
            metrics:
              listen: 127.0.0.1:0
            """
        let root = try NIOSSLCertificate(bytes: Array(try await pebble.issuingRoot().utf8), format: .pem)
        return Setup(pebble: pebble, folder: folder, httpsPort: httpsPort, httpPort: httpPort, config: config, root: root)
    }

    /// The gateway of `setup` once its three entries' certificates are committed (so served),
    /// and its control socket.
    static func gatewayWithCertificates(_ setup: Setup) async throws -> (gateway: GatewayProcess, socket: String) {
        let gateway = try await GatewayProcess(config: setup.config, folder: setup.folder)
        #expect(try await gateway.waitForLog("source=acme [Gateway] certificate set committed", occurrences: 3, timeout: .seconds(60)), "\(gateway.logText)")
        return (gateway, setup.folder.url.appendingPathComponent("run/control.sock").path)
    }

    /// The leaf served for `name`, verified against Pebble's root (chain and name).
    static func served(_ name: String, setup: Setup) async throws -> [UInt8]? {
        let client = TestTLSClient(group: MultiThreadedEventLoopGroup.singleton, trustRoots: [setup.root])
        let connection = try await client.connect(port: setup.httpsPort, serverName: name)
        defer { Task { await connection.close() } }
        return try connection.servedCertificate?.toDERBytes()
    }

    @Test("three entries get certificates from Pebble through the gateway's own listeners (tls-alpn-01, http-01, dns-01 for a wildcard); each verifies with Pebble's root; the three CAs on one directory share one P-256 account in the state; no obtained key in the log or ctl's outputs; a restart, also with --reset-state, serves them without ordering again")
    func obtainAndRestart() async throws {
        let setup = try await Self.setUp()
        defer { setup.pebble.stop(); setup.folder.remove() }
        var gateway: GatewayProcess? = try await GatewayProcess(config: setup.config, folder: setup.folder)
        #expect(try await gateway!.waitForLog("certificate obtained", occurrences: 3, timeout: .seconds(60)), "\(gateway!.logText)")
        // Committed through the update transaction, then served.
        #expect(try await gateway!.waitForLog("source=acme [Gateway] certificate set committed", occurrences: 3))
        var leaves: [String: [UInt8]] = [:]
        for name in ["alpn.example.test", "plain.example.test", "www.plain.example.test", "a.wild.example.test"] {
            let leaf = try await Self.served(name, setup: setup)
            #expect(leaf != nil, "\(name)")
            leaves[name] = leaf
        }
        #expect(leaves["plain.example.test"] == leaves["www.plain.example.test"])
        // The hook ran (present, then cleanup once the order is valid); nothing it printed
        // is in the log.
        let ran = setup.folder.url.appendingPathComponent("dns-hook.sh.ran")
        #expect(try await eventually { (try? String(contentsOf: ran, encoding: .utf8)) == "present\ncleanup\n" })
        #expect(!gateway!.logText.contains("dns-hook-stdout") && !gateway!.logText.contains("dns-hook-stderr"))
        // Each entry's renewal time: the metric says what ListCertificates says, inside the
        // certificate's life.
        let metrics = try await scrapeMetrics(port: try #require(gateway!.metricsPort))
        let listed = try await ControlInteropTests.withControl(socket: setup.folder.url.appendingPathComponent("run/control.sock").path) { control in
            try await control.listCertificates(Certgate_Control_V1_ListCertificatesRequest())
        }
        for entry in ["alpn", "plain", "wild"] {
            let row = try #require(listed.certificates.first { $0.name == entry }, "\(entry)")
            #expect(row.hasRenewAt, "\(entry)")
            func seconds(_ whole: Int64, _ nanos: Int32) -> Double { Double(whole) + Double(nanos) / 1e9 }
            let renewAt = seconds(row.renewAt.seconds, row.renewAt.nanos)
            let metric = try #require(metrics.value("certgate_certificate_renew_at_timestamp_seconds", ["name": entry]), "\(entry)")
            #expect(abs(metric - renewAt) < 1, "\(entry): \(metric) vs \(renewAt)")
            #expect(renewAt > seconds(row.notBefore.seconds, row.notBefore.nanos) && renewAt < seconds(row.notAfter.seconds, row.notAfter.nanos), "\(entry)")
        }
        // The same with the clients operators use: openssl verifying chain and name against
        // Pebble's root, and curl.
        try setup.folder.write(try await setup.pebble.issuingRoot(), to: "pebble-issuing-root.pem")
        let rootFile = setup.folder.url.appendingPathComponent("pebble-issuing-root.pem").path
        for name in ["alpn.example.test", "www.plain.example.test", "a.wild.example.test"] {
            let (status, output) = try await runTool("/usr/bin/openssl", [
                "s_client", "-connect", "127.0.0.1:\(setup.httpsPort)", "-servername", name, "-CAfile", rootFile,
                "-verify_return_error", "-verify_hostname", name,
            ], input: Data())
            #expect(status == 0, "\(name): \(output)")
            #expect(output.contains("Verify return code: 0 (ok)"), "\(name): \(output)")
            let (curlStatus, body) = try await runTool("/usr/bin/curl", [
                "-sS", "--fail", "--cacert", rootFile, "--resolve", "\(name):\(setup.httpsPort):127.0.0.1", "https://\(name):\(setup.httpsPort)/",
            ])
            #expect(curlStatus == 0, "\(name): \(body)")
            #expect(body == "served \(name)\n", "\(name): \(body)")
        }
        #expect(Set(leaves.values).count == 3)
        #expect(gateway!.logText.components(separatedBy: "ordering a certificate").count - 1 == 3)
        #expect(!gateway!.logText.contains("obtaining a certificate failed"))
        // Pebble's tls-alpn-01 validation connections are not failed handshakes of clients.
        #expect(!gateway!.logText.contains("TLS handshake failed"), "\(gateway!.logText)")

        // The plain-HTTP listener redirects what is not a challenge.
        let (status, headers) = try await runTool("/usr/bin/curl", [
            "-sS", "-o", "/dev/null", "-D", "-", "-H", "Host: shop.example.test", "http://127.0.0.1:\(setup.httpPort)/cart?id=1",
        ])
        #expect(status == 0)
        #expect(headers.hasPrefix("HTTP/1.1 308 Permanent Redirect\r\n"), "\(headers)")
        #expect(headers.contains("location: https://shop.example.test:\(setup.httpsPort)/cart?id=1\r\n"), "\(headers)")

        // What an operator sees: no obtained key in the log, a listing or a description.
        let socket = setup.folder.url.appendingPathComponent("run/control.sock").path
        var outputs = gateway!.logText
        for arguments in [["list"], ["list", "--json"], ["show", "alpn"], ["show", "wild", "--json"], ["status"]] {
            let run = try await runCtl(socket: socket, arguments)
            #expect(run.status == 0, "\(arguments): \(run.stderr)")
            outputs += run.stdout + run.stderr
        }

        // A restart serves the stored certificates and orders nothing.
        #expect(gateway!.stop() == 0)
        outputs += gateway!.logText
        #expect(!outputs.contains("PRIVATE KEY"))
        let keys = try Self.storedCertificateKeys(setup)
        #expect(keys.count == 3)
        for keyPEM in keys {
            // Each key's secret: the base64 after PKCS#8's fixed P-256 header (48 characters).
            let body = keyPEM.split(separator: "\n").filter { !$0.hasPrefix("-----") }.joined()
            #expect(body.hasPrefix("MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg"))
            let secret = body.dropFirst(48).prefix(40)
            #expect(secret.count == 40 && !outputs.contains(secret))
        }
        // The three CAs share Pebble's directory: one account, its key P-256, kept in the
        // state (0600) with the account URL Pebble gave.
        let accounts = try Self.storedAccounts(setup)
        #expect(accounts.map(\.directory) == [setup.pebble.directoryURL], "\(accounts.map(\.directory))")
        let account = try #require(accounts.first)
        #expect(try P256.Signing.PrivateKey(pemRepresentation: account.keyPEM).publicKey.rawRepresentation.count == 64)
        #expect(account.accountURL?.hasPrefix("https://") == true, "\(account.accountURL ?? "nil")")
        let databasePath = setup.folder.url.appendingPathComponent("state/certgate.db").path
        let mode = try #require(try FileManager.default.attributesOfItem(atPath: databasePath)[.posixPermissions] as? Int)
        #expect(mode == 0o600, "\(String(mode, radix: 8))")
        gateway = try await GatewayProcess(config: setup.config, folder: setup.folder)
        defer { _ = gateway?.stop() }
        for (name, leaf) in leaves {
            #expect(try await Self.served(name, setup: setup) == leaf, "\(name)")
        }
        #expect(!gateway!.logText.contains("ordering a certificate"))

        // --reset-state discards the stored set, not what ACME obtained: the same
        // certificates serve at once, nothing is ordered, the account is the same.
        #expect(gateway!.stop() == 0)
        gateway = try await GatewayProcess(config: setup.config, folder: setup.folder, arguments: ["--reset-state"])
        #expect(gateway!.logText.contains("state reset: the stored set and issued leaves are discarded"), "\(gateway!.logText)")
        for (name, leaf) in leaves {
            #expect(try await Self.served(name, setup: setup) == leaf, "\(name)")
        }
        #expect(!gateway!.logText.contains("ordering a certificate"), "\(gateway!.logText)")
        #expect(gateway!.stop() == 0)
        #expect(try Self.storedAccounts(setup) == accounts)
    }

    struct StoredAccount: Equatable {
        let directory: String
        let keyPEM: String
        let accountURL: String?
    }

    /// The keys of the certificates obtained for the entries, as stored (read while no gateway runs).
    static func storedCertificateKeys(_ setup: Setup) throws -> [String] {
        let database = try DatabaseQueue(path: setup.folder.url.appendingPathComponent("state/certgate.db").path)
        defer { try? database.close() }
        return try database.read { try String.fetchAll($0, sql: "SELECT key_pem FROM acme_certificates ORDER BY name") }
    }

    /// The rows of the state's ACME accounts, by directory (read while no gateway runs).
    static func storedAccounts(_ setup: Setup) throws -> [StoredAccount] {
        let database = try DatabaseQueue(path: setup.folder.url.appendingPathComponent("state/certgate.db").path)
        defer { try? database.close() }
        return try database.read { db in
            try Row.fetchAll(db, sql: "SELECT directory, key_pem, account_url FROM acme_accounts ORDER BY directory").map {
                StoredAccount(directory: $0["directory"], keyPEM: $0["key_pem"], accountURL: $0["account_url"])
            }
        }
    }

    @Test("until its first certificate an acme entry that brings tls_cert/tls_key serves those files and one without them gets the default; once its CA answers (a reload pointing at Pebble, then ctl renew) each serves the CA's certificate")
    func filesAndDefaultUntilFirstCertificate() async throws {
        let setup = try await Self.setUp()
        defer { setup.pebble.stop(); setup.folder.remove() }
        let authority = GatewayInteropTests.authority
        let shopLeaf = authority.leaf(dnsNames: ["shop.example.test"])
        let fallbackLeaf = authority.leaf(dnsNames: ["fallback.test"])
        for (name, leaf) in [("shop", shopLeaf), ("fallback", fallbackLeaf)] {
            try setup.folder.write(leaf.pem, to: "certs/\(name).pem")
            try setup.folder.write(leaf.key.pkcs8PEM, to: "certs/\(name).key")
        }
        func config(directory: String) -> String {
            """
            log_level: info
            shutdown_timeout: 2s
            listeners:
              - name: https
                listen: 127.0.0.1:\(setup.httpsPort)
            routes:
              - server_names: ["*"]
                respond: { body: "served {sni}\\n" }
            acme:
              later: { directory: "\(directory)", ca_roots: pebble-https-root.pem, challenges: [tls-alpn-01] }
            certificates:
              shop: { acme: later, domains: shop.example.test, tls_cert: certs/shop.pem, tls_key: certs/shop.key }
              bare: { acme: later, domains: bare.example.test }
              fallback: { tls_cert: certs/fallback.pem, tls_key: certs/fallback.key, is_default: true }
            control:
              socket: run/control.sock
            metrics:
              listen: 127.0.0.1:0
            """
        }
        // Nothing answers at the CA's directory: both entries are ordered (the one serving its
        // files too), both orders fail (each after the HTTP client's 10 s connect timeout) and back off.
        let dead = try ReservedPort()
        let gateway = try await GatewayProcess(config: config(directory: "https://127.0.0.1:\(dead.port)/dir"), folder: setup.folder)
        defer { _ = gateway.stop() }
        #expect(try await gateway.waitForLog("obtaining a certificate failed", occurrences: 2, timeout: .seconds(60)), "\(gateway.logText)")
        #expect(gateway.logText.contains("entry=shop names=shop.example.test renewal=false [Gateway] ordering a certificate"), "\(gateway.logText)")
        func servedWithoutVerifying(_ name: String) async throws -> [UInt8]? {
            let connection = try await TLSProbe(group: MultiThreadedEventLoopGroup.singleton).connect(port: setup.httpsPort, serverName: name)
            defer { Task { await connection.close() } }
            return connection.servedLeaf
        }
        #expect(try await servedWithoutVerifying("shop.example.test") == shopLeaf.parsed.der)
        #expect(try await servedWithoutVerifying("bare.example.test") == fallbackLeaf.parsed.der)
        let socket = setup.folder.url.appendingPathComponent("run/control.sock").path
        let pending = try await runCtl(socket: socket, ["list"])
        #expect(pending.stdout.contains("\nshop: acme later, failed"), "\(pending.stdout)")
        #expect(pending.stdout.contains("\nbare: acme later, failed"), "\(pending.stdout)")
        // Not reached: counted as errors, not as the CA's refusals.
        let failedMetrics = try await scrapeMetrics(port: try #require(gateway.metricsPort))
        #expect(failedMetrics.value("certgate_acme_orders_total", ["acme": "later", "result": "error"]) == 2)
        #expect(failedMetrics.value("certgate_acme_orders_total", ["acme": "later", "result": "invalid"]) == nil)

        // The CA answers now: the reload's acme: section is used by the next orders.
        try setup.folder.write(config(directory: setup.pebble.directoryURL), to: "certgate.yaml")
        let reloaded = try await runCtl(socket: socket, ["reload"])
        #expect(reloaded.status == 0, "\(reloaded.stderr)")
        for entry in ["shop", "bare"] {
            let renewed = try await runCtl(socket: socket, ["renew", entry])
            #expect(renewed.status == 0, "\(entry): \(renewed.stderr)")
            #expect(renewed.stdout.hasPrefix("renewed \(entry): generation "), "\(renewed.stdout)")
        }
        // Verified against Pebble's root and for the name: the CA's certificates.
        #expect(try await Self.served("shop.example.test", setup: setup) != nil)
        #expect(try await Self.served("bare.example.test", setup: setup) != nil)
        #expect(try await servedWithoutVerifying("shop.example.test") != shopLeaf.parsed.der)
        let metrics = try await scrapeMetrics(port: try #require(gateway.metricsPort))
        #expect(metrics.value("certgate_acme_orders_total", ["acme": "later", "result": "valid"]) == 2)
    }

    @Test("ctl renew orders a new certificate now (with a new P-256 key): new handshakes get it, an open connection keeps working; with the CA gone it exits 1 with the reason, ctl list says failed, and the old certificate serves on; when the CA returns without its state, the next attempt registers a new account and succeeds")
    func renewAndFailure() async throws {
        let setup = try await Self.setUp()
        defer { setup.pebble.stop(); setup.folder.remove() }
        let (gateway, socket) = try await Self.gatewayWithCertificates(setup)
        defer { _ = gateway.stop() }

        let list = try await runCtl(socket: socket, ["list"])
        #expect(list.status == 0)
        for line in ["alpn: acme pebble-alpn, valid, renews at ", "plain: acme pebble-http, valid, renews at ", "wild: acme pebble-dns, valid, renews at "] {
            #expect(list.stdout.contains("\n" + line), "\(list.stdout)")
        }
        #expect(!list.stdout.contains("last error"))

        // The key stored with alpn's certificate, before the renewal.
        func storedKey(_ entry: String) throws -> String? {
            let database = try DatabaseQueue(path: setup.folder.url.appendingPathComponent("state/certgate.db").path)
            defer { try? database.close() }
            return try database.read { try String.fetchOne($0, sql: "SELECT key_pem FROM acme_certificates WHERE name = ?", arguments: [entry]) }
        }
        let keyBefore = try #require(try storedKey("alpn"))

        // An open connection, made before the renewal.
        let client = TestTLSClient(group: MultiThreadedEventLoopGroup.singleton, trustRoots: [setup.root])
        let open = try await client.connect(port: setup.httpsPort, serverName: "alpn.example.test")
        let before = try open.servedCertificate?.toDERBytes()
        try await open.channel.executeThenClose { inbound, outbound in
            var responses = inbound.makeAsyncIterator()
            func request() async throws -> String {
                try await outbound.write(ByteBuffer(string: "GET / HTTP/1.1\r\nHost: alpn.example.test\r\n\r\n"))
                var text = ""
                while !text.hasSuffix("served alpn.example.test\n") {
                    guard var buffer = try await responses.next() else { break }
                    text += buffer.readString(length: buffer.readableBytes) ?? ""
                }
                return text
            }
            #expect(try await request().hasPrefix("HTTP/1.1 200 OK"))

            let renewed = try await runCtl(socket: socket, ["renew", "alpn"])
            #expect(renewed.status == 0, "\(renewed.stderr)")
            #expect(renewed.stdout.hasPrefix("renewed alpn: generation 4, not after "), "\(renewed.stdout)")
            let after = try await Self.served("alpn.example.test", setup: setup)
            #expect(after != nil && after != before)
            // A new P-256 key for the new order: the served leaf's key.
            let keyAfter = try #require(try storedKey("alpn"))
            #expect(keyAfter != keyBefore)
            let key = try P256.Signing.PrivateKey(pemRepresentation: keyAfter)
            #expect(try Certificate(derEncoded: try #require(after)).publicKey == Certificate.PublicKey(key.publicKey))
            #expect(try await request().hasPrefix("HTTP/1.1 200 OK"))
        }
        #expect(gateway.logText.components(separatedBy: "ordering a certificate").count - 1 == 4)

        // The CA goes away: the renewal fails with its reason; the entry serves what it had.
        let plainBefore = try await Self.served("plain.example.test", setup: setup)
        setup.pebble.terminate()
        let failed = try await runCtl(socket: socket, ["renew", "plain"])
        #expect(failed.status == 1)
        #expect(failed.stderr.hasPrefix("unavailable: plain: newOrder: https://127.0.0.1:"), "\(failed.stderr)")  // the directory is known: the first request that fails is the new order
        #expect(failed.stderr.contains("cannot connect; the current certificate keeps serving"), "\(failed.stderr)")
        let listed = try await runCtl(socket: socket, ["list"])
        #expect(listed.stdout.contains("\nplain: acme pebble-http, failed, renews at "), "\(listed.stdout)")
        #expect(listed.stdout.contains("; last error: newOrder: https://127.0.0.1:"), "\(listed.stdout)")
        // When it is tried again: after the first failure's one-minute backoff.
        let plainLine = listed.stdout.split(separator: "\n").first { $0.hasPrefix("plain: ") } ?? ""
        let nextAttempt = plainLine.firstRange(of: ", next attempt ")
            .flatMap { ControlCommandInteropTests.date(plainLine[$0.upperBound...].prefix(20)) }
        #expect(nextAttempt.map { $0 > Date().addingTimeInterval(30) && $0 <= Date().addingTimeInterval(61) } == true, "\(listed.stdout)")
        #expect(try await Self.served("plain.example.test", setup: setup) == plainBefore)
        #expect(gateway.logText.contains("obtaining a certificate failed; the entry keeps what it serves"))
        let unknown = try await runCtl(socket: socket, ["renew", "nobody"])
        #expect(unknown.status == 1)
        #expect(unknown.stderr == "notFound: no acme entry named 'nobody'\n")

        // The CA returns, with none of its old state: the next attempt registers a new
        // account and gets a certificate that verifies with the new CA's root.
        try await setup.pebble.restart()
        let newRoot = try NIOSSLCertificate(bytes: Array(try await setup.pebble.issuingRoot().utf8), format: .pem)
        let recovered = try await runCtl(socket: socket, ["renew", "plain"])
        #expect(recovered.status == 0, "\(recovered.stderr)\n\(gateway.logText.suffix(3_000))")
        #expect(recovered.stdout.hasPrefix("renewed plain: generation "), "\(recovered.stdout)")
        #expect(gateway.logText.contains("the CA does not know the ACME account any more; registering a new one"))
        let client2 = TestTLSClient(group: MultiThreadedEventLoopGroup.singleton, trustRoots: [newRoot])
        let verified = try await client2.connect(port: setup.httpsPort, serverName: "www.plain.example.test")
        let plainAfter = try verified.servedCertificate?.toDERBytes()
        await verified.close()
        #expect(plainAfter != nil && plainAfter != plainBefore)
        let relisted = try await runCtl(socket: socket, ["list"])
        #expect(relisted.stdout.contains("\nplain: acme pebble-http, valid, renews at "), "\(relisted.stdout)")
    }

    @Test("ctl watch reports an acme entry's results as they happen: obtained after an upsert adds it, renewed after ctl renew (each with the served certificate's notAfter), failed with the CA's reason when validation fails; as JSON and as lines")
    func watchReportsResults() async throws {
        let setup = try await Self.setUp()
        defer { setup.pebble.stop(); setup.folder.remove() }
        let (gateway, socket) = try await Self.gatewayWithCertificates(setup)
        defer { _ = gateway.stop() }
        let json = try RunningCommand(["ctl", "--socket", socket, "watch", "--json"])
        defer { json.stop() }
        let table = try RunningCommand(["ctl", "--socket", socket, "watch"])
        defer { table.stop() }
        _ = try await ControlCommandInteropTests.subscribe([json, table], socket: socket)
        func acmeLines() -> [String] { json.lines.filter { $0.contains("\"acme_changed\"") } }

        // Added by an update: obtained.
        try await ControlInteropTests.withControl(socket: socket) { control in
            _ = try await control.updateCertificates(.with {
                $0.upsert = [.with { $0.name = "late"; $0.acme = "pebble-alpn"; $0.domains = ["late.example.test"] }]
            })
        }
        #expect(try await eventually(timeout: .seconds(60)) { acmeLines().count == 1 }, "\(json.lines)\n\(gateway.logText.suffix(2_000))")
        let first = try #require(try await Self.served("late.example.test", setup: setup))
        // Renewed on request.
        let renewed = try await runCtl(socket: socket, ["renew", "late"])
        #expect(renewed.status == 0, "\(renewed.stderr)")
        let second = try #require(try await Self.served("late.example.test", setup: setup))
        #expect(first != second)
        // Validation fails: Pebble resolves the name to an address nothing listens on.
        try await setup.pebble.manage("/add-a", #"{"host":"astray.example.test","addresses":["127.0.0.2"]}"#)
        try await ControlInteropTests.withControl(socket: socket) { control in
            _ = try await control.updateCertificates(.with {
                $0.upsert = [.with { $0.name = "astray"; $0.acme = "pebble-http"; $0.domains = ["astray.example.test"] }]
            })
        }
        // Both watchers, each on its own connection, have seen all three.
        func tableACMELines() -> [String] { table.lines.filter { $0.contains(": acme ") } }
        #expect(try await eventually(timeout: .seconds(60)) { acmeLines().count == 3 && tableACMELines().count == 3 }, "\(json.lines)\n\(table.lines)")

        // Each line as JSON: its members, with the times taken out and checked below.
        let events = try acmeLines().map { line -> [String: String] in
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(line)")
            let change = try #require(object["acme_changed"] as? [String: Any], "\(line)")
            #expect(Set(object.keys) == ["time", "acme_changed"], "\(line)")
            return change.mapValues { "\($0)" }
        }
        try #require(events.count == 3)
        #expect(events.map { Set($0.keys) } == [
            ["entry", "acme", "result", "not_after", "renew_at"],
            ["entry", "acme", "result", "not_after", "renew_at"],
            ["entry", "acme", "result", "reason", "failures", "next_attempt"],
        ])
        #expect(events.map { [$0["entry"], $0["acme"], $0["result"]] } == [
            ["late", "pebble-alpn", "obtained"], ["late", "pebble-alpn", "renewed"], ["astray", "pebble-http", "failed"],
        ])
        let notAfters = events.prefix(2).compactMap { $0["not_after"].flatMap { ControlCommandInteropTests.date($0) } }
        let served = try [first, second].map { try Certificate(derEncoded: $0).notValidAfter }
        #expect(notAfters == served, "\(events)")
        let renewAts = events.prefix(2).compactMap { $0["renew_at"].flatMap { ControlCommandInteropTests.date($0) } }
        #expect(renewAts.count == 2 && zip(renewAts, served).allSatisfy { $0 > Date() && $0 < $1 }, "\(events)")
        // The CA's own words about the failed validation, after the name and the challenge.
        let reason = events[2]["reason"] ?? ""
        #expect(reason.hasPrefix("astray.example.test: http-01 failed: "), "\(reason)")
        #expect(reason.contains("127.0.0.2"), "\(reason)")
        #expect(events[2]["failures"] == "1")
        // The first failure backs off one minute.
        let nextAttempt = events[2]["next_attempt"].flatMap { ControlCommandInteropTests.date($0) }
        #expect(nextAttempt.map { $0 > Date().addingTimeInterval(30) && $0 < Date().addingTimeInterval(61) } == true, "\(events)")

        let tableLines = tableACMELines().map { ControlCommandInteropTests.stamped($0).rest }
        #expect(tableLines.count == 3, "\(table.lines)")
        #expect(tableLines.first?.hasPrefix("late: acme pebble-alpn obtained (not after ") == true, "\(tableLines)")
        #expect(tableLines.dropFirst().first?.hasPrefix("late: acme pebble-alpn renewed (not after ") == true, "\(tableLines)")
        #expect(tableLines.last?.hasPrefix("astray: acme pebble-http failed: astray.example.test: http-01 failed: ") == true, "\(tableLines)")
        #expect(tableLines.last?.contains(" (1 in a row; next attempt ") == true, "\(tableLines)")
    }

    @Test("ARI, through a directory that adds renewalInfo in front of Pebble: the renewal time lies inside the CA's window for the certificate; a restart asks again and orders nothing while the window is ahead; a window moved into the past renews at once, and the new certificate's window is asked for")
    func renewalInfo() async throws {
        let httpsPort = unusedLocalPort()
        let pebble = try await PebbleServer(validationPorts: (http: unusedLocalPort(), tls: httpsPort))
        defer { pebble.stop() }
        let folder = try FixtureFolder()
        defer { folder.remove() }
        try folder.write(pebble.httpsRootPEM, to: "pebble-https-root.pem")
        let (fetched, pebbleDirectory) = try await runTool("/usr/bin/curl", [
            "-sS", "--fail", "--cacert", folder.url.appendingPathComponent("pebble-https-root.pem").path, pebble.directoryURL,
        ])
        try #require(fetched == 0, "\(pebbleDirectory)")
        let now = Date()
        let ahead = RenewalInfoDirectory.Window(start: now.addingTimeInterval(2 * 3_600), end: now.addingTimeInterval(3 * 3_600))
        let ari = try await RenewalInfoDirectory(
            pebbleDirectory: Data(pebbleDirectory.utf8), window: ahead, retryAfter: 3_600, group: MultiThreadedEventLoopGroup.singleton)
        try folder.write(pebble.httpsRootPEM + ari.rootPEM, to: "roots.pem")
        let config = """
            log_level: info
            shutdown_timeout: 2s
            listeners:
              - name: https
                listen: 127.0.0.1:\(httpsPort)
            acme:
              pebble-ari: { directory: "\(ari.directoryURL)", ca_roots: roots.pem, challenges: [tls-alpn-01] }
            certificates:
              renewing: { acme: pebble-ari, domains: "ari.example.test" }
            control:
              socket: run/control.sock
            """
        let socket = folder.url.appendingPathComponent("run/control.sock").path
        let root = try NIOSSLCertificate(bytes: Array(try await pebble.issuingRoot().utf8), format: .pem)
        func served() async throws -> Certificate {
            let connection = try await TestTLSClient(group: MultiThreadedEventLoopGroup.singleton, trustRoots: [root])
                .connect(port: httpsPort, serverName: "ari.example.test")
            await connection.close()
            return try Certificate(derEncoded: try #require(try connection.servedCertificate?.toDERBytes()))
        }
        func renewAt() async throws -> Date? {
            let list = try await runCtl(socket: socket, ["list", "--json"])
            let object = try JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [String: Any]
            let entry = (object?["certificates"] as? [[String: Any]])?.first { $0["name"] as? String == "renewing" }
            return (entry?["renew_at"] as? String).flatMap { ControlCommandInteropTests.date($0) }
        }
        func asked(_ identifier: String?) -> Int { ari.asked.all.filter { $0 == identifier }.count }

        var gateway = try await GatewayProcess(config: config, folder: folder)
        #expect(try await gateway.waitForLog("source=acme [Gateway] certificate set committed", timeout: .seconds(60)), "\(gateway.logText)")
        let first = try await served()
        let firstID = try #require(ARICertificateIdentifier.of(first))
        #expect(try await eventually { asked(firstID) == 1 }, "\(ari.asked.all)")
        let firstRenewal = try await #require(try renewAt())
        #expect(firstRenewal >= ahead.start && firstRenewal <= ahead.end, "\(firstRenewal)")
        #expect(gateway.stop() == 0)

        // A restart serves the stored certificate, asks the CA again, and orders nothing.
        gateway = try await GatewayProcess(config: config, folder: folder)
        #expect(try await eventually { asked(firstID) == 2 }, "\(ari.asked.all)")
        #expect(try await eventually { try await renewAt().map { $0 >= ahead.start && $0 <= ahead.end } == true })
        #expect(try await served() == first)
        #expect(!gateway.logText.contains("ordering a certificate"))
        #expect(gateway.stop() == 0)

        // The CA moves the certificate's window into the past: renewed at the next start.
        ari.setWindow(.init(start: now.addingTimeInterval(-7_200), end: now.addingTimeInterval(-3_600)), for: firstID)
        gateway = try await GatewayProcess(config: config, folder: folder)
        defer { _ = gateway.stop() }
        #expect(try await gateway.waitForLog("source=acme [Gateway] certificate set committed", timeout: .seconds(60)), "\(gateway.logText)")
        #expect(gateway.logText.contains("renewal=true"), "\(gateway.logText)")
        let second = try await served()
        #expect(second != first)
        let secondID = ARICertificateIdentifier.of(second)
        #expect(try await eventually { asked(secondID) == 1 }, "\(ari.asked.all)")
        #expect(try await eventually { try await renewAt().map { $0 >= ahead.start && $0 <= ahead.end } == true })
        #expect(gateway.logText.components(separatedBy: "ordering a certificate").count - 1 == 1)
        await ari.close()
    }

    @Test("an entry whose domains grow (a reload) or that moves to another CA (ctl upsert) keeps serving its certificate while the new order runs, then serves the new one")
    func changedCAKeepsServing() async throws {
        let setup = try await Self.setUp()
        defer { setup.pebble.stop(); setup.folder.remove() }
        let (gateway, socket) = try await Self.gatewayWithCertificates(setup)
        defer { _ = gateway.stop() }
        // A reload that adds a name to an entry: its certificate serves on while the new one
        // (for all three names) is ordered.
        let plainBefore = try #require(try await Self.served("plain.example.test", setup: setup))
        let extended = setup.config.replacingOccurrences(
            of: "domains: \"plain.example.test,www.plain.example.test\"", with: "domains: \"plain.example.test,www.plain.example.test,extra.plain.example.test\"")
        #expect(extended != setup.config)
        try setup.folder.write(extended, to: "certgate.yaml")
        gateway.signal(SIGHUP)
        #expect(try await gateway.waitForLog("configuration reloaded"), "\(gateway.logText)")
        #expect(try await Self.served("plain.example.test", setup: setup) != nil)
        #expect(try await gateway.waitForLog("source=acme [Gateway] certificate set committed", occurrences: 4, timeout: .seconds(60)), "\(gateway.logText)")
        let plainAfter = try #require(try await Self.served("extra.plain.example.test", setup: setup))
        #expect(plainAfter != plainBefore)
        #expect(try await Self.served("www.plain.example.test", setup: setup) == plainAfter)

        let before = try #require(try await Self.served("alpn.example.test", setup: setup))
        try setup.folder.write("certificates:\n  alpn: { acme: pebble-http, domains: alpn.example.test }\n", to: "moved.yaml")
        let moved = try await runCtl(socket: socket, ["upsert", setup.folder.url.appendingPathComponent("moved.yaml").path])
        #expect(moved.status == 0, "\(moved.stderr)")
        // At once after the reply: still served (the old certificate, or already the new one).
        #expect(try await Self.served("alpn.example.test", setup: setup) != nil)
        #expect(try await gateway.waitForLog("source=acme [Gateway] certificate set committed", occurrences: 5, timeout: .seconds(60)), "\(gateway.logText)")
        let after = try #require(try await Self.served("alpn.example.test", setup: setup))
        #expect(after != before)
        let list = try await runCtl(socket: socket, ["list"])
        #expect(list.stdout.contains("\nalpn: acme pebble-http, valid, renews at "), "\(list.stdout)")

        // Deleted: its obtained certificate and key leave the state with it.
        func storedCertificates() throws -> [String] {
            let database = try DatabaseQueue(path: setup.folder.url.appendingPathComponent("state/certgate.db").path)
            defer { try? database.close() }
            return try database.read { try String.fetchAll($0, sql: "SELECT name FROM acme_certificates ORDER BY name") }
        }
        #expect(try storedCertificates() == ["alpn", "plain", "wild"])
        #expect(try await runCtl(socket: socket, ["delete", "alpn"]).status == 0)
        #expect(try storedCertificates() == ["plain", "wild"])
    }
}
