import CertificateKit
import CertificateTestSupport
import ControlProtocol
import Foundation
import GRDB
import GRPCCore
import NIOPosix
import NIOSSL
import Synchronization
import Testing
import X509
#if canImport(Glibc)
import Glibc
#endif

/// Durable state through the real binary: what a successful update reports survives a
/// restart and a `kill -9`; the state wins over the YAML until a reload; handshakes run
/// clean while updates apply.
@Suite("Durable state (the real binary)", .serialized, .timeLimit(.minutes(3)))
struct StateInteropTests {
    typealias Entry = Certgate_Control_V1_CertificateEntry
    static let authority = GatewayInteropTests.authority

    static func config() -> String { ControlInteropTests.config() }

    static func socket(_ folder: FixtureFolder) -> String { ControlInteropTests.socket(folder) }

    static func control<T: Sendable>(_ folder: FixtureFolder, _ body: (ControlInteropTests.Control) async throws -> T) async throws -> T {
        try await ControlInteropTests.withControl(socket: socket(folder), body)
    }

    /// Names and leaf fingerprints of the served set, as the control plane lists it.
    static func served(_ folder: FixtureFolder) async throws -> (generation: UInt64, fingerprints: [String: String]) {
        try await control(folder) { control in
            let list = try await control.listCertificates(Certgate_Control_V1_ListCertificatesRequest())
            return (list.generation, Dictionary(uniqueKeysWithValues: list.certificates.map { ($0.name, $0.sha256Fingerprint) }))
        }
    }

    static func fingerprints(of folder: FixtureFolder, names: [String]) throws -> [String: String] {
        var result: [String: String] = [:]
        for name in names {
            let pem = try String(contentsOf: folder.url.appendingPathComponent("certs/\(name).pem"), encoding: .utf8)
            result[name] = try #require(try PEMMaterialParser.certificates(fromPEM: pem).first).sha256Fingerprint
        }
        return result
    }

    @Test("updates survive a restart; the stored set wins over the YAML until SIGHUP applies it; --reset-state serves the YAML; state files are 0600")
    func restartServesLastAcknowledgedSet() async throws {
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        let yamlSet = try Self.fingerprints(of: folder, names: ["exact", "wild", "by-ip", "fallback"])
        let pushed = Self.authority.leaf(dnsNames: ["pushed.test"])
        var gateway = try await GatewayProcess(config: Self.config(), folder: folder)
        #expect(gateway.logText.contains("serving the configuration's certificates"))
        try await Self.control(folder) { control in
            let first = try await control.updateCertificates(.with { $0.upsert = [ControlInteropTests.entry("pushed", pushed)] })
            #expect(first.generation == 1)
            let second = try await control.updateCertificates(.with { $0.delete = ["wild"]; $0.expectedGeneration = 1 })
            #expect(second.generation == 2 && second.removed == ["wild"])
        }
        var expected = yamlSet
        expected["pushed"] = pushed.parsed.sha256Fingerprint
        expected["wild"] = nil
        let committed = try await Self.control(folder) { try await $0.getStatus(Certgate_Control_V1_GetStatusRequest()) }.lastUpdate.date
        #expect(gateway.stop() == 0)
        for file in ["state/certgate.db", "state/certgate.db-wal", "state/certgate.db-shm"] {
            let path = folder.url.appendingPathComponent(file).path
            guard FileManager.default.fileExists(atPath: path) else { continue }
            let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
            #expect(mode == 0o600, "\(file)")
        }

        // `certgate check` says that a stored set will be served instead of the file's.
        let check = try await CertgateProcess.run(["check", "--config", folder.url.appendingPathComponent("certgate.yaml").path])
        #expect(check.status == 0)
        // The whole note: generation, size, commit time and source.
        let statePath = folder.url.appendingPathComponent("state/certgate.db").path
        let note = try #require(check.stdout.split(separator: "\n").first { $0.hasPrefix("note: \(statePath) holds a stored set") }, "\(check.stdout)")
        let match = try #require(note.firstMatch(of: /holds a stored set \(generation 2, 4 certificates, committed (\S+) by control\); certgate run serves it instead of the certificates above until a reload \(SIGHUP, certgate ctl reload\) or --reset-state$/), "\(note)")
        let noted = try #require(ControlCommandInteropTests.date(match.1), "\(note)")
        #expect(abs(noted.timeIntervalSince(committed)) < 1, "\(note) vs \(committed)")
        let checkJSON = try await CertgateProcess.run(["check", "--json", "--config", folder.url.appendingPathComponent("certgate.yaml").path])
        #expect(checkJSON.stdout.contains("\"stored_set\""))

        // Restart: the stored generation 2 is served, not the YAML.
        gateway = try await GatewayProcess(config: Self.config(), folder: folder)
        let startLine = gateway.logText.split(separator: "\n").first { $0.contains("serving the stored certificate set") } ?? ""
        #expect(startLine.contains(" generation=2 ") && startLine.contains(" certificates=4 ") && startLine.contains(" source=control "), "\(gateway.logText)")
        var served = try await Self.served(folder)
        #expect(served.generation == 2)
        #expect(served.fingerprints == expected)
        #expect(try await servedCommonName(port: gateway.port, serverName: "pushed.test", folder: folder).cn == "pushed.test")
        #expect(try await servedCommonName(port: gateway.port, serverName: "a.wild.test", folder: folder).cn == "fallback.test")

        // SIGHUP applies the YAML as generation 3, and that is what the next start serves.
        gateway.signal(SIGHUP)
        #expect(try await gateway.waitForLog("configuration reloaded"))
        served = try await Self.served(folder)
        #expect(served.generation == 3)
        #expect(served.fingerprints == yamlSet)
        #expect(gateway.stop() == 0)
        gateway = try await GatewayProcess(config: Self.config(), folder: folder)
        served = try await Self.served(folder)
        #expect(served.generation == 3 && served.fingerprints == yamlSet)

        // A pushed entry, then --reset-state: the YAML again, at generation 0.
        _ = try await Self.control(folder) { try await $0.updateCertificates(.with { $0.upsert = [ControlInteropTests.entry("pushed", pushed)] }) }
        #expect(gateway.stop() == 0)
        gateway = try await GatewayProcess(config: Self.config(), folder: folder, arguments: ["--reset-state"])
        defer { gateway.stop() }
        #expect(gateway.logText.contains("state reset"))
        served = try await Self.served(folder)
        #expect(served.generation == 0 && served.fingerprints == yamlSet)

        // A second instance on the same state folder refuses to start.
        let second = try await CertgateProcess.run(["run", "--config", folder.url.appendingPathComponent("certgate.yaml").path])
        #expect(second.status != 0)
        #expect(second.stderr.contains("another certgate uses this state"))
    }

