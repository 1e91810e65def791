import CertificateKit
import CertificateTestSupport
import Testing

@Suite("Lookup order", .timeLimit(.minutes(2)))
struct LookupTests {
    static let authority = TestCertificate.authority()
    static let set: CertificateSet = {
        let confs: [String: CertificateConf] = [
            "api": authority.leaf(dnsNames: ["api.example.com"]).conf(),
            "wild": authority.leaf(dnsNames: ["*.example.com"]).conf(),
            "deep-wild": authority.leaf(dnsNames: ["*.b.example.com"]).conf(domains: ["*.b.example.com"]),
            "by-ip": authority.leaf(ipAddresses: ["127.0.0.2", "::2"]).conf(),
            "fallback": authority.leaf(dnsNames: ["fallback.example.org"]).conf(isDefault: true),
        ]
        return try! CertificateSet.build(from: confs, context: CertificateBuildContext()).set
    }()

    struct Case: Sendable, CustomTestStringConvertible {
        let sni: String?
        let local: String?
        let entry: String?
        let kind: CertificateMatch.Kind?
        var testDescription: String { "sni=\(sni ?? "none") local=\(local ?? "none") → \(entry ?? "no certificate")" }
    }

    @Test("each handshake gets the entry the lookup order says", arguments: [
        Case(sni: "api.example.com", local: nil, entry: "api", kind: .exact),
        Case(sni: "API.EXAMPLE.COM", local: nil, entry: "api", kind: .exact),
        Case(sni: "api.example.com.", local: nil, entry: "api", kind: .exact),
        Case(sni: "www.example.com", local: nil, entry: "wild", kind: .wildcard),
        Case(sni: "WWW.Example.Com.", local: nil, entry: "wild", kind: .wildcard),
        Case(sni: "x.b.example.com", local: nil, entry: "deep-wild", kind: .wildcard),
        // one level only: a.x.example.com is not covered by *.example.com
        Case(sni: "a.x.example.com", local: nil, entry: "fallback", kind: .default),
        // a wildcard does not cover its own apex
        Case(sni: "example.com", local: nil, entry: "fallback", kind: .default),
        Case(sni: "unknown.test", local: "127.0.0.2", entry: "fallback", kind: .default),
        Case(sni: nil, local: "127.0.0.2", entry: "by-ip", kind: .ip),
        Case(sni: nil, local: "::ffff:127.0.0.2", entry: "by-ip", kind: .ip),
        Case(sni: nil, local: "::2", entry: "by-ip", kind: .ip),
        Case(sni: nil, local: "127.0.0.1", entry: "fallback", kind: .default),
        Case(sni: nil, local: nil, entry: "fallback", kind: .default),
        // an invalid SNI is treated as no SNI
        Case(sni: "bad_name.example.com", local: "127.0.0.2", entry: "by-ip", kind: .ip),
        Case(sni: "", local: "127.0.0.2", entry: "by-ip", kind: .ip),
        Case(sni: "*.example.com", local: nil, entry: "fallback", kind: .default),
    ])
    func lookup(_ testCase: Case) {
        let match = Self.set.lookup(serverName: testCase.sni, localAddress: testCase.local.flatMap { IPAddress($0) })
        #expect(match?.entry.name == testCase.entry)
        #expect(match?.kind == testCase.kind)
    }

    @Test("the normalised server name travels with the match")
    func matchCarriesServerName() {
        #expect(Self.set.lookup(serverName: "WWW.example.com.", localAddress: nil)?.serverName?.text == "www.example.com")
        #expect(Self.set.lookup(serverName: nil, localAddress: nil)?.serverName == nil)
    }

    @Test("without a default an unknown name gets no certificate")
    func noDefault() throws {
        let confs = ["api": Self.authority.leaf(dnsNames: ["api.example.com"]).conf()]
        let set = try CertificateSet.build(from: confs, context: CertificateBuildContext()).set
        #expect(set.lookup(serverName: "other.example.com", localAddress: nil) == nil)
        #expect(set.lookup(serverName: nil, localAddress: IPAddress("127.0.0.1")) == nil)
        #expect(set.lookup(serverName: "api.example.com", localAddress: nil)?.entry.name == "api")
    }

    @Test("an issuer with '*' takes names nobody claims, before the default")
    func catchAllIssuer() throws {
        let issuer = TestCertificate.authority(commonName: "dev CA")
        let confs: [String: CertificateConf] = [
            "api": Self.authority.leaf(dnsNames: ["api.example.com"]).conf(),
            "ca": issuer.conf(domains: ["*"], isCA: true),
            "fallback": Self.authority.leaf(dnsNames: ["fallback.example.org"]).conf(isDefault: true),
        ]
        let set = try CertificateSet.build(from: confs, context: CertificateBuildContext()).set
        #expect(set.lookup(serverName: "api.example.com", localAddress: nil)?.entry.name == "api")
        let match = set.lookup(serverName: "anything.test", localAddress: nil)
        #expect(match?.entry.name == "ca")
        #expect(match?.kind == .catchAll)
        #expect(match?.entry.kind == .issuer)
        #expect(set.lookup(serverName: nil, localAddress: nil)?.entry.name == "fallback")
    }
}
