import CertificateTestSupport
import Foundation
import SwiftASN1
import Testing
import X509

/// Bad input through the real binary: `check` refuses what `run` refuses, with the same
/// reasons; numbers out of range never trap; chains and issued leaves are ones every client
/// accepts; updates that leave clients without a certificate are applied with a warning.
@Suite("Bad input (the real binary)", .timeLimit(.minutes(2)))
struct BadInputInteropTests {
    static let root = TestCertificate.authority(commonName: "Bad Input Root")
    static let intermediate = root.intermediate(commonName: "Bad Input Intermediate")
    /// The root's certificate and key as base64 of PEM: one line each, for YAML written inline.
    static let rootBase64 = (cert: Data(root.pem.utf8).base64EncodedString(), key: Data(root.key.pkcs8PEM.utf8).base64EncodedString())

    /// A listener on PORT, a responder for every name, and these `certificates:` entries.
    static func config(certificates entries: [String]) -> String {
        "listeners:\n  - listen: 127.0.0.1:PORT\nroutes:\n  - server_names: [\"*\"]\n    respond: { status: 200 }\ncertificates:\n"
            + entries.map { "  \($0)\n" }.joined()
    }

    func checkAndRun(_ yaml: String) async throws -> (check: CertgateProcess.Output, run: CertgateProcess.Output) {
        let folder = try FixtureFolder()
        defer { folder.remove() }
        try folder.write(yaml, to: "certgate.yaml")
        let path = folder.url.appendingPathComponent("certgate.yaml").path
        return (try await CertgateProcess.run(["check", "--config", path]), try await CertgateProcess.run(["run", "--config", path]))
    }

    @Test("check and run refuse alike, exit 1 with the same reason", arguments: [
        // An empty file.
        ("", "listeners: no listeners: certgate run has nothing to serve (add one, e.g. '- listen: 127.0.0.1:8443')"),
        // A mistyped key: its line and the key meant.
        ("listeners:\n  - listen: 127.0.0.1:0\nshutdown_timout: 5s\n",
         "certgate.yaml:3:1: shutdown_timout: unknown key; did you mean 'shutdown_timeout'?"),
        // A duration past 64 bits: the limit, no arithmetic trap.
        ("listeners:\n  - listen: 127.0.0.1:0\nshutdown_timeout: 106751991167301d\n",
         "certgate.yaml:3:19: shutdown_timeout: '106751991167301d' is longer than any setting allows (at most 3650d)"),
        // A state_dir that is a file (here the configuration itself).
        ("listeners:\n  - listen: 127.0.0.1:0\nstate_dir: certgate.yaml\n", "certgate.yaml exists and is not a folder"),
        // Leaves longer-lived than browsers take.
        ("listeners:\n  - listen: 127.0.0.1:0\ncertificates:\n  ca: { tls_cert: \(Self.rootBase64.cert), tls_key: \(Self.rootBase64.key), is_ca: true, domains: '*', leaf_validity_days: 398 }\n",
         "ca: leaf_validity_days: must be 1 to 397 days, not 398 (browsers refuse TLS leaves valid for more than 398 days)"),
    ])
    func checkAndRunAgree(yaml: String, reason: String) async throws {
        let (check, run) = try await checkAndRun(yaml)
        #expect(check.status == 1)
        #expect(check.stdout.contains(reason), "\(check.stdout)")
        #expect(run.status == 1)
        #expect(run.stderr.contains(reason), "\(run.stderr)")
    }

    @Test("ctl upsert of a file that does not load exits 1 with the reason (not a usage error)")
    func ctlBrokenFile() async throws {
        let folder = try FixtureFolder()
        defer { folder.remove() }
        try folder.write("certificates:\n  a:\n    tls_kye: a.key\n", to: "broken.yaml")
        let output = try await CertgateProcess.run(["ctl", "--socket", folder.url.appendingPathComponent("none.sock").path,
                                              "upsert", folder.url.appendingPathComponent("broken.yaml").path])
        #expect(output.status == 1)
        #expect(output.stderr.contains("broken.yaml:3:5: certificates.a.tls_kye: unknown key; did you mean 'tls_key'?"), "\(output.stderr)")
    }

    @Test("a listener port that is taken: run exits 1 with the reason, no trap")
    func portTaken() async throws {
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        let first = try await GatewayProcess(config: GatewayInteropTests.config(), folder: folder)
        defer { first.stop() }
        try folder.write(GatewayInteropTests.config().replacingOccurrences(of: "PORT", with: String(first.port)) + "state_dir: state2\n", to: "second.yaml")
        let second = try await CertgateProcess.run(["run", "--config", folder.url.appendingPathComponent("second.yaml").path])
        #expect(second.status == 1, "\(second.stderr)")
        #expect(second.stderr.contains("listener https: cannot listen on 127.0.0.1:\(first.port)"), "\(second.stderr)")
        #expect(!second.stderr.contains("Fatal error"))
    }