    @Test("kill -9 in the middle of a stream of updates: the restart serves exactly the last acknowledged generation (or the one in flight), never a mix")
    func killDuringUpdates() async throws {
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        let gateway = try await GatewayProcess(config: Self.config(), folder: folder)
        let base = try Self.fingerprints(of: folder, names: ["exact", "wild", "by-ip", "fallback"])
        // Each update replaces `rolling` and adds `n<i>`: a torn restore would show a
        // `rolling` from one generation with the `n` entries of another.
        let updates = 60
        let leaves = (0..<updates).map { Self.authority.leaf(dnsNames: ["rolling.test", "n\($0).test"]) }
        func expectedSet(after count: Int) -> [String: String] {
            var set = base
            for index in 0..<count { set["n\(index)"] = leaves[index].parsed.sha256Fingerprint }
            if count > 0 { set["rolling"] = leaves[count - 1].parsed.sha256Fingerprint }
            return set
        }
        let acknowledged = Mutex<UInt64>(0)
        let killAfter = 25
        let stream = Task {
            try await Self.control(folder) { control in
                for index in 0..<updates {
                    let result = try await control.updateCertificates(.with {
                        $0.upsert = [
                            ControlInteropTests.entry("rolling", leaves[index]),
                            .with { entry in
                                entry.name = "n\(index)"
                                entry.tlsCert = leaves[index].pem
                                entry.tlsKey = leaves[index].key.pkcs8PEM
                                entry.domains = ["n\(index).test"]
                            },
                        ]
                        // `rolling` claims only rolling.test.
                        $0.upsert[0].domains = ["rolling.test"]
                    })
                    acknowledged.withLock { $0 = result.generation }
                }
            }
        }
        while acknowledged.withLock({ $0 }) < UInt64(killAfter) {
            try await Task.sleep(for: .milliseconds(2))
        }
        gateway.kill9()
        _ = await stream.result
        let lastAcknowledged = acknowledged.withLock { $0 }
        #expect(lastAcknowledged >= UInt64(killAfter) && lastAcknowledged < UInt64(updates))

        let restarted = try await GatewayProcess(config: Self.config(), folder: folder)
        defer { restarted.stop() }
        let served = try await Self.served(folder)
        // The update in flight at the kill may have committed before its reply was lost.
        #expect(served.generation == lastAcknowledged || served.generation == lastAcknowledged + 1)
        #expect(served.fingerprints == expectedSet(after: Int(served.generation)))
        #expect(try await servedCommonName(port: restarted.port, serverName: "rolling.test", folder: folder).cn == "rolling.test")
    }

