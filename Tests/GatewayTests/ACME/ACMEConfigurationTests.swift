import CertificateTestSupport
import Foundation
import Testing
@testable import Gateway

@Suite("acme: and acme entries in the configuration file", .timeLimit(.minutes(2)))
struct ACMEConfigurationTests {
    static let listener = "listeners:\n  - listen: 127.0.0.1:8443\n"

    func errors(_ yaml: String) -> [ConfigurationError] {
        do {
            _ = try GatewayConfiguration.parse(yaml: Self.listener + yaml, file: "certgate.yaml", baseDirectory: "/etc/certgate")
            return []
        } catch {
            return error.errors
        }
    }

    @Test("a full acme: section reads as written; the built-in CAs need no section; the challenge order defaults to tls-alpn-01, http-01")
    func reads() throws {
        let folder = try FixtureFolder()
        defer { folder.remove() }
        try folder.write(TestCertificate.authority(commonName: "Pebble HTTPS CA").pem, to: "pebble-root.pem")
        let configuration = try GatewayConfiguration.parse(yaml: Self.listener + """
            acme:
              pebble:
                directory: https://127.0.0.1:14000/dir
                email: ops@example.test
                ca_roots: pebble-root.pem
                challenges: [dns-01, http-01]
                dns_hook: ["/bin/echo", "--zone", "example.test"]
                eab: { kid: kid-1, hmac_key: c2VjcmV0LW1hYy1rZXk }
                preferred_chain: ISRG Root X1
                profile: tlsserver
                renew_before: 30d
              plain: { directory: "https://ca.test/dir" }
            certificates:
              shop: { acme: pebble, domains: "shop.example.test,*.shop.example.test" }
              le: { acme: letsencrypt, domains: le.example.test }
            """, file: "certgate.yaml", baseDirectory: folder.url.path)
        let pebble = try #require(configuration.acme["pebble"])
        #expect(pebble.caRoots == "pebble-root.pem")
        #expect(pebble.directory == "https://127.0.0.1:14000/dir")
        #expect(pebble.challenges == [.dns01, .http01])
        #expect(pebble.dnsHook == ["/bin/echo", "--zone", "example.test"])
        #expect(pebble.eab == ACMEIssuerConfiguration.ExternalAccount(kid: "kid-1", hmacKey: "c2VjcmV0LW1hYy1rZXk"))
        #expect(pebble.renewBefore?.duration == .seconds(30 * 86_400))
        #expect(configuration.acme["plain"]?.challenges == [.tlsALPN01, .http01])
        #expect(configuration.acmeIssuer(named: "letsencrypt")?.directory == "https://acme-v02.api.letsencrypt.org/directory")
        #expect(configuration.acmeIssuer(named: "letsencrypt-staging")?.directory == "https://acme-staging-v02.api.letsencrypt.org/directory")
        #expect(configuration.acmeIssuer(named: "nobody") == nil)
    }

