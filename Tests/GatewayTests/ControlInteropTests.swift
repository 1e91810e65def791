import CertificateKit
import CertificateTestSupport
import ControlProtocol
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import Testing
import X509
import NIOSSL
import NIOPosix
#if canImport(Glibc)
import Glibc
#endif

/// The control plane of the real binary, driven over its Unix socket by a gRPC client.
@Suite("Control plane over the Unix socket (the real binary)", .serialized, .timeLimit(.minutes(3)))
struct ControlInteropTests {
    typealias Control = Certgate_Control_V1_CertificateControl.Client<HTTP2ClientTransport.Posix>

    static func withControl<T: Sendable>(socket: String, _ body: (Control) async throws -> T) async throws -> T {
        let transport = try HTTP2ClientTransport.Posix(target: .unixDomainSocket(path: socket), transportSecurity: .plaintext)
        return try await withGRPCClient(transport: transport) { client in
            try await body(Control(wrapping: client))
        }
    }

    /// The standard interop configuration with a control socket at `run/control.sock`
    /// (then `control:` settings in `extra`).
    static func config(_ base: String = GatewayInteropTests.config(), extra: String = "") -> String {
        base + "\ncontrol:\n  socket: run/control.sock\n" + extra
    }

    static func socket(_ folder: FixtureFolder) -> String {
        folder.url.appendingPathComponent("run/control.sock").path
    }

    static func entry(_ name: String, _ leaf: TestCertificate) -> Certgate_Control_V1_CertificateEntry {
        .with {
            $0.name = name
            $0.tlsCert = leaf.pem
            $0.tlsKey = leaf.key.pkcs8PEM
        }
    }

    static func code(of body: () async throws -> Void) async -> RPCError.Code? {
        do {
            try await body()
            return nil
        } catch let error as RPCError {
            return error.code
        } catch {
            return nil
        }
    }

    /// A gateway with a control socket; `body` gets it, its socket and its folder.
    static func withGateway(_ body: (GatewayProcess, String, FixtureFolder) async throws -> Void) async throws {
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        let gateway = try await GatewayProcess(config: config(), folder: folder)
        defer { gateway.stop() }
        #expect(try await gateway.waitForLog("control socket listening"))
        try await body(gateway, socket(folder), folder)
    }

    /// An entry whose key belongs to another certificate.
    static let mismatched = Certgate_Control_V1_CertificateEntry.with {
        $0.name = "bad"
        $0.tlsCert = GatewayInteropTests.authority.leaf(dnsNames: ["bad.test"]).pem
        $0.tlsKey = TestKey.make().pkcs8PEM
    }

    @Test("UpdateCertificates that cannot apply changes nothing: one invalid entry under REJECT is INVALID_ARGUMENT with its entry, field and reason; a stale expected_generation is FAILED_PRECONDITION; a dry run reports what it would do")
    func refusedUpdatesChangeNothing() async throws {
        try await Self.withGateway { _, socket, _ in
            let fresh = GatewayInteropTests.authority.leaf(dnsNames: ["pushed.test"])
            try await Self.withControl(socket: socket) { control in
                let before = try await control.getStatus(Certgate_Control_V1_GetStatusRequest())
                #expect(before.generation == 0)
                #expect(before.certificates == 4)
                #expect(before.listeners.map(\.name) == ["https"])
                do {
                    _ = try await control.updateCertificates(.with { $0.upsert = [Self.entry("pushed", fresh), Self.mismatched] })
                    Issue.record("an update with a mismatched key was applied")
                } catch let error as RPCError {
                    #expect(error.code == .invalidArgument)
                    #expect(error.message == "bad: tls_key: the private key does not match the certificate (CN=bad.test)")
                }
                do {
                    _ = try await control.updateCertificates(.with { $0.upsert = [Self.entry("pushed", fresh)]; $0.expectedGeneration = 9 })
                    Issue.record("a stale compare-and-swap was applied")
                } catch let error as RPCError {
                    #expect(error.code == .failedPrecondition)
                    #expect(error.message == "expected generation 9, the current one is 0")
                }
                let dry = try await control.updateCertificates(.with { $0.upsert = [Self.entry("pushed", fresh)]; $0.dryRun = true })
                #expect(dry.dryRun && dry.added == ["pushed"] && dry.generation == 0)
                let after = try await control.getStatus(Certgate_Control_V1_GetStatusRequest())
                #expect(after.generation == 0 && after.certificates == 4)
            }
        }
    }

