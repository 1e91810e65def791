import CertificateKit
import CertificateTestSupport
import Foundation
import Testing
import X509

@Suite("Entry validation", .timeLimit(.minutes(2)))
struct ValidationTests {
    static let authority = TestCertificate.authority()

    /// Builds a set and returns its errors (failing the test if it builds).
    func errors(_ confs: [String: CertificateConf]) -> [CertificateEntryError] {
        do {
            _ = try CertificateSet.build(from: confs, context: CertificateBuildContext())
            Issue.record("the set was expected to be rejected")
            return []
        } catch {
            return error.errors
        }
    }

    func expectOneError(_ confs: [String: CertificateConf], entry: String, field: String, reasonContains fragment: String,
                        sourceLocation: SourceLocation = #_sourceLocation) {
        let found = errors(confs)
        #expect(found.count == 1, "\(found)", sourceLocation: sourceLocation)
        #expect(found.first?.entry == entry, sourceLocation: sourceLocation)
        #expect(found.first?.field == field, sourceLocation: sourceLocation)
        #expect(found.first?.reason.contains(fragment) == true, "\(found.first?.reason ?? "")", sourceLocation: sourceLocation)
    }

    @Test("a missing tls_cert is named")
    func missingCertificate() {
        expectOneError(["web": CertificateConf(tlsKey: TestKey.make().pkcs8PEM)], entry: "web", field: "tls_cert", reasonContains: "missing")
    }

    @Test("an entry name with a control or format character (U+202E turns text around) is refused, and shown escaped", arguments: [
        ("a\u{202E}b", "a\\u{202E}b"), ("a\u{1B}[31mb", "a\\u{1B}[31mb"), ("a b", "a b"),
    ])
    func nameCharacters(name: String, shown: String) {
        let leaf = Self.authority.leaf(dnsNames: ["a.test"])
        expectOneError([name: leaf.conf()], entry: shown, field: "name", reasonContains: "name contains spaces or control or format characters")
    }

    @Test("a missing tls_key is named")
    func missingKey() {
        let leaf = Self.authority.leaf(dnsNames: ["a.test"])
        expectOneError(["web": CertificateConf(tlsCert: leaf.pem)], entry: "web", field: "tls_key", reasonContains: "missing")
    }

    @Test("a certificate and key in one file (tls_key omitted) load")
    func combinedFile() throws {
        let leaf = Self.authority.leaf(dnsNames: ["a.test"])
        let set = try CertificateSet.build(from: ["web": CertificateConf(tlsCert: leaf.pem + leaf.key.pkcs8PEM)], context: CertificateBuildContext()).set
        #expect(set.entries["web"] != nil)
    }

    @Test("text that is neither PEM, base64 of PEM nor a file is named")
    func unreadableSource() {
        expectOneError(["web": CertificateConf(tlsCert: "certs/does-not-exist.pem", tlsKey: TestKey.make().pkcs8PEM)],
                       entry: "web", field: "tls_cert", reasonContains: "does-not-exist.pem")
    }

    @Test("a corrupt certificate block is named")
    func corruptCertificate() {
        let pem = "-----BEGIN CERTIFICATE-----\nMIIBAAAA\n-----END CERTIFICATE-----\n"
        expectOneError(["web": CertificateConf(tlsCert: pem, tlsKey: TestKey.make().pkcs8PEM)],
                       entry: "web", field: "tls_cert", reasonContains: "cannot be parsed")
    }

    @Test("a key that does not match the certificate is named")
    func mismatchedKey() {
        let leaf = Self.authority.leaf(dnsNames: ["a.test"])
        expectOneError(["web": CertificateConf(tlsCert: leaf.pem, tlsKey: TestKey.make().pkcs8PEM)],
                       entry: "web", field: "tls_key", reasonContains: "does not match")
    }

