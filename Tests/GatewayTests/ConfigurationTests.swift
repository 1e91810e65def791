import CertificateKit
import Gateway
import Testing

@Suite("Configuration file")
struct ConfigurationTests {
    @Test("certificates read with pingap's field names; domains as a string or a list; unknown keys ignored")
    func pingapFields() throws {
        let yaml = """
        listeners:
          - name: https
            listen: 127.0.0.1:8443
        future_key: whatever
        state_dir: var/state
        certificates:
          example:
            tls_cert: certs/example.pem
            tls_key: certs/example.key
            domains: "example.test, www.example.test"
            buffer_days: 14
            remark: main site
            acme: letsencrypt
          dev-ca:
            tls_cert: state/ca.pem
            tls_key: state/ca.key
            is_ca: true
            is_default: true
            domains: ["*.dev.test", "*.localhost"]
        """
        let configuration = try GatewayConfiguration.parse(yaml: yaml, file: "certgate.yaml", baseDirectory: "/etc/certgate")
        let example = try #require(configuration.certificates["example"])
        #expect(example.domains?.items == ["example.test", "www.example.test"])
        #expect(example.bufferDays == 14)
        #expect(example.remark == "main site")
        #expect(example.acme == "letsencrypt")
        let ca = try #require(configuration.certificates["dev-ca"])
        #expect(ca.isCA == true)
        #expect(ca.isDefault == true)
        #expect(ca.domains?.items == ["*.dev.test", "*.localhost"])
        #expect(configuration.stateDirectory == "var/state")
        #expect(configuration.baseDirectory == "/etc/certgate")
    }

    @Test("a wrongly typed value names its key, line and column")
    func typeErrorLocated() {
        let yaml = """
        certificates:
          example:
            tls_cert: a.pem
            is_default: perhaps
        """
        #expect {
            try GatewayConfiguration.parse(yaml: yaml, file: "c.yaml", baseDirectory: "/")
        } throws: { error in
            guard let error = error as? ConfigurationError else { return false }
            return error.key == "certificates.example.is_default" && error.line == 4 && error.reason.contains("true or false")
        }
    }

    @Test("invalid YAML names its line")
    func syntaxErrorLocated() {
        let yaml = "certificates:\n  example:\n    tls_cert: [unclosed\n"
        #expect {
            try GatewayConfiguration.parse(yaml: yaml, file: "c.yaml", baseDirectory: "/")
        } throws: { error in
            guard let error = error as? ConfigurationError else { return false }
            return error.line != nil && error.description.hasPrefix("c.yaml:") && error.reason.contains("invalid YAML")
        }
    }

    @Test("an empty file is an empty configuration")
    func emptyFile() throws {
        #expect(try GatewayConfiguration.parse(yaml: "", file: "c.yaml", baseDirectory: "/").certificates.isEmpty)
    }
}
