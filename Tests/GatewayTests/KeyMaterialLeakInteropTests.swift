import CertificateTestSupport
import Foundation
import Testing

/// A corpus of damaged keys goes through every way an operator or a script hands material
/// to certgate — `check`, `inspect`, `run` + SIGHUP, `ctl upsert`, `examples/admin.py` —
/// and no output holds a 16-character piece of the key's base64 or hex.
@Suite("No key material in any output (the real binary)", .serialized, .timeLimit(.minutes(3)))
struct KeyMaterialLeakInteropTests {
    static let authority = TestCertificate.authority(commonName: "Leak Test CA")

    func expectNoLeak(_ text: String, in corpus: DamagedKeyCorpus, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
        let piece = corpus.leakedPiece(in: text)
        #expect(piece == nil, "\(what) printed a piece of the private key: \(piece ?? "")", sourceLocation: sourceLocation)
        #expect(!text.contains("UTF8View") && !text.contains("ASN1Error") && !text.contains(".swift:"),
                "\(what) printed a library's internals", sourceLocation: sourceLocation)
    }

    func corpusFixture() throws -> (FixtureFolder, DamagedKeyCorpus) {
        let folder = try FixtureFolder()
        let corpus = DamagedKeyCorpus(authority: Self.authority)
        try corpus.write(into: folder)
        return (folder, corpus)
    }

    @Test("check names every damaged entry with certgate's reasons and quotes no key")
    func check() async throws {
        let (folder, corpus) = try corpusFixture()
        defer { folder.remove() }
        try folder.write("listeners:\n  - listen: 127.0.0.1:8443\ncertificates:\n" + corpus.certificatesYAML, to: "certgate.yaml")
        let output = try await CertgateProcess.run(["check", "--config", folder.url.appendingPathComponent("certgate.yaml").path])
        #expect(output.status == 1)
        expectNoLeak(output.stdout + output.stderr, in: corpus, "check")
        let json = try await CertgateProcess.run(["check", "--json", "--config", folder.url.appendingPathComponent("certgate.yaml").path])
        expectNoLeak(json.stdout + json.stderr, in: corpus, "check --json")

        let lines = Set(output.stdout.split(separator: "\n").map(String.init))
        let noEnd = "tls_key: not valid PEM: the PRIVATE KEY block begun on line 1 has no END line (is the file cut short?)"
        for name in ["torn-file-27", "torn-file-28", "torn-file-150", "torn-inline-64", "torn-inline-150"] {
            #expect(lines.contains("\(name): \(noEnd)"), "\(name)")
        }
        #expect(lines.contains("torn-file-10: tls_key: not valid PEM: line 1 is not a complete BEGIN line (is the file cut short?)"))
        let length = corpus.leaf.key.pkcs8PEM.utf8.count
        let lastLine = corpus.leaf.key.pkcs8PEM.split(separator: "\n").count
        #expect(lines.contains("torn-file-\(length - 1): tls_key: not valid PEM: the END line on line \(lastLine) is not complete (is the file cut short?)"))
        // The certificate's PEM has no final newline: its END line and the key's BEGIN share
        // the certificate's last line.
        #expect(lines.contains("combined-torn: tls_cert: not valid PEM: the PRIVATE KEY block begun on line \(corpus.leaf.pem.split(separator: "\n").count) has no END line (is the file cut short?)"))
        #expect(lines.contains("label-certificate: tls_key: no private key block (PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY) found (found: CERTIFICATE)"))
        #expect(lines.contains("key-as-cert: tls_cert: no CERTIFICATE block found (found: PRIVATE KEY)"))
        let hidden = "is not shown: it may be key material; base64 of DER is not accepted — give the PEM text, base64 of the whole PEM file, or a path)"
        let body = DamagedKeyCorpus.body(of: corpus.leaf.key.pkcs8PEM)
        #expect(lines.contains("base64-der: tls_key: neither PEM, nor base64 of PEM, nor an existing file (the value, \(body.count) characters, \(hidden)"))
        #expect(lines.contains("hex-der: tls_key: neither PEM, nor base64 of PEM, nor an existing file (the value, \(Data(base64Encoded: body)!.count * 2) characters, \(hidden)"))
        #expect(lines.contains("key-in-domains: domains: a value of \(body.count) characters (not shown) is not a valid DNS name (letters, digits and hyphens; labels of 1-63 octets; 253 in all)"))
        // Every damaged entry is refused, but for a changed character in the copy of the
        // public key that PKCS#8 carries after the private scalar: the key itself is intact
        // (swift-crypto derives the public key from the scalar) and matches the certificate.
        let refused = Set(output.stdout.split(separator: "\n").compactMap { $0.split(separator: ":").first.map(String.init) })
        let accepted = corpus.items.map(\.name).filter { !refused.contains($0) }
        #expect(accepted.allSatisfy { ["flip-100", "flip-130", "flip-160"].contains($0) }, "entries not refused: \(accepted)")
    }

    @Test("a key pasted into an enumerated field, a header name or a refused entry name is not quoted back")
    func keyInOtherFields() async throws {
        let folder = try FixtureFolder()
        defer { folder.remove() }
        let corpus = DamagedKeyCorpus(authority: Self.authority)
        let body = DamagedKeyCorpus.body(of: corpus.leaf.key.pkcs8PEM)
        let hex = Data(base64Encoded: body)!.map { String(format: "%02x", $0) }.joined()
        let cases: [(yaml: String, reason: String)] = [
            ("listeners:\n  - listen: 127.0.0.1:0\n    min_tls_version: \(body)\n",
             "listeners.0.min_tls_version: must be one of tls1.0, tls1.1, tls1.2, tls1.3, not a value of \(body.count) characters (not shown)"),
            ("listeners:\n  - listen: 127.0.0.1:0\nroutes:\n  - server_names: ['*']\n    upstream: 127.0.0.1:9\n    proxy_protocol: \(hex)\n",
             "routes.0.proxy_protocol: must be one of v1, v2, not a value of \(hex.count) characters (not shown)"),
            ("listeners:\n  - listen: 127.0.0.1:0\nroutes:\n  - server_names: ['*']\n    respond: { headers: { \(body): x } }\n",
             "routes.0.respond.headers.(\(body.count) characters, not shown): a header name is one or more token characters"),
            ("listeners:\n  - listen: 127.0.0.1:0\ncertificates:\n  \(hex): { tls_cert: a.pem, tls_key: a.key }\n",
             "(\(hex.count) characters, not shown): name: name longer than 253 bytes"),
        ]
        for (index, item) in cases.enumerated() {
            try folder.write(item.yaml, to: "case\(index).yaml")
            let output = try await CertgateProcess.run(["check", "--config", folder.url.appendingPathComponent("case\(index).yaml").path])
            #expect(output.status == 1)
            expectNoLeak(output.stdout + output.stderr, in: corpus, "check of case \(index)")
            #expect(output.stdout.contains(item.reason), "\(output.stdout)")
        }
    }

    @Test("inspect of each damaged file quotes no key")
    func inspect() async throws {
        let (folder, corpus) = try corpusFixture()
        defer { folder.remove() }
        for path in corpus.files.keys.sorted() where path != "corpus/leaf.pem" {
            let output = try await CertgateProcess.run(["inspect", folder.url.appendingPathComponent(path).path])
            expectNoLeak(output.stdout + output.stderr, in: corpus, "inspect \(path)")
        }
    }

    @Test("a SIGHUP with the corpus is rejected whole and its log quotes no key")
    func reload() async throws {
        let (folder, corpus) = try corpusFixture()
        defer { folder.remove() }
        let good = Self.authority.leaf(dnsNames: ["good.test"])
        try folder.write(good.pem, to: "good.pem")
        try folder.write(good.key.pkcs8PEM, to: "good.key")
        let head = """
        listeners:
          - name: https
            listen: 127.0.0.1:PORT
        routes:
          - server_names: ["*"]
            respond: { status: 200, body: "ok\\n" }
        certificates:
          good: { tls_cert: good.pem, tls_key: good.key, is_default: true }

        """
        let gateway = try await GatewayProcess(config: head, folder: folder)
        defer { gateway.stop() }
        try folder.write(head.replacingOccurrences(of: "PORT", with: String(gateway.port)) + corpus.certificatesYAML, to: "certgate.yaml")
        gateway.signal(SIGHUP)
        #expect(try await gateway.waitForLog("configuration reload rejected"))
        // The summary line counts the reasons; each follows on its own line, and every one
        // of them (source=signal) is in before the log is searched for key text.
        let summary = try #require(gateway.logText.split(separator: "\n").first { $0.contains("configuration reload rejected") })
        let count = try #require(summary.firstMatch(of: /errors=(\d+)/).flatMap { Int($0.1) })
        #expect(count >= corpus.items.count, "every damaged entry is refused")
        #expect(try await gateway.waitForLog("source=signal", occurrences: count + 1))
        expectNoLeak(gateway.logText, in: corpus, "the log of a rejected reload")
        #expect(gateway.logText.contains("torn-file-150: tls_key: not valid PEM: the PRIVATE KEY block begun on line 1 has no END line"))
    }

    @Test("ctl upsert of each damaged entry fails without quoting the key, locally or from the server")
    func ctlUpsert() async throws {
        let (folder, corpus) = try corpusFixture()
        defer { folder.remove() }
        let gateway = try await GatewayProcess(config: ControlInteropTests.config(), folder: GatewayInteropTests.fixture(into: folder))
        defer { gateway.stop() }
        let socket = ControlInteropTests.socket(folder)
        var fromServer = 0
        for item in corpus.items {
            var yaml = "certificates:\n"
            yaml += "  \(item.name):\n    tls_cert: \(DamagedKeyCorpus.yamlValue(item.tlsCert))\n"
            if let key = item.tlsKey { yaml += "    tls_key: \(DamagedKeyCorpus.yamlValue(key))\n" }
            if let domains = item.domains { yaml += "    domains: \(DamagedKeyCorpus.yamlValue(domains))\n" }
            try folder.write(yaml, to: "upsert-\(item.name).yaml")
            let output = try await CertgateProcess.run(["ctl", "--socket", socket, "upsert", folder.url.appendingPathComponent("upsert-\(item.name).yaml").path])
            #expect(output.status != 0, "\(item.name) was accepted")
            expectNoLeak(output.stdout + output.stderr, in: corpus, "ctl upsert \(item.name)")
            if output.stderr.contains("invalidArgument: ") { fromServer += 1 }
        }
        // Most entries reach the server (the rest cannot be read by ctl itself).
        #expect(fromServer >= 25, "only \(fromServer) updates reached the server")
        expectNoLeak(gateway.logText, in: corpus, "the gateway's log of refused updates")
        #expect(gateway.logText.contains("certificate update refused"))
    }

    @Test("examples/admin.py upsert of damaged keys fails without quoting the key")
    func adminScript() async throws {
        let probe = try await runTool("/usr/bin/env", ["python3", "-c", "import grpc, grpc_tools"])
        try #require(probe.status == 0, "python3 with grpcio and grpcio-tools is needed (pip install grpcio grpcio-tools): \(probe.output)")
        let (folder, corpus) = try corpusFixture()
        defer { folder.remove() }
        let gateway = try await GatewayProcess(config: ControlInteropTests.config(), folder: GatewayInteropTests.fixture(into: folder))
        defer { gateway.stop() }
        let socket = ControlInteropTests.socket(folder)
        for key in ["corpus/torn-150.key", "corpus/torn-93.key", "corpus/flip-20.key", "corpus/public.key", "corpus/torn-sec1.key"] {
            let output = try await runTool("/usr/bin/env", [
                "python3", AdminScriptInteropTests.script, "--socket", socket, "upsert", "damaged",
                "--cert", folder.url.appendingPathComponent("corpus/leaf.pem").path, "--key", folder.url.appendingPathComponent(key).path,
            ])
            #expect(output.status == 1, "\(key): \(output.output)")
            #expect(output.output.contains("INVALID_ARGUMENT") && output.output.contains("damaged: tls_key"), "\(key): \(output.output)")
            expectNoLeak(output.output, in: corpus, "admin.py upsert \(key)")
        }
    }

    @Test("a YAML error beside an inline key names the line, never the key's text")
    func yamlErrorNearInlineKey() async throws {
        let folder = try FixtureFolder()
        defer { folder.remove() }
        let corpus = DamagedKeyCorpus(authority: Self.authority)
        let keyLines = corpus.leaf.key.pkcs8PEM.split(separator: "\n").map(String.init)
        // The third line of the block is indented less than the block: it ends the literal
        // and stands alone as a key without a value.
        var yaml = "listeners:\n  - listen: 127.0.0.1:8443\ncertificates:\n  inline:\n    tls_cert: corpus/leaf.pem\n    tls_key: |\n"
        yaml += "      \(keyLines[0])\n      \(keyLines[1])\n   \(keyLines[2])\n      \(keyLines[3])\n"
        try folder.write(yaml, to: "certgate.yaml")
        let output = try await CertgateProcess.run(["check", "--config", folder.url.appendingPathComponent("certgate.yaml").path])
        #expect(output.status == 1)
        expectNoLeak(output.stdout + output.stderr, in: corpus, "check of broken YAML")
        #expect(output.stdout.contains("certgate.yaml:9:"), "\(output.stdout)")
        // A tab inside the block.
        var tabbed = "certificates:\n  inline:\n    tls_key: |\n      \(keyLines[0])\n\t\(keyLines[1])\n"
        tabbed += "      \(keyLines[2])\n"
        try folder.write(tabbed, to: "tabbed.yaml")
        let second = try await CertgateProcess.run(["check", "--config", folder.url.appendingPathComponent("tabbed.yaml").path])
        #expect(second.status == 1)
        expectNoLeak(second.stdout + second.stderr, in: corpus, "check of YAML with a tab")
    }
}
