import CertificateTestSupport
import Foundation
import Testing

/// `examples/admin.py` — Python `grpcio`, the .proto compiled at run time — against the
/// real binary: the "admin scripts over the Unix socket" use case.
@Suite("examples/admin.py (Python grpcio against the real binary)", .serialized, .timeLimit(.minutes(3)))
struct AdminScriptInteropTests {
    static var script: String { CertgateProcess.packageRoot.appendingPathComponent("examples/admin.py").path }

    func admin(_ arguments: [String], socket: String, in folder: FixtureFolder) async throws -> (status: Int32, output: String) {
        try await runTool("/usr/bin/env", ["python3", Self.script, "--socket", socket] + arguments)
    }

    @Test("status, list, upsert (served to new handshakes), a refused upsert exits 1 with the reason, delete; upsert --domains serves those of the leaf's names only")
    func adminScript() async throws {
        let probe = try await runTool("/usr/bin/env", ["python3", "-c", "import grpc, grpc_tools"])
        try #require(probe.status == 0, "python3 with grpcio and grpcio-tools is needed (pip install grpcio grpcio-tools): \(probe.output)")
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        let socket = ControlInteropTests.socket(folder)
        let gateway = try await GatewayProcess(config: ControlInteropTests.config(), folder: folder)
        defer { gateway.stop() }

        let status = try await admin(["status"], socket: socket, in: folder)
        #expect(status.status == 0, "\(status.output)")
        #expect(status.output.contains("generation 0, 4 certificates"))

        let shop = GatewayInteropTests.authority.leaf(dnsNames: ["shop.test"])
        try folder.write(shop.pem, to: "shop.pem")
        try folder.write(shop.key.pkcs8PEM, to: "shop.key")
        let upsert = try await admin(["upsert", "shop", "--cert", folder.url.appendingPathComponent("shop.pem").path,
                                "--key", folder.url.appendingPathComponent("shop.key").path, "--expect-generation", "0"],
                               socket: socket, in: folder)
        #expect(upsert.status == 0, "\(upsert.output)")
        #expect(upsert.output.contains("generation 1") && upsert.output.contains("added: shop"))
        #expect(try await servedCommonName(port: gateway.port, serverName: "shop.test", folder: folder).cn == "shop.test")

        let list = try await admin(["list"], socket: socket, in: folder)
        #expect(list.status == 0)
        let shopLine = try #require(list.output.split(separator: "\n").first { $0.hasPrefix("shop\t") })
        #expect(shopLine.contains("shop.test") && shopLine.contains(shop.parsed.sha256Fingerprint))

        // A key that does not match: refused, exit 1, the server's reason printed; nothing changed.
        let refused = try await admin(["upsert", "broken", "--cert", folder.url.appendingPathComponent("shop.pem").path,
                                 "--key", folder.url.appendingPathComponent("certs/exact.key").path], socket: socket, in: folder)
        #expect(refused.status == 1)
        #expect(refused.output.contains("INVALID_ARGUMENT") && refused.output.contains("broken: tls_key"))

        let stale = try await admin(["delete", "shop", "--expect-generation", "0"], socket: socket, in: folder)
        #expect(stale.status == 1 && stale.output.contains("FAILED_PRECONDITION"))
        let delete = try await admin(["delete", "shop"], socket: socket, in: folder)
        #expect(delete.status == 0 && delete.output.contains("removed: shop"))
        await #expect(try admin(["status"], socket: socket, in: folder).output.contains("generation 2, 4 certificates"))

        // --domains: the entry serves those of its leaf's names only.
        let both = GatewayInteropTests.authority.leaf(dnsNames: ["both.test", "www.both.test"])
        try folder.write(both.pem, to: "both.pem")
        try folder.write(both.key.pkcs8PEM, to: "both.key")
        let narrowed = try await admin(["upsert", "both", "--cert", folder.url.appendingPathComponent("both.pem").path,
                                        "--key", folder.url.appendingPathComponent("both.key").path, "--domains", "www.both.test"], socket: socket, in: folder)
        #expect(narrowed.status == 0, "\(narrowed.output)")
        let bothLine = try #require(try await admin(["list"], socket: socket, in: folder).output.split(separator: "\n").first { $0.hasPrefix("both\t") })
        #expect(bothLine.split(separator: "\t").contains("www.both.test"), "\(bothLine)")
        #expect(try await servedCommonName(port: gateway.port, serverName: "www.both.test", folder: folder).cn == "both.test")
        #expect(try await servedCommonName(port: gateway.port, serverName: "both.test", folder: folder).cn == "fallback.test")
    }
}