    @Test("each misuse names its key and says why", arguments: [
        ("certificates:\n  x: { acme: nobody, domains: x.test }\n", "certificates.x.acme",
         "no ACME CA is called 'nobody' (known: letsencrypt, letsencrypt-staging)"),
        ("certificates:\n  x: { acme: letsencrypt, domains: \"*.x.test\" }\n", "certificates.x.domains.0",
         "a wildcard name is validated only by dns-01: add dns-01 to acme.letsencrypt.challenges"),
        ("certificates:\n  x: { acme: letsencrypt, domains: \"127.0.0.1\" }\n", "certificates.x.domains.0",
         "'127.0.0.1' is not a DNS name an ACME CA can validate"),
        ("certificates:\n  x: { acme: letsencrypt, domains: \"*\" }\n", "certificates.x.domains.0",
         "'*' is not a DNS name an ACME CA can validate"),
        ("certificates:\n  x: { acme: letsencrypt, domains: \"a_b.example.test\" }\n", "certificates.x.domains.0",
         "'a_b.example.test' is not a valid DNS name (letters, digits and hyphens; labels of 1-63 octets; 253 in all)"),
        ("certificates:\n  x: { acme: letsencrypt, domains: \"-a.test\" }\n", "certificates.x.domains.0",
         "'-a.test' is not a valid DNS name (letters, digits and hyphens; labels of 1-63 octets; 253 in all)"),
        ("certificates:\n  x: { acme: letsencrypt, domains: \"\(String(repeating: "a", count: 64)).test\" }\n", "certificates.x.domains.0",
         "'\(String(repeating: "a", count: 64)).test' is not a valid DNS name (letters, digits and hyphens; labels of 1-63 octets; 253 in all)"),
        ("certificates:\n  x: { acme: letsencrypt }\n", "certificates.x.domains",
         "an acme entry needs the names to obtain a certificate for"),
        ("certificates:\n  x: { acme: letsencrypt, domains: x.test, is_ca: true }\n", "certificates.x.is_ca",
         "an acme entry cannot sign leaves"),
        ("acme:\n  c: { directory: \"https://ca.test/dir\", challenges: [dns-01], dns_hook: [hooks/dns-txt] }\n", "acme.c.dns_hook",
         "the hook's first item must be an absolute path (it runs without a shell, and not relative to the configuration)"),
        ("acme:\n  c: { directory: \"https://ca.test/dir\", challenges: [http-01] }\n", "acme.c.challenges",
         "none can be answered: http-01 needs a listener with protocol: http, tls-alpn-01 a TLS listener"),
        ("acme:\n  c: { directory: \"https://ca.test/dir\", ca_roots: missing-root.pem }\n", "acme.c.ca_roots",
         "'/etc/certgate/missing-root.pem' does not exist"),
        ("acme:\n  c: { directory: \"https://ca.test/dir\", ca_roots: /etc/passwd }\n", "acme.c.ca_roots",
         "'/etc/passwd' holds no PEM certificate"),
        ("acme:\n  c: { directory: \"https://ca.test/dir\", challenges: [dns-01] }\n", "acme.c.dns_hook",
         "dns-01 needs dns_hook: a list whose first item is an absolute path (it runs without a shell)"),
        ("acme:\n  c: { directory: \"https://ca.test/dir\", challenges: [dns-01], dns_hook: [/nonexistent/dns-txt] }\n", "acme.c.dns_hook",
         "'/nonexistent/dns-txt' does not exist"),
        ("acme:\n  c: { directory: \"https://ca.test/dir\", challenges: [dns-01], dns_hook: [/tmp] }\n", "acme.c.dns_hook",
         "'/tmp' is a directory, not a program"),
        ("acme:\n  c: { directory: \"https://ca.test/dir\", challenges: [dns-01], dns_hook: [/etc/passwd, present] }\n", "acme.c.dns_hook",
         "'/etc/passwd' is not executable"),
        ("validity:\n  notify:\n    - command: [/nonexistent/cert-alert, --team, edge]\n", "validity.notify.0.command",
         "'/nonexistent/cert-alert' does not exist"),
        ("acme:\n  c: { directory: \"https://ca.test/dir\", challenges: [] }\n", "acme.c.challenges",
         "at least one of tls-alpn-01, http-01, dns-01"),
        ("acme:\n  c: { directory: \"https://ca.test/dir\", eab: { kid: k, hmac_key: \"not base64!\" } }\n", "acme.c.eab.hmac_key",
         "is not base64url (the MAC key as the CA gave it)"),
        ("acme:\n  c: { directory: \"https://ca.test/dir\", renew_before: 5m }\n", "acme.c.renew_before",
         "must be 1h to 365d, not 5m"),
    ])
    func misuse(yaml: String, key: String, reason: String) {
        let found = errors(yaml)
        #expect(found.map(\.key) == [key], "\(found)")
        #expect(found.first?.reason == reason)
    }

    @Test("a directory that is not https, an unknown challenge and an unknown key are refused with their place")
    func decodingErrors() {
        #expect(errors("acme:\n  c: { directory: \"http://ca.test/dir\" }\n").map(\.key) == ["acme.c.directory"])
        #expect(errors("acme:\n  c: { directory: \"https://ca.test/dir\", challenges: [smtp-01] }\n").first?.reason
            == "must be one of tls-alpn-01, http-01, dns-01, not 'smtp-01'")
        #expect(errors("acme:\n  c: { directory: \"https://ca.test/dir\", emial: a@b.test }\n").map(\.key) == ["acme.c.emial"])
        #expect(errors("  - listen: 127.0.0.1:80\n    protocol: gopher\n").first?.reason == "must be one of tls, http, not 'gopher'")
    }
}
