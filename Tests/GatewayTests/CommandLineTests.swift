import CertificateTestSupport
import Foundation
import Testing
import X509

@Suite("certgate check and inspect (the real binary)", .timeLimit(.minutes(3)))
struct CommandLineTests {
    static let authority = TestCertificate.authority(commonName: "Fixture CA")

    func validFixture() throws -> FixtureFolder {
        let folder = try FixtureFolder()
        let site = Self.authority.leaf(dnsNames: ["example.test", "www.example.test"])
        let wild = Self.authority.leaf(dnsNames: ["*.apps.test"])
        try folder.write(site.pem, to: "certs/site.pem")
        try folder.write(site.key.sec1PEM!, to: "certs/site.key")
        try folder.write("""
        listeners:
          - listen: 127.0.0.1:8443
        certificates:
          site:
            tls_cert: certs/site.pem
            tls_key: certs/site.key
            buffer_days: 14
          apps:
            tls_cert: |
        \(wild.pem.split(separator: "\n").map { "      " + $0 }.joined(separator: "\n"))
            tls_key: \(Data(wild.key.pkcs8PEM.utf8).base64EncodedString())
            is_default: true
        """, to: "certgate.yaml")
        return folder
    }

    @Test("check on a valid config prints a row per entry and exits 0")
    func checkValid() async throws {
        let folder = try validFixture()
        defer { folder.remove() }
        let output = try await CertgateProcess.run(["check", "--config", folder.url.appendingPathComponent("certgate.yaml").path])
        #expect(output.status == 0, "\(output.stdout)\(output.stderr)")
        let lines = output.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first?.hasPrefix("NAME") == true)
        let site = try #require(lines.first { $0.hasPrefix("site ") })
        #expect(site.contains("example.test,www.example.test"))
        #expect(site.contains("static"))
        #expect(site.contains("Fixture CA"))
        #expect(site.contains(" 89 ") || site.contains(" 90 "))
        let apps = try #require(lines.first { $0.hasPrefix("apps ") })
        #expect(apps.contains("default"))
        #expect(apps.contains("*.apps.test"))
        #expect(output.stdout.contains("configuration is valid: 2 certificates"))
    }

    @Test("check --json gives the same facts to machines")
    func checkJSON() async throws {
        let folder = try validFixture()
        defer { folder.remove() }
        let output = try await CertgateProcess.run(["check", "--json", "--config", folder.url.appendingPathComponent("certgate.yaml").path])
        #expect(output.status == 0)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(output.stdout.utf8)) as? [String: Any])
        #expect(object["valid"] as? Bool == true)
        let rows = try #require(object["certificates"] as? [[String: Any]])
        #expect(rows.map { $0["name"] as? String } == ["apps", "site"])
        #expect(rows[1]["kind"] as? String == "static")
        #expect(rows[1]["state"] as? String == "ok")
        #expect(rows[1]["issuer"] as? String == "Fixture CA")
        #expect((rows[1]["days_left"] as? Int).map { (88...90).contains($0) } == true)
        #expect(rows[0]["is_default"] as? Bool == true)
    }

    @Test("check names each entry's kind and validity state: issuer+default for a CA that is also the default; expiring within buffer_days, expired, not yet valid — in the table and as JSON")
    func checkKindsAndStates() async throws {
        let folder = try FixtureFolder()
        defer { folder.remove() }
        // Days left a few hours clear of a whole day, so that the check's own clock cannot
        // move them across one.
        let day: TimeInterval = 86_400
        let now = Date()
        let authority = TestCertificate.authority(commonName: "States CA", notAfter: now.addingTimeInterval(100.3 * day))
        let leaves: [(String, TestCertificate)] = [
            ("soon", authority.leaf(dnsNames: ["soon.test"], notAfter: now.addingTimeInterval(3.3 * day))),
            ("old", authority.leaf(dnsNames: ["old.test"], notBefore: now.addingTimeInterval(-10 * day), notAfter: now.addingTimeInterval(-1.7 * day))),
            ("later", authority.leaf(dnsNames: ["later.test"], notBefore: now.addingTimeInterval(2 * day), notAfter: now.addingTimeInterval(90.3 * day))),
        ]
        var yaml = "listeners:\n  - listen: 127.0.0.1:8443\ncertificates:\n"
        yaml += "  ca: { tls_cert: certs/ca.pem, tls_key: certs/ca.key, is_ca: true, is_default: true, domains: \"*.dev.test\" }\n"
        try folder.write(authority.pem, to: "certs/ca.pem")
        try folder.write(authority.key.pkcs8PEM, to: "certs/ca.key")
        for (name, leaf) in leaves {
            try folder.write(leaf.pem, to: "certs/\(name).pem")
            try folder.write(leaf.key.pkcs8PEM, to: "certs/\(name).key")
            yaml += "  \(name): { tls_cert: certs/\(name).pem, tls_key: certs/\(name).key }\n"
        }
        try folder.write(yaml, to: "certgate.yaml")
        let json = try await CertgateProcess.run(["check", "--json", "--config", folder.url.appendingPathComponent("certgate.yaml").path])
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any], "\(json.stdout)\(json.stderr)")
        let rows = try #require(object["certificates"] as? [[String: Any]])
        // JSON says the kind and whether it is the default apart; the table joins them.
        let facts = rows.map {
            [$0["name"] as? String ?? "?", $0["kind"] as? String ?? "?", String(describing: $0["is_default"] as? Bool ?? false), $0["state"] as? String ?? "?",
             ($0["days_left"] as? Int).map(String.init) ?? "-"]
        }
        #expect(facts == [
            ["ca", "issuer", "true", "ok", "100"], ["later", "static", "false", "not_yet_valid", "90"],
            ["old", "static", "false", "expired", "-2"], ["soon", "static", "false", "expiring", "3"],
        ], "\(json.stdout)")
        let table = try await CertgateProcess.run(["check", "--config", folder.url.appendingPathComponent("certgate.yaml").path])
        let cells = table.stdout.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init) }
        for (name, kind, state) in [("ca", "issuer+default", "ok"), ("later", "static", "not_yet_valid"), ("old", "static", "expired"), ("soon", "static", "expiring")] {
            let row = try #require(cells.first { $0.first == name }, "\(table.stdout)")
            #expect(row.count >= 6 && row[1] == kind && row[5] == state, "\(row)")
        }
        #expect(json.status == table.status)
    }

    @Test("check on an invalid config prints every error as entry: field: reason and exits 1")
    func checkInvalid() async throws {
        let folder = try FixtureFolder()
        defer { folder.remove() }
        let site = Self.authority.leaf(dnsNames: ["example.test"])
        try folder.write(site.pem, to: "certs/site.pem")
        try folder.write(TestKey.make().pkcs8PEM, to: "certs/other.key")
        try folder.write("""
        listeners:
          - listen: 127.0.0.1:8443
        certificates:
          mismatched:
            tls_cert: certs/site.pem
            tls_key: certs/other.key
          missing:
            tls_cert: certs/nope.pem
            tls_key: certs/other.key
        """, to: "certgate.yaml")
        let output = try await CertgateProcess.run(["check", "--config", folder.url.appendingPathComponent("certgate.yaml").path])
        #expect(output.status == 1)
        #expect(output.stdout.contains("mismatched: tls_key: the private key does not match the certificate"))
        #expect(output.stdout.contains("missing: tls_cert: "))
        #expect(output.stdout.contains("configuration is invalid: 2 errors"))
    }

    @Test("check on a broken YAML file names the line and exits 1")
    func checkBrokenYAML() async throws {
        let folder = try FixtureFolder()
        defer { folder.remove() }
        try folder.write("certificates:\n  a:\n    is_default: maybe\n", to: "certgate.yaml")
        let output = try await CertgateProcess.run(["check", "--config", folder.url.appendingPathComponent("certgate.yaml").path])
        #expect(output.status == 1)
        #expect(output.stdout.contains("certgate.yaml:3:"))
        #expect(output.stdout.contains("certificates.a.is_default"))
    }

    @Test("check lists acme entries after its verdict: one obtained from its CA when certgate runs, an on-demand one as a certificate for each name at its first handshake")
    func checkListsACMEEntries() async throws {
        let folder = try FixtureFolder()
        defer { folder.remove() }
        try folder.write("""
            listeners:
              - listen: 127.0.0.1:8443
            acme:
              pebble: { directory: "https://127.0.0.1:14000/dir" }
            certificates:
              site: { acme: pebble, domains: [site.test, www.site.test] }
              customers: { acme: pebble, domains: ["*.customers.test"], on_demand: true }

            """, to: "certgate.yaml")
        let output = try await CertgateProcess.run(["check", "--config", folder.url.appendingPathComponent("certgate.yaml").path])
        #expect(output.status == 0, "\(output.stdout)\(output.stderr)")
        #expect(output.stdout == """
            configuration is valid: 0 certificates
            customers: on demand from pebble by ACME: a certificate for each name its patterns take, at the name's first handshake
            site: obtained from pebble by ACME when certgate runs

            """)
    }

    @Test("check reads config/certgate.yaml from the working folder by default")
    func checkDefaultPath() async throws {
        let folder = try validFixture()
        defer { folder.remove() }
        try FileManager.default.createDirectory(at: folder.url.appendingPathComponent("config/certs"), withIntermediateDirectories: true)
        for file in ["certgate.yaml", "certs/site.pem", "certs/site.key"] {
            try FileManager.default.copyItem(at: folder.url.appendingPathComponent(file), to: folder.url.appendingPathComponent("config/" + file))
        }
        let output = try await CertgateProcess.run(["check"], in: folder.url)
        #expect(output.status == 0, "\(output.stdout)\(output.stderr)")
    }

    @Test("inspect prints a certificate's facts and the served chain")
    func inspectLeaf() async throws {
        let folder = try FixtureFolder()
        defer { folder.remove() }
        let leaf = Self.authority.leaf(dnsNames: ["inspect.test"], ipAddresses: ["127.0.0.1"])
        try folder.write(leaf.pem, to: "leaf.pem")
        let output = try await CertgateProcess.run(["inspect", folder.url.appendingPathComponent("leaf.pem").path])
        #expect(output.status == 0, "\(output.stderr)")
        #expect(output.stdout.contains("CN=inspect.test"))
        #expect(output.stdout.contains("inspect.test"))
        #expect(output.stdout.contains("127.0.0.1"))
        #expect(output.stdout.contains("ECDSA P-256"))
        #expect(output.stdout.contains("served chain:"))
        #expect(output.stdout.contains("0: CN=inspect.test"))
    }

    @Test("inspect completes a Let's Encrypt chain from the bundled certificates")
    func inspectLetsEncrypt() async throws {
        let ye1 = CertgateProcess.packageRoot.appendingPathComponent("Sources/CertificateKit/Resources/letsencrypt/ye1.pem")
        let output = try await CertgateProcess.run(["inspect", "--json", ye1.path])
        #expect(output.status == 0, "\(output.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(output.stdout.utf8)) as? [String: Any])
        #expect(object["chain_completed"] as? Bool == true)
        let chain = try #require(object["served_chain"] as? [String])
        #expect(chain.count == 3)
        #expect(chain[0].contains("CN=YE1"))
        #expect(chain[1].contains("CN=Root YE"))
        #expect(chain[2].contains("CN=ISRG Root X2"))
    }

    @Test("inspect of a file without a certificate fails with a reason")
    func inspectNotACertificate() async throws {
        let folder = try FixtureFolder()
        defer { folder.remove() }
        try folder.write(TestKey.make().pkcs8PEM, to: "key.pem")
        let output = try await CertgateProcess.run(["inspect", folder.url.appendingPathComponent("key.pem").path])
        #expect(output.status == 1)
        #expect(output.stderr.contains("no CERTIFICATE block found"))
    }

    @Test("ca init makes a P-256 CA (CA:TRUE, pathlen 0, keyCertSign; key 0600) and refuses to overwrite it")
    func caInit() async throws {
        let folder = try FixtureFolder()
        defer { folder.remove() }
        let out = folder.url.appendingPathComponent("ca").path
        let first = try await CertgateProcess.run(["ca", "init", "--out", out, "--name", "Test Local CA", "--days", "30"])
        #expect(first.status == 0, "\(first.stderr)")
        let keyAttributes = try FileManager.default.attributesOfItem(atPath: out + "/ca.key")
        #expect((keyAttributes[.posixPermissions] as? Int) == 0o600)
        let (status, text) = try await runTool("/usr/bin/openssl", ["x509", "-in", out + "/ca.pem", "-noout", "-text"])
        #expect(status == 0)
        #expect(text.contains("CA:TRUE, pathlen:0"))
        #expect(text.contains("Certificate Sign"))
        #expect(try Certificate(pemEncoded: String(contentsOfFile: out + "/ca.pem", encoding: .utf8)).subject.commonName == "Test Local CA")
        #expect(text.contains("prime256v1") || text.contains("P-256"))
        // It loads as an issuer entry.
        try folder.write("listeners:\n  - listen: 127.0.0.1:8443\ncertificates:\n  ca: { tls_cert: ca/ca.pem, tls_key: ca/ca.key, is_ca: true, domains: '*.dev.test' }\n", to: "certgate.yaml")
        let check = try await CertgateProcess.run(["check", "--config", folder.url.appendingPathComponent("certgate.yaml").path])
        #expect(check.status == 0, "\(check.stdout)")
        #expect(check.stdout.contains("issuer"))
        let second = try await CertgateProcess.run(["ca", "init", "--out", out])
        #expect(second.status == 1)
        #expect(second.stderr.contains("refusing to overwrite"))
    }
}