    @Test("a chain whose next certificate did not sign the previous one is named")
    func brokenChain() {
        let other = TestCertificate.authority(commonName: "unrelated CA")
        let leaf = Self.authority.leaf(dnsNames: ["a.test"])
        expectOneError(["web": leaf.conf(chain: [other])], entry: "web", field: "tls_cert", reasonContains: "did not sign certificate 1")
    }

    @Test("a leaf followed by its real issuer is a valid chain")
    func validChain() throws {
        let intermediate = Self.authority.intermediate(commonName: "Intermediate")
        let leaf = intermediate.leaf(dnsNames: ["a.test"])
        let entry = try CertificateSet.build(from: ["web": leaf.conf(chain: [intermediate])], context: CertificateBuildContext()).set.entries["web"]
        #expect(entry?.chainFingerprints.count == 1)
        #expect(entry?.chainWasCompleted == false)
    }

    @Test("an entry that serves no name is named")
    func noNames() {
        let leaf = Self.authority.leaf(commonName: "no-sans")
        expectOneError(["web": leaf.conf()], entry: "web", field: "domains", reasonContains: "serves no name")
    }

    @Test("a default entry may serve no name of its own")
    func defaultWithoutNames() throws {
        let leaf = Self.authority.leaf(commonName: "no-sans")
        let set = try CertificateSet.build(from: ["web": leaf.conf(isDefault: true)], context: CertificateBuildContext()).set
        #expect(set.defaultEntry?.name == "web")
    }

    @Test("is_ca on a certificate that is not a CA is named")
    func notACA() {
        let leaf = Self.authority.leaf(dnsNames: ["a.test"])
        expectOneError(["ca": leaf.conf(domains: ["*.dev.test"], isCA: true)], entry: "ca", field: "is_ca", reasonContains: "not a CA")
    }

    @Test("is_ca on a CA whose key usage lacks keyCertSign is named")
    func caWithoutKeyCertSign() {
        let ca = TestCertificate.authority(keyUsage: KeyUsage(digitalSignature: true))
        expectOneError(["ca": ca.conf(domains: ["*.dev.test"], isCA: true)], entry: "ca", field: "is_ca", reasonContains: "keyCertSign")
    }

    @Test("a real CA loads as an issuer entry")
    func issuerEntry() throws {
        let ca = TestCertificate.authority()
        let entry = try CertificateSet.build(from: ["ca": ca.conf(domains: ["*.dev.test"], isCA: true)], context: CertificateBuildContext()).set.entries["ca"]
        #expect(entry?.kind == .issuer)
    }

    @Test("an encrypted private key is refused with a reason that says so", arguments: [
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIBAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
        "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00000000000000000000000000000000\n\nMIIBAAAA\n-----END RSA PRIVATE KEY-----\n",
    ])
    func encryptedKey(keyPEM: String) {
        let leaf = Self.authority.leaf(dnsNames: ["a.test"])
        expectOneError(["web": CertificateConf(tlsCert: leaf.pem, tlsKey: keyPEM)], entry: "web", field: "tls_key", reasonContains: "encrypted")
    }

    @Test("an RSA key under 2048 bits is refused with its size")
    func weakRSAKey() {
        let leaf = Self.authority.leaf(dnsNames: ["a.test"])
        expectOneError(["web": CertificateConf(tlsCert: leaf.pem, tlsKey: TestKey.weakRSA1024PEM())],
                       entry: "web", field: "tls_key", reasonContains: "1024 bits")
    }

    @Test("two entries claiming one name are both named")
    func duplicateName() {
        let found = errors([
            "first": Self.authority.leaf(dnsNames: ["a.test", "b.test"]).conf(),
            "second": Self.authority.leaf(dnsNames: ["b.test"]).conf(),
        ])
        #expect(found.count == 1)
        #expect(found.first?.entry == "second")
        #expect(found.first?.reason.contains("'first'") == true)
        #expect(found.first?.reason.contains("b.test") == true)
    }