    @Test("handshakes running while updates apply never fail and always get a certificate for their SNI")
    func handshakesDuringUpdates() async throws {
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        let gateway = try await GatewayProcess(config: Self.config(), folder: folder)
        defer { gateway.stop() }
        let rounds = 40
        let names = ["alpha.test", "beta.test"]
        let leaves = (0..<rounds).map { round in names.map { Self.authority.leaf(dnsNames: [$0], commonName: "\($0) #\(round)") } }
        // Replace both, add and drop a third, all in one batch.
        func update(_ round: Int) -> Certgate_Control_V1_UpdateCertificatesRequest {
            .with {
                $0.upsert = zip(names, leaves[round]).map { ControlInteropTests.entry(String($0.0.prefix { $0 != "." }), $0.1) }
                if round % 2 == 0 {
                    $0.upsert.append(ControlInteropTests.entry("gamma", Self.authority.leaf(dnsNames: ["gamma.test"])))
                } else {
                    $0.delete = ["gamma"]
                }
            }
        }
        // alpha and beta exist before the first handshake.
        _ = try await Self.control(folder) { try await $0.updateCertificates(update(0)) }
        let done = Mutex(false)
        let updater = Task {
            defer { done.withLock { $0 = true } }
            try await Self.control(folder) { control in
                for round in 1..<rounds { _ = try await control.updateCertificates(update(round)) }
            }
        }
        let client = TestTLSClient(group: MultiThreadedEventLoopGroup.singleton, trustRoots: [try NIOSSLCertificate(bytes: Array(Self.authority.pem.utf8), format: .pem)])
        var handshakes = 0
        var whileUpdating = 0
        var failures: [String] = []
        var round = 0
        // Keep going until the updates are done, and at least 200 handshakes.
        while !done.withLock({ $0 }) || handshakes < 200 {
            let name = ["alpha.test", "beta.test", "exact.test"][round % 3]
            round += 1
            if !done.withLock({ $0 }) { whileUpdating += 1 }
            do {
                // Full verification: the certificate must be valid for `name`.
                let connection = try await client.connect(port: gateway.port, serverName: name)
                let served = try #require(connection.servedCertificate)
                let sans = try Certificate(derEncoded: served.toDERBytes()).extensions.subjectAlternativeNames
                if sans?.contains(.dnsName(name)) != true { failures.append("\(name): served \(String(describing: sans))") }
                await connection.close()
            } catch {
                failures.append("\(name): \(error)")
            }
            handshakes += 1
        }
        try await updater.value
        #expect(failures.isEmpty, "\(failures.prefix(5))")
        #expect(handshakes >= 200)
        #expect(whileUpdating >= 20, "only \(whileUpdating) handshakes overlapped the updates")
        #expect(try await Self.served(folder).generation == UInt64(rounds))
    }