    @Test("the shipped configuration passes check on a fresh checkout; check creates nothing (run creates the local CA)")
    func shippedConfiguration() async throws {
        let folder = try FixtureFolder()
        defer { folder.remove() }
        try FileManager.default.copyItem(
            at: CertgateProcess.packageRoot.appendingPathComponent("config/certgate.yaml"),
            to: folder.url.appendingPathComponent("certgate.yaml"))
        let check = try await CertgateProcess.run(["check", "--config", folder.url.appendingPathComponent("certgate.yaml").path])
        #expect(check.status == 0, "\(check.stdout)")
        #expect(check.stdout.contains("configuration is valid"))
        let created = try FileManager.default.subpathsOfDirectory(atPath: folder.url.path).filter { $0.hasSuffix(".pem") || $0.hasSuffix(".key") }
        #expect(created.isEmpty, "\(created)")
    }

    /// The certificates a TLS server sends, read with `openssl s_client -showcerts`.
    static func servedChain(port: Int, serverName: String, caFile: String) async throws -> (chain: [Certificate], output: String) {
        let (_, output) = try await runTool("/usr/bin/openssl", [
            "s_client", "-connect", "127.0.0.1:\(port)", "-servername", serverName, "-showcerts",
            "-CAfile", caFile, "-verify_hostname", serverName, "-verify_return_error",
        ], input: Data("Q\n".utf8))
        let documents = (try? PEMDocument.parseMultiple(pemString: output)) ?? []
        return (try documents.map { try Certificate(pemDocument: $0) }, output)
    }

    @Test("leaf + intermediate + root + root: check warns twice, the handshake sends leaf and intermediate")
    func chainHygiene() async throws {
        let folder = try FixtureFolder()
        defer { folder.remove() }
        let leaf = Self.intermediate.leaf(dnsNames: ["chain.test"])
        try folder.write([leaf, Self.intermediate, Self.root, Self.root].map { $0.pem + "\n" }.joined(), to: "chain.pem")
        try folder.write(leaf.key.pkcs8PEM, to: "chain.key")
        try folder.write(Self.root.pem, to: "root.pem")
        let config = Self.config(certificates: ["chain: { tls_cert: chain.pem, tls_key: chain.key }"])
        try folder.write(config.replacingOccurrences(of: "PORT", with: "0"), to: "check.yaml")
        let check = try await CertgateProcess.run(["check", "--config", folder.url.appendingPathComponent("check.yaml").path])
        #expect(check.status == 0, "\(check.stdout)")
        #expect(check.stdout.contains("chain: warning: certificate 4 is the same as certificate 3 (CN=Bad Input Root); it is sent once"))
        #expect(check.stdout.contains("chain: warning: certificate 3 (CN=Bad Input Root) is a self-signed root; it is not sent (clients use their own trust store)"))

        let gateway = try await GatewayProcess(config: config, folder: folder)
        defer { gateway.stop() }
        let (chain, output) = try await Self.servedChain(port: gateway.port, serverName: "chain.test", caFile: folder.url.appendingPathComponent("root.pem").path)
        #expect(output.contains("Verify return code: 0 (ok)"), "\(output)")
        #expect(chain == [leaf.certificate, Self.intermediate.certificate])
    }

    @Test("an issued leaf for a 69-character name: the name in a critical SAN, no CN; openssl verifies it")
    func longIssuedName() async throws {
        let folder = try FixtureFolder()
        defer { folder.remove() }
        let ca = TestCertificate.authority(commonName: "Long Name CA")
        try folder.write(ca.pem, to: "ca.pem")
        try folder.write(ca.key.pkcs8PEM, to: "ca.key")
        let config = Self.config(certificates: ["dev-ca: { tls_cert: ca.pem, tls_key: ca.key, is_ca: true, is_default: true, domains: '*' }"])
        let gateway = try await GatewayProcess(config: config, folder: folder)
        defer { gateway.stop() }
        let name = String(repeating: "a", count: 60) + ".dyn.test"
        #expect(name.count == 69)
        let (chain, output) = try await Self.servedChain(port: gateway.port, serverName: name, caFile: folder.url.appendingPathComponent("ca.pem").path)
        #expect(output.contains("Verify return code: 0 (ok)"), "\(output)")
        let leaf = try #require(chain.first)
        #expect(Array(leaf.subject).isEmpty)
        #expect(leaf.extensions[oid: .X509ExtensionID.subjectAlternativeName]?.critical == true)
        #expect(try leaf.extensions.subjectAlternativeNames == SubjectAlternativeNames([.dnsName(name)]))
    }