    @Test("two wildcard claims of one name are both named")
    func duplicateWildcard() {
        let found = errors([
            "first": Self.authority.leaf(dnsNames: ["*.a.test"]).conf(),
            "second": Self.authority.leaf(dnsNames: ["x.test"]).conf(domains: "*.A.test"),
        ])
        #expect(found.map(\.entry) == ["second"])
        #expect(found.first?.reason.contains("'*.a.test' is also claimed by entry 'first'") == true)
    }

    @Test("two defaults are both named")
    func twoDefaults() {
        let found = errors([
            "one": Self.authority.leaf(dnsNames: ["a.test"]).conf(isDefault: true),
            "two": Self.authority.leaf(dnsNames: ["b.test"]).conf(isDefault: true),
        ])
        #expect(found.count == 1)
        #expect(found.first?.entry == "two")
        #expect(found.first?.field == "is_default")
        #expect(found.first?.reason.contains("'one'") == true)
    }

    @Test("'*' on a static entry is refused")
    func starOnStaticEntry() {
        expectOneError(["web": Self.authority.leaf(dnsNames: ["a.test"]).conf(domains: ["*"])],
                       entry: "web", field: "domains", reasonContains: "only for an issuer")
    }

    @Test("an invalid name in domains is named")
    func invalidDomain() {
        expectOneError(["web": Self.authority.leaf(dnsNames: ["a.test"]).conf(domains: "a.test, bad_name.test")],
                       entry: "web", field: "domains", reasonContains: "bad_name.test")
    }

    @Test("buffer_days outside 0 to 3650 is named with its range", arguments: [-1, 3_651, Int.max])
    func bufferDaysOutOfRange(days: Int) {
        var conf = Self.authority.leaf(dnsNames: ["a.test"]).conf()
        conf.bufferDays = days
        expectOneError(["web": conf], entry: "web", field: "buffer_days", reasonContains: "must be 0 to 3650 days, not \(days)")
    }

    @Test("an expired certificate still loads, flagged expired")
    func expiredStillLoads() throws {
        let leaf = Self.authority.leaf(dnsNames: ["old.test"], notBefore: Date().addingTimeInterval(-100 * 86_400),
                                       notAfter: Date().addingTimeInterval(-2 * 86_400))
        let entry = try #require(try CertificateSet.build(from: ["old": leaf.conf()], context: CertificateBuildContext()).set.entries["old"])
        #expect(entry.validity(at: Date()).state == .expired)
        #expect(entry.warnings.contains { $0.contains("expired") })
    }

    @Test("one bad entry among good ones rejects the whole set with that entry's reason")
    func oneBadEntryRejectsAll() {
        var confs: [String: CertificateConf] = [:]
        for index in 0..<5 {
            confs["good-\(index)"] = Self.authority.leaf(dnsNames: ["good\(index).test"]).conf()
        }
        confs["bad"] = CertificateConf(tlsCert: Self.authority.leaf(dnsNames: ["bad.test"]).pem, tlsKey: TestKey.make().pkcs8PEM)
        let found = errors(confs)
        #expect(found.map(\.entry) == ["bad"])
    }

    @Test("every bad entry is reported at once")
    func everyErrorAtOnce() {
        let found = errors([
            "no-cert": CertificateConf(tlsKey: TestKey.make().pkcs8PEM),
            "no-key": CertificateConf(tlsCert: Self.authority.leaf(dnsNames: ["a.test"]).pem),
            "good": Self.authority.leaf(dnsNames: ["g.test"]).conf(),
        ])
        #expect(Set(found.map(\.entry)) == ["no-cert", "no-key"])
    }

    @Test("names in domains that the certificate does not cover are flagged")
    func uncoveredDomainWarning() throws {
        let leaf = Self.authority.leaf(dnsNames: ["a.test"])
        let entry = try CertificateSet.build(from: ["web": leaf.conf(domains: "a.test,b.test")], context: CertificateBuildContext()).set.entries["web"]
        #expect(entry?.warnings.contains { $0.contains("'b.test'") } == true)
        #expect(entry?.warnings.contains { $0.contains("'a.test'") } == false)
    }
}