    @Test("a commit the database refuses answers UNAVAILABLE and changes nothing, served or stored — for an update and for ReloadConfig/ctl reload")
    func failedCommitChangesNothing() async throws {
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        var gateway = try await GatewayProcess(config: Self.config(), folder: folder)
        let before = try await Self.served(folder)
        // Another connection adds a trigger that fails the write of one row — in the middle
        // of the transaction, after the row before it was written.
        let database = try DatabaseQueue(path: folder.url.appendingPathComponent("state/certgate.db").path)
        try await database.write { db in
            try db.execute(sql: """
                CREATE TRIGGER refuse_poison BEFORE INSERT ON certificates WHEN NEW.name = 'poison'
                BEGIN SELECT RAISE(FAIL, 'refused by the test trigger'); END
                """)
        }
        try database.close()
        let status = await ControlInteropTests.code {
            _ = try await Self.control(folder) { control in
                try await control.updateCertificates(.with {
                    $0.upsert = [
                        ControlInteropTests.entry("fine", Self.authority.leaf(dnsNames: ["fine.test"])),
                        ControlInteropTests.entry("poison", Self.authority.leaf(dnsNames: ["poison.test"])),
                    ]
                })
            }
        }
        #expect(status == .unavailable)
        #expect(try await Self.served(folder) == before)
        #expect(try await servedCommonName(port: gateway.port, serverName: "fine.test", folder: folder).cn == "fallback.test")

        // A reload whose file brings the poisoned entry: ReloadConfig answers UNAVAILABLE, ctl
        // reload says so (exit 1), a SIGHUP logs it; nothing changes.
        let poison = Self.authority.leaf(dnsNames: ["poison.test"])
        try folder.write(poison.pem, to: "certs/poison.pem")
        try folder.write(poison.key.pkcs8PEM, to: "certs/poison.key")
        let file = try String(contentsOf: folder.url.appendingPathComponent("certgate.yaml"), encoding: .utf8)
        try folder.write(ControlInteropTests.config(GatewayInteropTests.config(
            extraCertificates: "  poison: { tls_cert: certs/poison.pem, tls_key: certs/poison.key }")).replacingOccurrences(of: "PORT", with: String(gateway.port)),
            to: "certgate.yaml")
        let reloadStatus = await ControlInteropTests.code {
            _ = try await Self.control(folder) { try await $0.reloadConfig(Certgate_Control_V1_ReloadConfigRequest()) }
        }
        #expect(reloadStatus == .unavailable)
        let reload = try await runCtl(socket: Self.socket(folder), ["reload"])
        #expect(reload.status == 1)
        // In certgate's words: SQLite's message (here the trigger's text) is not passed on.
        let statePath = folder.url.appendingPathComponent("state/certgate.db").path
        #expect(reload.stderr == "unavailable: could not persist the update; nothing changed: state \(statePath): cannot commit generation \(before.generation + 1): SQLite error 19: a constraint refused the write\n")
        #expect(try await Self.served(folder) == before)
        #expect(try await servedCommonName(port: gateway.port, serverName: "poison.test", folder: folder).cn == "fallback.test")
        try folder.write(file, to: "certgate.yaml")
        // The next update (without the poisoned row) commits as the next generation.
        let next = try await Self.control(folder) { control in
            try await control.updateCertificates(.with { $0.delete = ["wild"] })
        }
        #expect(next.generation == before.generation + 1)
        #expect(gateway.stop() == 0)
        gateway = try await GatewayProcess(config: Self.config(), folder: folder)
        defer { gateway.stop() }
        let after = try await Self.served(folder)
        #expect(after.generation == before.generation + 1)
        #expect(after.fingerprints["fine"] == nil && after.fingerprints["poison"] == nil && after.fingerprints["wild"] == nil)
    }

    @Test("the local CA's issued leaves are stored: after a restart the same leaf is served without signing again; after a restart with --reset-state the name is signed again")
    func issuedLeavesSurviveRestart() async throws {
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        try folder.write(Self.authority.key.pkcs8PEM, to: "ca.key")
        let config = ControlInteropTests.config(GatewayInteropTests.config(extraCertificates: """
              dev-ca: { tls_cert: ca.pem, tls_key: ca.key, is_ca: true, domains: "*.dev.test" }
            """))
        let client = TestTLSClient(group: MultiThreadedEventLoopGroup.singleton, trustRoots: [try NIOSSLCertificate(bytes: Array(Self.authority.pem.utf8), format: .pem)])
        func servedLeaf(port: Int) async throws -> [UInt8] {
            let connection = try await client.connect(port: port, serverName: "app.dev.test")
            defer { Task { await connection.close() } }
            return try #require(connection.servedCertificate).toDERBytes()
        }
        var gateway = try await GatewayProcess(config: config, folder: folder)
        let first = try await servedLeaf(port: gateway.port)
        #expect(gateway.stop() == 0)
        gateway = try await GatewayProcess(config: config, folder: folder)
        #expect(gateway.logText.contains("issued leaves restored"))
        #expect(try await servedLeaf(port: gateway.port) == first)
        let status = try await Self.control(folder) { try await $0.getStatus(Certgate_Control_V1_GetStatusRequest()) }
        #expect(status.issuedCached == 1)

        // --reset-state discards them with the stored set: the name is signed again.
        #expect(gateway.stop() == 0)
        gateway = try await GatewayProcess(config: config, folder: folder, arguments: ["--reset-state"])
        defer { gateway.stop() }
        let reset = try #require(gateway.logText.split(separator: "\n").first { $0.contains("state reset: the stored set and issued leaves are discarded") })
        #expect(reset.contains(" issued_leaves=1 "), "\(reset)")
        #expect(!gateway.logText.contains("issued leaves restored"))
        let signedAgain = try await servedLeaf(port: gateway.port)
        #expect(signedAgain != first)
    }
}
