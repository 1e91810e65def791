import CertificateKit
import CertificateTestSupport
import Foundation
import Testing
@testable import Gateway

@Suite("on-demand entries and the on_demand: section in the configuration file", .timeLimit(.minutes(2)))
struct OnDemandConfigurationTests {
    static let listener = "listeners:\n  - listen: 127.0.0.1:8443\n"

    func parse(_ yaml: String) throws(ConfigurationErrors) -> GatewayConfiguration {
        try GatewayConfiguration.parse(yaml: Self.listener + yaml, file: "certgate.yaml", baseDirectory: "/etc/certgate")
    }

    func errors(_ yaml: String) -> [ConfigurationError] {
        do {
            _ = try parse(yaml)
            return []
        } catch {
            return error.errors
        }
    }

    @Test("an on-demand entry takes patterns (exact, one-level wildcard, '*') without dns-01, and an ask URL; the on_demand: section has defaults and reads as written")
    func reads() throws {
        let defaults = try parse("""
            certificates:
              customers: { acme: letsencrypt, on_demand: true, domains: "*.customers.test,shop.example.test,*", ask: "http://127.0.0.1:9000/allowed?token=a" }
            """)
        let conf = try #require(defaults.certificates["customers"])
        #expect(conf.isOnDemand)
        #expect(conf.ask == "http://127.0.0.1:9000/allowed?token=a")
        #expect(conf.domains?.items == ["*.customers.test", "shop.example.test", "*"])
        #expect(defaults.onDemand == OnDemandConfiguration())
        let limits = defaults.onDemand
        #expect(limits.handshakeWait.duration == .seconds(10))
        #expect([Int]([limits.maxConcurrent, limits.ordersPerMinute, limits.burst, limits.perClientPerHour, limits.maxCertificates]) == [4, 10, 20, 20, 10_000])
        #expect([limits.idleTimeout.duration, limits.askTimeout.duration, limits.askCache.duration, limits.failureBackoff.duration]
            == [Duration.seconds(30 * 86_400), .seconds(3), .seconds(600), .seconds(300)])

