import CertificateKit
import Gateway
import Testing

@Suite("Configuration file", .timeLimit(.minutes(2)))
struct ConfigurationTests {
    @Test("certificates read with pingap's field names; domains as a string or a list")
    func pingapFields() throws {
        let yaml = """
        listeners:
          - name: https
            listen: 127.0.0.1:8443
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
            guard let error = (error as? ConfigurationErrors)?.errors.first else { return false }
            return error.key == "certificates.example.is_default" && error.line == 4 && error.reason.contains("true or false")
        }
    }

    @Test("invalid YAML names its line")
    func syntaxErrorLocated() {
        let yaml = "certificates:\n  example:\n    tls_cert: [unclosed\n"
        #expect {
            try GatewayConfiguration.parse(yaml: yaml, file: "c.yaml", baseDirectory: "/")
        } throws: { error in
            guard let error = (error as? ConfigurationErrors)?.errors.first else { return false }
            return error.line != nil && error.description.hasPrefix("c.yaml:") && error.reason.contains("invalid YAML")
        }
    }

    @Test("an empty file is an empty configuration")
    func emptyFile() throws {
        #expect(try GatewayConfiguration.parse(yaml: "", file: "c.yaml", baseDirectory: "/").certificates.isEmpty)
    }
}

@Suite("Configuration: listeners and routes", .timeLimit(.minutes(2)))
struct ListenerAndRouteConfigurationTests {
    @Test("listeners and routes read with their defaults")
    func readsListenersAndRoutes() throws {
        let yaml = """
        log_level: debug
        shutdown_timeout: 5s
        listeners:
          - name: https
            listen: 127.0.0.1:8443
            alpn: [h2, http/1.1]
            min_tls_version: tls1.3
            handshake_timeout: 500ms
          - listen: "[::1]:9443"
        routes:
          - server_names: ["api.example.test", "*.apps.example.test"]
            upstream: 127.0.0.1:9000
            proxy_protocol: v2
          - server_names: ["*"]
            respond: { status: 404, headers: { x-served: "{sni}" }, body: "certgate is serving {sni}\\n" }
        """
        let configuration = try GatewayConfiguration.parse(yaml: yaml, file: "c.yaml", baseDirectory: "/")
        #expect(configuration.logLevel == .debug)
        #expect(configuration.shutdownTimeout.duration == .seconds(5))
        #expect(configuration.listeners.count == 2)
        let https = configuration.listeners[0]
        #expect(https.listen == HostAndPort(host: "127.0.0.1", port: 8443))
        #expect(https.alpn == ["h2", "http/1.1"])
        #expect(https.minTLSVersion == .tls1_3)
        #expect(https.handshakeTimeout.duration == .milliseconds(500))
        let second = configuration.listeners[1]
        #expect(second.name == "[::1]:9443")
        #expect(second.listen.host == "::1")
        #expect(second.handshakeTimeout.duration == .seconds(10))
        #expect(second.alpn == ["http/1.1"])
        #expect(configuration.routes[0].action == .upstream(
            HostAndPort(host: "127.0.0.1", port: 9000), proxyProtocol: .v2, connectTimeout: RouteConfiguration.defaultConnectTimeout))
        #expect(configuration.routes[1].action == .respond(.init(status: 404, headers: ["x-served": "{sni}"], body: "certgate is serving {sni}\n")))
    }

    @Test("every semantic problem is reported with its key and line", arguments: [
        ("listeners:\n  - listen: 127.0.0.1:1\n    min_tls_version: tls1.3\n    max_tls_version: tls1.2\n", "listeners.0.min_tls_version", 3),
        ("listeners:\n  - listen: 127.0.0.1:1\n  - listen: 127.0.0.1:1\n", "listeners.1.listen", 3),
        ("routes:\n  - server_names: [a.test]\n    respond: {}\n  - server_names: [A.test]\n    respond: {}\n", "routes.1.server_names.0", 4),
        ("routes:\n  - server_names: [bad_name]\n    respond: {}\n", "routes.0.server_names.0", 2),
        ("routes:\n  - server_names: ['*']\n    respond: { status: 700 }\n", "routes.0.respond.status", 3),
    ])
    func semanticProblems(yaml: String, key: String, line: Int) {
        #expect {
            try GatewayConfiguration.parse(yaml: yaml, file: "c.yaml", baseDirectory: "/")
        } throws: { error in
            guard let first = (error as? ConfigurationErrors)?.errors.first else { return false }
            return first.key == key && first.line == line
        }
    }

    @Test("bad values name their key", arguments: [
        ("listeners:\n  - listen: nowhere\n", "listeners.0.listen"),
        ("listeners:\n  - listen: 127.0.0.1:1\n    handshake_timeout: soon\n", "listeners.0.handshake_timeout"),
        ("listeners:\n  - listen: 127.0.0.1:1\n    min_tls_version: ssl3\n", "listeners.0.min_tls_version"),
        ("routes:\n  - server_names: ['*']\n", "routes.0.upstream"),
        ("routes:\n  - server_names: ['*']\n    upstream: 127.0.0.1:1\n    respond: {}\n", "routes.0.respond"),
        ("log_level: loud\n", "log_level"),
    ])
    func badValues(yaml: String, key: String) {
        #expect {
            try GatewayConfiguration.parse(yaml: yaml, file: "c.yaml", baseDirectory: "/")
        } throws: { error in
            (error as? ConfigurationErrors)?.errors.first?.key == key
        }
    }

    @Test("durations and addresses parse as written")
    func valueSyntax() {
        #expect(ConfigDuration(parsing: "500ms")?.duration == .milliseconds(500))
        #expect(ConfigDuration(parsing: "7d")?.duration == .seconds(7 * 86_400))
        #expect(ConfigDuration(parsing: "1.5s") == nil)
        #expect(HostAndPort(parsing: "[::1]:8443") == HostAndPort(host: "::1", port: 8443))
        #expect(HostAndPort(parsing: "::1:8443") == nil)
        #expect(HostAndPort(parsing: "localhost:70000") == nil)
    }
}
