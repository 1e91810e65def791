import CertificateTestSupport
import ControlProtocol
import Foundation
import GRDB
import GRPCCore
import Testing

/// `acme` entries sent to a running gateway (ctl upsert/apply, UpdateCertificates) are
/// checked against the gateway's own `acme:` section, as `certgate check` checks the file:
/// a CA it does not have, an IP, or a wildcard without dns-01 is an entry error (entry,
/// field, reason) under the update's policy — not an order that fails later.
@Suite("acme entries through the control plane", .serialized, .timeLimit(.minutes(2)))
struct ACMEUpdateInteropTests {
    /// A gateway with one CA, `ca` (tls-alpn-01 only, at a directory nothing answers: no order
    /// in these tests can succeed, and none needs to).
    static let config = ControlInteropTests.config(extra: """
        acme:
          ca: { directory: "https://127.0.0.1:9/dir", challenges: [tls-alpn-01] }

        """)

    @Test("ctl upsert of a file whose acme entry names the gateway's CA (not in the file) is accepted and listed as an acme entry; still pending, it survives a restart (and is ordered again), and a deleted one does not come back")
    func gatewaysCA() async throws {
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        var gateway = try await GatewayProcess(config: Self.config, folder: folder)
        defer { gateway.stop() }
        let socket = ControlInteropTests.socket(folder)
        try folder.write("certificates:\n  shop: { acme: ca, domains: \"shop.test,www.shop.test\" }\n", to: "shop.yaml")
        let upserted = try await runCtl(socket: socket, ["upsert", folder.url.appendingPathComponent("shop.yaml").path])
        #expect(upserted.status == 0, "\(upserted.stderr)")
        #expect(upserted.stderr == "")
        let list = try await runCtl(socket: socket, ["list"])
        #expect(list.stdout.contains("\nshop      acme            shop.test,www.shop.test  -                     -          pending  -\n"), "\(list.stdout)")
        // Pending until its CA answers (here never: it fails and backs off).
        #expect(list.stdout.contains("\nshop: acme ca, pending\n") || list.stdout.contains("\nshop: acme ca, failed"), "\(list.stdout)")

        // Renewing it now fails (nothing answers at the directory) and says it serves nothing yet.
        let renewed = try await runCtl(socket: socket, ["renew", "shop"])
        #expect(renewed.status == 1)
        #expect(renewed.stderr.hasPrefix("unavailable: shop: "), "\(renewed.stderr)")
        #expect(renewed.stderr.hasSuffix("; it has no certificate yet; the default entry answers its names\n"), "\(renewed.stderr)")

        // A restart: the committed, still pending entry is there and is ordered again.
        try folder.write("certificates:\n  gone: { acme: ca, domains: gone.test }\n", to: "gone.yaml")
        #expect(try await runCtl(socket: socket, ["upsert", folder.url.appendingPathComponent("gone.yaml").path]).status == 0)
        #expect(try await runCtl(socket: socket, ["delete", "gone"]).status == 0)
        #expect(gateway.stop() == 0)
        gateway = try await GatewayProcess(config: Self.config, folder: folder)
        let again = try await runCtl(socket: socket, ["list"])
        #expect(again.stdout.contains("\nshop      acme            shop.test,www.shop.test  -"), "\(again.stdout)")
        #expect(!again.stdout.contains("gone"), "\(again.stdout)")
        #expect(try await gateway.waitForLog("entry=shop"), "\(gateway.logText)")
        #expect(gateway.logText.contains("ordering a certificate"), "\(gateway.logText)")
    }

    @Test("an acme entry naming a CA the gateway does not have, an IP, or a wildcard its CA cannot validate is rejected with entry, field and reason; under KEEP_LAST_GOOD the other entries apply and the invalid ones are reported")
    func invalidEntries() async throws {
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        let gateway = try await GatewayProcess(config: Self.config, folder: folder)
        defer { gateway.stop() }
        let socket = ControlInteropTests.socket(folder)
        func acme(_ name: String, _ issuer: String, _ domains: [String]) -> Certgate_Control_V1_CertificateEntry {
            .with { $0.name = name; $0.acme = issuer; $0.domains = domains }
        }
        let entries = [
            ControlInteropTests.entry("fresh", GatewayInteropTests.authority.leaf(dnsNames: ["fresh.test"])),
            acme("nowhere", "elsewhere", ["nowhere.test"]),
            acme("numeric", "ca", ["numeric.test", "192.0.2.7"]),
            acme("starry", "ca", ["*.starry.test"]),
            acme("under_score", "ca", ["a_b.example.test"]),
            acme(String(repeating: "n", count: 254), "ca", ["long.example.test"]),
        ]
        let expected = [
            ("nowhere", "acme", "no ACME CA is called 'elsewhere' (known: ca, letsencrypt, letsencrypt-staging)"),
            ("numeric", "domains.1", "'192.0.2.7' is not a DNS name an ACME CA can validate"),
            ("starry", "domains.0", "a wildcard name is validated only by dns-01: add dns-01 to acme.ca.challenges"),
            ("under_score", "domains.0", "'a_b.example.test' is not a valid DNS name (letters, digits and hyphens; labels of 1-63 octets; 253 in all)"),
        ]
        // A name no entry can have, given to a pending entry: refused, and not echoed (it could be pasted key text).
        let tooLong = ("(254 characters, not shown)", "name", "name longer than 253 bytes")
        try await ControlInteropTests.withControl(socket: socket) { control in
            do {
                _ = try await control.updateCertificates(.with { $0.upsert = entries })
                Issue.record("an update with invalid acme entries was applied")
            } catch let error as RPCError {
                #expect(error.code == .invalidArgument)
                #expect(error.message == ([tooLong] + expected).map { "\($0.0): \($0.1): \($0.2)" }.joined(separator: "\n"))
            }
            #expect(try await control.getStatus(Certgate_Control_V1_GetStatusRequest()).generation == 0)

            let kept = try await control.updateCertificates(.with { $0.upsert = entries; $0.policy = .keepLastGood })
            #expect(kept.generation == 1)
            #expect(kept.added == ["fresh"])
            #expect(kept.errors.map { [$0.entry, $0.field, $0.reason] } == ([tooLong] + expected).map { [$0.0, $0.1, $0.2] })
            let listed = try await control.listCertificates(Certgate_Control_V1_ListCertificatesRequest())
            #expect(Set(listed.certificates.map(\.name)) == ["by-ip", "exact", "fallback", "fresh", "wild"])
        }

        // Through ctl: the file's check leaves the CA to the gateway, which refuses it.
        try folder.write("certificates:\n  nowhere: { acme: elsewhere, domains: nowhere.test }\n", to: "nowhere.yaml")
        let refused = try await runCtl(socket: socket, ["upsert", folder.url.appendingPathComponent("nowhere.yaml").path])
        #expect(refused.status == 1)
        #expect(refused.stderr == "invalidArgument: nowhere: acme: no ACME CA is called 'elsewhere' (known: ca, letsencrypt, letsencrypt-staging)\n")
        #expect(!gateway.logText.contains("ordering a certificate"))
    }