        let written = try parse("""
            on_demand:
              handshake_wait: 5s
              max_concurrent: 2
              orders_per_minute: 30
              burst: 5
              per_client_per_hour: 3
              max_certificates: 500
              idle_timeout: 7d
              ask_timeout: 500ms
              ask_cache: 0s
              failure_backoff: 1m
            """).onDemand
        #expect(written.handshakeWait.duration == .seconds(5))
        #expect([Int]([written.maxConcurrent, written.ordersPerMinute, written.burst, written.perClientPerHour, written.maxCertificates]) == [2, 30, 5, 3, 500])
        #expect([written.idleTimeout.duration, written.askTimeout.duration, written.askCache.duration, written.failureBackoff.duration]
            == [Duration.seconds(7 * 86_400), .milliseconds(500), .zero, .seconds(60)])
        #expect(written.limits == OnDemandLimits.Policy(maxConcurrent: 2, ordersPerMinute: 30, burst: 5, perClientPerHour: 3, failureBackoff: 60))
    }

    @Test("each misuse names its key and says why", arguments: [
        ("certificates:\n  x: { acme: letsencrypt, on_demand: true }\n", "certificates.x.domains",
         "an on-demand entry needs the patterns of the names it may obtain (\"*\" for any)"),
        ("certificates:\n  x: { acme: letsencrypt, domains: x.test, ask: \"http://a.test/allowed\" }\n", "certificates.x.ask",
         "only for an on-demand entry (acme: CA, on_demand: true)"),
        ("certificates:\n  x: { tls_cert: a.pem, tls_key: a.key, on_demand: true }\n", "certificates.x.on_demand",
         "only for an acme entry (acme: CA, on_demand: true)"),
        ("certificates:\n  x: { tls_cert: a.pem, tls_key: a.key, ask: \"http://a.test/allowed\" }\n", "certificates.x.ask",
         "only for an on-demand entry (acme: CA, on_demand: true)"),
        ("certificates:\n  x: { acme: letsencrypt, on_demand: true, domains: \"*.shop.test,*\" }\n", "certificates.x.domains.1",
         "'*' takes any name a client sends: an on-demand entry for every name needs ask (the endpoint that says which names are yours)"),
        ("certificates:\n  x: { acme: letsencrypt, on_demand: true, domains: \"*\", ask: \"http://127.0.0.1:65536/ok\" }\n", "certificates.x.ask",
         "the port must be 1 to 65535, not 65536"),
        ("certificates:\n  x: { acme: letsencrypt, on_demand: true, domains: \"*\", ask: \"http://[::1]:70000/ok\" }\n", "certificates.x.ask",
         "the port must be 1 to 65535, not 70000"),
        ("certificates:\n  x: { acme: letsencrypt, on_demand: true, domains: \"*\", ask: \"http://a.test/ok\\r\\nX: 1\" }\n", "certificates.x.ask",
         "a value of 21 characters (not shown) holds a space or a control character"),
        ("certificates:\n  x: { acme: letsencrypt, on_demand: true, domains: \"*\", ask: \"http://\(String(repeating: "a", count: 254))/ok\" }\n", "certificates.x.ask",
         "the host is longer than 253 characters"),
        ("on_demand: { handshake_wait: [1] }\n", "on_demand.handshake_wait", "expected a single value (not a list or a mapping)"),
        ("on_demand: []\n", "on_demand", "expected a mapping"),
        ("certificates:\n  x: { acme: letsencrypt, on_demand: true, domains: \"*\", ask: \"ftp://a.test/allowed\" }\n", "certificates.x.ask",
         "'ftp://a.test/allowed' is not an http or https URL"),
        ("certificates:\n  x: { acme: letsencrypt, on_demand: true, domains: \"*\", ask: \"/allowed\" }\n", "certificates.x.ask",
         "'/allowed' is not an http or https URL"),
        ("certificates:\n  x: { acme: letsencrypt, on_demand: true, domains: \"*\", ask: \"http://user:secret@a.test/allowed\" }\n", "certificates.x.ask",
         "the URL may not hold a user or password"),
        ("certificates:\n  x: { acme: letsencrypt, on_demand: true, domains: \"*\", ask: \"http://a.test/allowed#top\" }\n", "certificates.x.ask",
         "the URL may not hold a #fragment"),
        ("certificates:\n  x: { acme: letsencrypt, on_demand: true, domains: \"*.x.test\", is_default: true }\n", "certificates.x.is_default",
         "an on-demand entry serves only the names it obtains; it cannot be the default"),
        ("certificates:\n  x: { acme: letsencrypt, on_demand: true, domains: \"10.0.0.1\" }\n", "certificates.x.domains.0",
         "'10.0.0.1' is not a DNS name an ACME CA can validate"),
        ("certificates:\n  x: { acme: letsencrypt, on_demand: true, domains: \"a*.test\" }\n", "certificates.x.domains.0",
         "'a*.test': a wildcard must be the whole first label ('*.example.com') or '*' alone"),
        ("certificates:\n  x: { acme: letsencrypt, on_demand: true, domains: \"*.x.test\", tls_cert: a.pem }\n", "certificates.x.tls_cert",
         "an on-demand entry takes no certificate of its own: one is obtained for each name"),
        ("certificates:\n  x: { acme: letsencrypt, on_demand: yes please, domains: \"*\" }\n", "certificates.x.on_demand",
         "expected true or false"),
        ("on_demand: { handshake_wait: 2m }\n", "on_demand.handshake_wait", "must be 100ms to 1m, not 2m"),
        ("on_demand: { max_concurrent: 0 }\n", "on_demand.max_concurrent", "must be 1 to 64, not 0"),
        ("on_demand: { orders_per_minute: -1 }\n", "on_demand.orders_per_minute", "must be 0 to 10000, not -1"),
        ("on_demand: { burst: 0 }\n", "on_demand.burst", "must be 1 to 1000000, not 0"),
        ("on_demand: { per_client_per_hour: 1000001 }\n", "on_demand.per_client_per_hour", "must be 0 to 1000000, not 1000001"),
        ("on_demand: { max_certificates: 0 }\n", "on_demand.max_certificates", "must be 1 to 10000000, not 0"),
        ("on_demand: { idle_timeout: 5m }\n", "on_demand.idle_timeout", "must be 1h to 365d, not 5m"),
        ("on_demand: { ask_timeout: 31s }\n", "on_demand.ask_timeout", "must be 100ms to 30s, not 31s"),
        ("on_demand: { ask_cache: 2d }\n", "on_demand.ask_cache", "must be 0s to 1d, not 2d"),
        ("on_demand: { failure_backoff: 500ms }\n", "on_demand.failure_backoff", "must be 1s to 1d, not 500ms"),
    ])
    func misuse(yaml: String, key: String, reason: String) {
        let found = errors(yaml)
        #expect(found.map(\.key) == [key], "\(found)")
        #expect(found.first?.reason == reason)
    }

    @Test("an unknown key of on_demand: is an error naming the key closest to it")
    func unknownKey() {
        let found = errors("on_demand: { handshake_wiat: 5s }\n")
        #expect(found.map(\.key) == ["on_demand.handshake_wiat"])
        #expect(found.first?.reason == "unknown key; did you mean 'handshake_wait'?")
    }

    @Test("on_demand and ask on an entry that names no ACME CA are refused by the entry's validation")
    func onlyForACMEEntries() throws {
        let authority = TestCertificate.authority()
        let leaf = authority.leaf(dnsNames: ["shop.test"])
        let conf = CertificateConf(tlsCert: leaf.pem, tlsKey: leaf.key.pkcs8PEM, onDemand: true, ask: "http://a.test/allowed")
        let failure = #expect(throws: CertificateSetError.self) {
            try CertificateSet.build(from: ["shop": conf], context: CertificateBuildContext(baseDirectory: "/", now: Date()))
        }
        #expect(failure?.errors.map { "\($0.entry) \($0.field): \($0.reason)" } == [
            "shop on_demand: only for an acme entry (acme: CA, on_demand: true)",
            "shop ask: only for an on-demand entry (acme: CA, on_demand: true)",
        ])
    }

    @Test("a reload that changes on_demand: puts the new limits in force live")
    func reloadIsLive() throws {
        let running = try parse("on_demand: { max_concurrent: 2 }\n")
        let next = try parse("on_demand: { max_concurrent: 3 }\n")
        let plan = ReloadPlan(running: running, next: next)
        #expect(plan.live == [.onDemand])
        #expect(plan.restartNeeded.isEmpty)
        #expect(ReloadPlan(running: running, next: running).live.isEmpty)
    }

    @Test("the ask URL gets domain=NAME added to its query")
    func askURL() {
        #expect(OnDemandAsk.url("http://127.0.0.1:9000/allowed", name: "shop.customers.test") == "http://127.0.0.1:9000/allowed?domain=shop.customers.test")
        #expect(OnDemandAsk.url("https://ask.test/check?token=a", name: "x.test") == "https://ask.test/check?token=a&domain=x.test")
    }
}