    @Test("UpdateCertificates under KEEP_LAST_GOOD at the expected generation applies the valid entry and reports the invalid one; list and status show the new generation from control; new handshakes get the pushed certificate")
    func keepLastGoodApplies() async throws {
        try await Self.withGateway { gateway, socket, folder in
            let fresh = GatewayInteropTests.authority.leaf(dnsNames: ["pushed.test"])
            try await Self.withControl(socket: socket) { control in
                let applied = try await control.updateCertificates(.with {
                    $0.upsert = [Self.entry("pushed", fresh), Self.mismatched]
                    $0.expectedGeneration = 0
                    $0.policy = .keepLastGood
                })
                #expect(applied.generation == 1)
                #expect(applied.added == ["pushed"])
                #expect(applied.errors.map { [$0.entry, $0.field, $0.reason] } == [
                    ["bad", "tls_key", "the private key does not match the certificate (CN=bad.test)"],
                ])
                let list = try await control.listCertificates(Certgate_Control_V1_ListCertificatesRequest())
                #expect(list.generation == 1)
                #expect(list.certificates.map(\.name).sorted() == ["by-ip", "exact", "fallback", "pushed", "wild"])
                let pushed = try #require(list.certificates.first { $0.name == "pushed" })
                #expect(pushed.domains == ["pushed.test"])
                #expect(pushed.state == "ok")
                await #expect(pushed.sha256Fingerprint == (try ControlCommandInteropTests.opensslFingerprint(fresh.pem, folder: folder)))
                let status = try await control.getStatus(Certgate_Control_V1_GetStatusRequest())
                #expect(status.generation == 1 && status.lastUpdateSource == "control")
            }
            #expect(try await servedCommonName(port: gateway.port, serverName: "pushed.test", folder: folder).cn == "pushed.test")
        }
    }

    @Test("the control socket's folder, made by certgate, is 0700")
    func socketFolderIsPrivate() async throws {
        try await Self.withGateway { _, socket, _ in
            let folder = URL(fileURLWithPath: socket).deletingLastPathComponent().path
            let mode = try FileManager.default.attributesOfItem(atPath: folder)[.posixPermissions] as? Int
            #expect(mode == 0o700)
        }
    }

    @Test("the control socket is 0600; a second instance configured with the same socket refuses to start, and the first still answers")
    func socketIsExclusive() async throws {
        try await Self.withGateway { _, socket, folder in
            let mode = try FileManager.default.attributesOfItem(atPath: socket)[.posixPermissions] as? Int
            #expect(mode == 0o600)
            // Its own port (port 0: one the kernel picks, no other test's) and state folder:
            // the shared socket alone must stop it.
            try folder.write(Self.config().replacingOccurrences(of: "PORT", with: "0") + "state_dir: state2\n", to: "second.yaml")
            let second = try await CertgateProcess.run(["run", "--config", folder.url.appendingPathComponent("second.yaml").path])
            #expect(second.status == 1)
            #expect(second.stderr.contains("another certgate holds the control socket"))
            let stillThere = try await Self.withControl(socket: socket) { try await $0.getStatus(Certgate_Control_V1_GetStatusRequest()).generation }
            #expect(stillThere == 0)
        }
    }

    @Test("a watcher sees every generation in order, from control updates and SIGHUP reloads alike")
    func watchEvents() async throws {
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        let socket = Self.socket(folder)
        let config = Self.config()
        let gateway = try await GatewayProcess(config: config, folder: folder)
        defer { gateway.stop() }
        let seen = Collected<UInt64>()
        let (base, generations) = try await Self.withControl(socket: socket) { control in
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    try await control.watchEvents(Certgate_Control_V1_WatchEventsRequest()) { response in
                        for try await event in response.messages {
                            if case .setChanged(let change) = event.kind { seen.append(change.generation) }
                        }
                    }
                }
                // The watcher is subscribed once it sees an update made after it started
                // (each probe is a change; one made before the subscription is not seen).
                var probe = 0
                while seen.all.isEmpty {
                    try #require(probe < 50, "the watcher saw none of \(probe) updates")
                    let leaf = GatewayInteropTests.authority.leaf(dnsNames: ["probe.test"])
                    _ = try await control.updateCertificates(.with { $0.upsert = [Self.entry("probe", leaf)] })
                    probe += 1
                    try await eventually(timeout: .milliseconds(200)) { !seen.all.isEmpty }
                }
                let base = try await control.getStatus(Certgate_Control_V1_GetStatusRequest()).generation
                for index in 0..<3 {
                    let leaf = GatewayInteropTests.authority.leaf(dnsNames: ["w\(index).test"])
                    _ = try await control.updateCertificates(.with { $0.upsert = [Self.entry("w\(index)", leaf)] })
                }
                gateway.signal(SIGHUP)
                try await eventually { seen.all.contains(base + 4) }
                group.cancelAll()
                return (base, seen.all.filter { $0 > base })
            }
        }
        #expect(generations == [base + 1, base + 2, base + 3, base + 4])
    }

    @Test("ApplyCertificateSet replaces the whole set (added, changed, removed; dry run; CAS; a name given twice); ReloadConfig applies the YAML, or answers INVALID_ARGUMENT for a broken one")
    func applyAndReload() async throws {
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        let socket = Self.socket(folder)
        let config = Self.config()
        let gateway = try await GatewayProcess(config: config, folder: folder)
        defer { gateway.stop() }
        let exact = GatewayInteropTests.authority.leaf(dnsNames: ["exact.test"])
        let only = GatewayInteropTests.authority.leaf(dnsNames: ["only.test"])
        let whole = [Self.entry("exact", exact), Self.entry("only", only)]
        try await Self.withControl(socket: socket) { control in
            let dry = try await control.applyCertificateSet(.with { $0.entries = whole; $0.dryRun = true })
            #expect(dry.dryRun && dry.generation == 0)
            #expect(dry.added == ["only"] && dry.changed == ["exact"] && Set(dry.removed) == ["wild", "by-ip", "fallback"])
            #expect(try await control.listCertificates(Certgate_Control_V1_ListCertificatesRequest()).certificates.count == 4)

            let twice = await Self.code {
                _ = try await control.applyCertificateSet(.with { $0.entries = whole + [Self.entry("only", only)] })
            }
            #expect(twice == .invalidArgument)
            let stale = await Self.code {
                _ = try await control.applyCertificateSet(.with { $0.entries = whole; $0.expectedGeneration = 3 })
            }
            #expect(stale == .failedPrecondition)

            let applied = try await control.applyCertificateSet(.with { $0.entries = whole; $0.expectedGeneration = 0 })
            #expect(applied.generation == 1 && applied.added == ["only"] && applied.changed == ["exact"])
            #expect(Set(applied.removed) == ["wild", "by-ip", "fallback"])
            let names = try await control.listCertificates(Certgate_Control_V1_ListCertificatesRequest()).certificates.map(\.name)
            #expect(names == ["exact", "only"])

            // ReloadConfig: the YAML again, as generation 2.
            let reloaded = try await control.reloadConfig(Certgate_Control_V1_ReloadConfigRequest())
            #expect(reloaded.generation == 2 && reloaded.removed == ["only"] && Set(reloaded.added) == ["wild", "by-ip", "fallback"])
            // A broken file: INVALID_ARGUMENT naming the problem; nothing changes.
            try folder.write("listeners: [oops\n", to: "certgate.yaml")
            let broken = await Self.code { _ = try await control.reloadConfig(Certgate_Control_V1_ReloadConfigRequest()) }
            #expect(broken == .invalidArgument)
            #expect(try await control.getStatus(Certgate_Control_V1_GetStatusRequest()).generation == 2)
        }
        #expect(try await servedCommonName(port: gateway.port, serverName: "exact.test", folder: folder).cn == "exact.test")
    }

    @Test("an issuer pushed with leaf_names wildcard and leaf_validity_days signs such leaves; an unknown leaf_names is INVALID_ARGUMENT")
    func issuerLeafOptions() async throws {
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        let gateway = try await GatewayProcess(config: Self.config(), folder: folder)
        defer { gateway.stop() }
        let authority = TestCertificate.authority(commonName: "Pushed CA")
        func issuer(leafNames: String) -> Certgate_Control_V1_CertificateEntry {
            .with {
                $0.name = "pushed-ca"
                $0.tlsCert = authority.pem
                $0.tlsKey = authority.key.pkcs8PEM
                $0.isCa = true
                $0.domains = ["*.dev.test"]
                $0.leafNames = leafNames
                $0.leafValidityDays = 3
            }
        }
        try await Self.withControl(socket: Self.socket(folder)) { control in
            let refused = await Self.code { _ = try await control.updateCertificates(.with { $0.upsert = [issuer(leafNames: "sideways")] }) }
            #expect(refused == .invalidArgument)
            _ = try await control.updateCertificates(.with { $0.upsert = [issuer(leafNames: "wildcard")] })
        }
        let client = TestTLSClient(group: MultiThreadedEventLoopGroup.singleton, trustRoots: [try NIOSSLCertificate(bytes: Array(authority.pem.utf8), format: .pem)])
        let connection = try await client.connect(port: gateway.port, serverName: "app.dev.test")
        let served = try Certificate(derEncoded: try #require(connection.servedCertificate).toDERBytes())
        await connection.close()
        #expect(try served.extensions.subjectAlternativeNames?.contains(.dnsName("*.dev.test")) == true)
        let days = served.notValidAfter.timeIntervalSince(served.notValidBefore) / 86_400
        #expect(days > 2.9 && days < 3.1, "\(days) days")
    }

    @Test("a control-plane entry is held to the file's ranges: buffer_days 3651 and leaf_validity_days 398 are INVALID_ARGUMENT naming the entry, the field and the range; the edges 3650 and 397 are applied")
    func entryRanges() async throws {
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        let gateway = try await GatewayProcess(config: Self.config(), folder: folder)
        defer { gateway.stop() }
        let leaf = GatewayInteropTests.authority.leaf(dnsNames: ["ranged.test"])
        let authority = TestCertificate.authority(commonName: "Ranged CA")
        func entry(bufferDays: UInt32) -> Certgate_Control_V1_CertificateEntry {
            .with { $0.name = "ranged"; $0.tlsCert = leaf.pem; $0.tlsKey = leaf.key.pkcs8PEM; $0.bufferDays = bufferDays }
        }
        func issuer(leafValidityDays: UInt32) -> Certgate_Control_V1_CertificateEntry {
            .with {
                $0.name = "ranged-ca"; $0.tlsCert = authority.pem; $0.tlsKey = authority.key.pkcs8PEM; $0.isCa = true
                $0.domains = ["*.ranged.test"]; $0.leafValidityDays = leafValidityDays
            }
        }
        func refusal(_ entry: Certgate_Control_V1_CertificateEntry, _ control: Control) async -> (RPCError.Code, String)? {
            do {
                _ = try await control.updateCertificates(.with { $0.upsert = [entry] })
                return nil
            } catch let error as RPCError {
                return (error.code, error.message)
            } catch {
                return nil
            }
        }
        try await Self.withControl(socket: Self.socket(folder)) { control in
            let days = await refusal(entry(bufferDays: 3_651), control)
            #expect(days?.0 == .invalidArgument)
            #expect(days?.1 == "ranged: buffer_days: must be 0 to 3650 days, not 3651")
            let validity = await refusal(issuer(leafValidityDays: 398), control)
            #expect(validity?.0 == .invalidArgument)
            #expect(validity?.1 == "ranged-ca: leaf_validity_days: must be 1 to 397 days, not 398 (browsers refuse TLS leaves valid for more than 398 days)")
            let before = try await control.getStatus(Certgate_Control_V1_GetStatusRequest()).generation
            let applied = try await control.updateCertificates(.with { $0.upsert = [entry(bufferDays: 3_650), issuer(leafValidityDays: 397)] })
            #expect(applied.generation == before + 1)
            #expect(Set(applied.added) == ["ranged", "ranged-ca"])
        }
    }

    @Test("max_message_bytes 65536: a larger request gets RESOURCE_EXHAUSTED naming its size and the limit; one beyond twice the limit is cut by the transport (UNAVAILABLE); neither changes anything, and the next request applies")
    func sizeLimit() async throws {
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        let socket = Self.socket(folder)
        let config = Self.config(extra: "  max_message_bytes: 65536\n")
        let gateway = try await GatewayProcess(config: config, folder: folder)
        defer { gateway.stop() }
        func request(certificateBytes: Int) -> Certgate_Control_V1_UpdateCertificatesRequest {
            .with { $0.upsert = [.with { $0.name = "huge"; $0.tlsCert = String(repeating: "A", count: certificateBytes) }] }
        }
        let over = request(certificateBytes: 100_000)  // over 64 KiB, under the transport's 128 KiB
        let overSize = try over.serializedBytes() as [UInt8]
        let beyond = request(certificateBytes: 140_000)  // over 128 KiB
        try await Self.withControl(socket: socket) { control async throws in
            do {
                _ = try await control.updateCertificates(over)
                Issue.record("a request over the limit was applied")
            } catch let error as RPCError {
                #expect(error.code == .resourceExhausted)
                #expect(error.message == "request of \(overSize.count) bytes is over the limit of 65536 (control.max_message_bytes)")
            }
            #expect(try await control.getStatus(Certgate_Control_V1_GetStatusRequest()).generation == 0)
        }
        let beyondCode = try await Self.withControl(socket: socket) { control in
            await Self.code { _ = try await control.updateCertificates(beyond) }
        }
        #expect(beyondCode == .unavailable)
        let (generation, next) = try await Self.withControl(socket: socket) { control in
            (try await control.getStatus(Certgate_Control_V1_GetStatusRequest()).generation,
             try await control.updateCertificates(.with { $0.delete = ["wild"] }).generation)
        }
        #expect(generation == 0)
        #expect(next == 1)
    }

    @Test("certgate ctl: upsert a YAML file, list it (table and --json), delete it; a failure exits 1 with the server's reason")
    func commandLine() async throws {
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        let config = Self.config()
        let gateway = try await GatewayProcess(config: config, folder: folder)
        defer { gateway.stop() }
        let configPath = folder.url.appendingPathComponent("certgate.yaml").path
        let leaf = GatewayInteropTests.authority.leaf(dnsNames: ["ctl.test"])
        try folder.write(leaf.pem, to: "certs/ctl.pem")
        try folder.write(leaf.key.pkcs8PEM, to: "certs/ctl.key")
        try folder.write("certificates:\n  ctl: { tls_cert: certs/ctl.pem, tls_key: certs/ctl.key }\n", to: "push.yaml")

        let upsert = try await CertgateProcess.run(["ctl", "--config", configPath, "upsert", folder.url.appendingPathComponent("push.yaml").path])
        #expect(upsert.status == 0, "\(upsert.stdout)\(upsert.stderr)")
        #expect(upsert.stdout.contains("applied generation 1: 1 added"))

        let table = try await CertgateProcess.run(["ctl", "--config", configPath, "list"])
        #expect(table.stdout.split(separator: "\n").contains { $0.hasPrefix("ctl ") && $0.contains("ctl.test") })
        let json = try await CertgateProcess.run(["ctl", "--config", configPath, "list", "--json"])
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        let names = (object["certificates"] as? [[String: Any]])?.compactMap { $0["name"] as? String } ?? []
        #expect(names.contains("ctl"))
        #expect(!json.stdout.contains("PRIVATE KEY"))
        #expect(try await servedCommonName(port: gateway.port, serverName: "ctl.test", folder: folder).cn == "ctl.test")

        let stale = try await CertgateProcess.run(["ctl", "--config", configPath, "delete", "ctl", "--expect-generation", "0"])
        #expect(stale.status == 1)
        #expect(stale.stderr.contains("failedPrecondition"))
        let delete = try await CertgateProcess.run(["ctl", "--config", configPath, "delete", "ctl", "--expect-generation", "1"])
        #expect(delete.status == 0, "\(delete.stderr)")
        #expect(delete.stdout.contains("removed: ctl"))

        try folder.write("certificates:\n  broken: { tls_cert: certs/ctl.pem, tls_key: certs/exact.key }\n", to: "bad.yaml")
        let bad = try await CertgateProcess.run(["ctl", "--config", configPath, "upsert", folder.url.appendingPathComponent("bad.yaml").path])
        #expect(bad.status == 1)
        #expect(bad.stderr.contains("broken: tls_key: the private key does not match"))
    }
}