    @Test("every CertificateEntry field reaches the gateway: tls_cert/tls_key as a path on the gateway's host and as base64, is_default (moved from another entry in the same update), buffer_days (a 90-day leaf with 100 is expiring), remark (kept in the state), an on-demand entry's ask")
    func everyEntryField() async throws {
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        let gateway = try await GatewayProcess(config: Self.config, folder: folder)
        defer { gateway.stop() }
        let authority = GatewayInteropTests.authority
        let byPath = authority.leaf(dnsNames: ["by-path.test"])
        let encoded = authority.leaf(dnsNames: ["encoded.test"])
        try folder.write(byPath.pem, to: "certs/by-path.pem")
        try folder.write(byPath.key.pkcs8PEM, to: "certs/by-path.key")
        func absolute(_ name: String) -> String { folder.url.appendingPathComponent(name).path }
        let ask = "http://127.0.0.1:9/allowed"
        let result = try await ControlInteropTests.withControl(socket: ControlInteropTests.socket(folder)) { control in
            try await control.updateCertificates(.with {
                $0.upsert = [
                    .with { $0.name = "by-path"; $0.tlsCert = absolute("certs/by-path.pem"); $0.tlsKey = absolute("certs/by-path.key"); $0.bufferDays = 100; $0.remark = "kept in the state" },
                    .with { $0.name = "encoded"; $0.tlsCert = Data(encoded.pem.utf8).base64EncodedString(); $0.tlsKey = Data(encoded.key.pkcs8PEM.utf8).base64EncodedString(); $0.isDefault = true },
                    .with { $0.name = "fallback"; $0.tlsCert = absolute("certs/fallback.pem"); $0.tlsKey = absolute("certs/fallback.key") },
                    .with { $0.name = "tenants"; $0.acme = "ca"; $0.onDemand = true; $0.domains = ["*.tenants.test"]; $0.ask = ask },
                ]
            })
        }
        #expect(result.added == ["by-path", "encoded", "tenants"])
        #expect(result.changed == ["fallback"])
        let listed = try await ControlInteropTests.withControl(socket: ControlInteropTests.socket(folder)) { control in
            try await control.listCertificates(Certgate_Control_V1_ListCertificatesRequest())
        }
        let rows = Dictionary(uniqueKeysWithValues: listed.certificates.map { ($0.name, $0) })
        #expect(rows["by-path"]?.state == "expiring")
        #expect(rows["by-path"]?.domains == ["by-path.test"])
        #expect(rows["encoded"]?.isDefault == true)
        #expect(rows["fallback"]?.isDefault == false)
        #expect(rows["tenants"]?.onDemand == true && rows["tenants"]?.ask == ask)
        // The default is now the base64 entry's leaf; the path entry serves its file's.
        func served(_ name: String) async throws -> [UInt8]? {
            let connection = try await TLSProbe(group: GatewayInteropTests.group).connect(port: gateway.port, serverName: name)
            defer { Task { await connection.close() } }
            return connection.servedLeaf
        }
        #expect(try await served("unknown.test") == encoded.parsed.der)
        #expect(try await served("by-path.test") == byPath.parsed.der)
        // The remark is kept with the entry in the state.
        gateway.stop()
        let database = try DatabaseQueue(path: folder.url.appendingPathComponent("state/certgate.db").path)
        defer { try? database.close() }
        let conf = try await database.read { try String.fetchOne($0, sql: "SELECT conf FROM certificates WHERE name = 'by-path'") }
        #expect(conf?.contains("kept in the state") == true, "\(conf ?? "nil")")
    }
}