    @Test("a key with explicit curve parameters equal to a named curve loads as that curve and serves; others are refused", arguments: [
        ("prime256v1", true), ("secp384r1", true), ("secp521r1", true), ("secp256k1", false), ("brainpoolP256r1", false),
    ])
    func explicitCurveParameters(curve: String, loads: Bool) async throws {
        let folder = try FixtureFolder()
        defer { folder.remove() }
        func openssl(_ arguments: [String]) async throws {
            let result = try await runTool("/usr/bin/openssl", arguments)
            try #require(result.status == 0, "openssl \(arguments.joined(separator: " ")): \(result.output)")
        }
        let path = { (name: String) in folder.url.appendingPathComponent(name).path }
        try await openssl(["ecparam", "-name", curve, "-genkey", "-param_enc", "explicit", "-out", path("explicit.key")])
        try await openssl(["pkcs8", "-topk8", "-nocrypt", "-in", path("explicit.key"), "-out", path("explicit-pkcs8.key")])
        try await openssl(["ec", "-in", path("explicit.key"), "-param_enc", "named_curve", "-out", path("named.key")])
        try await openssl(["req", "-new", "-x509", "-key", path("named.key"), "-subj", "/CN=explicit.test",
                     "-addext", "subjectAltName=DNS:explicit.test", "-days", "30", "-out", path("named.pem")])
        try await openssl(["req", "-new", "-x509", "-key", path("explicit.key"), "-subj", "/CN=explicit.test",
                     "-addext", "subjectAltName=DNS:explicit.test", "-days", "30", "-out", path("explicit.pem")])
        let config = Self.config(certificates: [
            "sec1: { tls_cert: named.pem, tls_key: explicit.key, domains: sec1.explicit.test, is_default: true }",
            "pkcs8: { tls_cert: named.pem, tls_key: explicit-pkcs8.key, domains: pkcs8.explicit.test }",
        ])
        try folder.write(config.replacingOccurrences(of: "PORT", with: "0"), to: "check.yaml")
        let check = try await CertgateProcess.run(["check", "--config", path("check.yaml")])
        let refusal = "the key uses explicit EC curve parameters that are not P-256, P-384 or P-521; certgate takes named curves (convert it: openssl ec -in KEY -param_enc named_curve -out KEY)"
        if loads {
            #expect(check.status == 0, "\(check.stdout)")
            let gateway = try await GatewayProcess(config: config, folder: folder)
            defer { gateway.stop() }
            // named.pem is self-signed for explicit.test; the entry serves it for pkcs8.explicit.test too.
            let (status, output) = try await runTool("/usr/bin/openssl", [
                "s_client", "-connect", "127.0.0.1:\(gateway.port)", "-servername", "pkcs8.explicit.test", "-CAfile", path("named.pem"), "-showcerts",
            ], input: Data("Q\n".utf8))
            #expect(status == 0 && output.contains("Verify return code: 0 (ok)"), "\(output)")
            let served = try PEMDocument.parseMultiple(pemString: output).map { try Certificate(pemDocument: $0) }
            #expect(served == [try Certificate(pemEncoded: String(contentsOfFile: path("named.pem"), encoding: .utf8))])
        } else {
            #expect(check.status == 1)
            #expect(check.stdout.contains("sec1: tls_key: \(refusal)"), "\(check.stdout)")
            #expect(check.stdout.contains("pkcs8: tls_key: \(refusal)"), "\(check.stdout)")
        }
        // A certificate whose own public key states explicit parameters is refused with RFC 5480's rule.
        try folder.write("listeners:\n  - listen: 127.0.0.1:0\ncertificates:\n  cert: { tls_cert: explicit.pem, tls_key: named.key }\n", to: "cert.yaml")
        let certificate = try await CertgateProcess.run(["check", "--config", path("cert.yaml")])
        #expect(certificate.status == 1)
        #expect(certificate.stdout.contains("cert: tls_cert: certificate cannot be parsed: its public key states explicit EC curve parameters, which RFC 5480 §2.1.1 forbids"), "\(certificate.stdout)")
    }

    @Test("ctl delete of the default entry is applied, and ctl and the log say what clients lose")
    func deleteDefaultWarns() async throws {
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        let gateway = try await GatewayProcess(config: ControlInteropTests.config(), folder: folder)
        defer { gateway.stop() }
        let output = try await CertgateProcess.run(["ctl", "--socket", ControlInteropTests.socket(folder), "delete", "fallback"])
        #expect(output.status == 0, "\(output.stderr)")
        let warning = "the default entry is removed and no other is the default: clients without SNI, or asking for a name no entry serves, now fail the handshake"
        #expect(output.stdout.contains("warning: fallback: is_default: \(warning)"), "\(output.stdout)")
        #expect(try await gateway.waitForLog(warning))
    }
}
