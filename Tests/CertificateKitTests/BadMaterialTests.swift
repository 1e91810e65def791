import Crypto
import CertificateKit
import CertificateTestSupport
import Foundation
import SwiftASN1
import Testing
import X509

/// Damaged keys and certificates get certgate's own reasons, quoting no key material;
/// chains are served as clients accept them; issued leaves follow RFC 5280's bounds.
@Suite("Bad material: reasons, chain hygiene, issued leaves", .timeLimit(.minutes(2)))
struct BadMaterialTests {
    static let root = TestCertificate.authority(commonName: "Hygiene Root")
    static let intermediate = root.intermediate(commonName: "Hygiene Intermediate")

    func build(_ confs: [String: CertificateConf]) -> Result<CertificateSet, CertificateSetError> {
        Result { () throws(CertificateSetError) in try CertificateSet.build(from: confs, context: CertificateBuildContext()).set }
    }

    func errors(_ confs: [String: CertificateConf]) -> [CertificateEntryError] {
        if case .failure(let failure) = build(confs) { return failure.errors }
        Issue.record("the set was expected to be rejected")
        return []
    }

    // MARK: - Reasons that quote no input

    @Test("a key cut after 150 bytes names the block and line, not the text")
    func tornKey() {
        let key = TestKey.make()
        let torn = String(key.pkcs8PEM.prefix(150))
        let leaf = Self.root.leaf(dnsNames: ["a.test"], key: key)
        let found = errors(["web": CertificateConf(tlsCert: leaf.pem, tlsKey: torn)])
        #expect(found == [CertificateEntryError(
            entry: "web", field: "tls_key",
            reason: "not valid PEM: the PRIVATE KEY block begun on line 1 has no END line (is the file cut short?)")])
    }

    @Test("PEM damage is described by line and label", arguments: [
        ("-----BEGIN PRIVATE KEY-----\nMIGH*AgEA\n-----END PRIVATE KEY-----\n",
         "not valid PEM: line 2, inside the PRIVATE KEY block begun on line 1, is not base64"),
        ("-----BEGIN PRIVATE KEY-----\nMIGHAgEA\n-----END CERTIFICATE-----\n",
         "not valid PEM: the END line on line 3 does not name the PRIVATE KEY block begun on line 1"),
        // swift-asn1 reads a lone END line as no block at all; certgate calls it damage.
        ("-----END PRIVATE KEY-----\n", "not valid PEM: line 1 is an END line with no BEGIN line before it"),
        ("-----BEGIN PRIVATE KEY-----\nMIGHAgE\n-----END PRIVATE KEY-----\n",
         "not valid PEM: the base64 of the PRIVATE KEY block (lines 1–3) is damaged"),
    ])
    func pemDamage(text: String, reason: String) throws {
        #expect(throws: PEMMaterialParser.Failure.self) { try PEMMaterialParser.privateKey(fromPEM: text) }
        do {
            _ = try PEMMaterialParser.privateKey(fromPEM: text)
        } catch {
            #expect(error.reason == reason)
        }
    }

    @Test("a key whose DER is damaged gets a reason from the error's kind, not its text")
    func damagedDER() throws {
        let key = TestKey.make()
        // A valid PEM frame around DER cut short: swift-asn1 reports truncation.
        let der = try #require(Data(base64Encoded: key.pkcs8PEM.split(separator: "\n").dropFirst().dropLast().joined()))
        let pem = PEMDocument(type: "PRIVATE KEY", derBytes: Array(der.prefix(40))).pemString
        do {
            _ = try PEMMaterialParser.privateKey(fromPEM: pem)
            Issue.record("a truncated key was accepted")
        } catch {
            #expect(error.reason == "private key (PRIVATE KEY) cannot be parsed: its DER ends early (truncated)")
            #expect(!error.reason.contains("ASN1Error") && !error.reason.contains(".swift"))
        }
    }

    @Test("base64 that names no file is not quoted back, a path is")
    func materialNotQuoted() {
        let base64DER = TestKey.make().pkcs8PEM.split(separator: "\n").dropFirst().dropLast().joined()
        let leaf = Self.root.leaf(dnsNames: ["a.test"])
        let found = errors(["web": CertificateConf(tlsCert: leaf.pem, tlsKey: String(base64DER.prefix(101)))])
        #expect(found.count == 1)
        #expect(found.first?.reason == "neither PEM, nor base64 of PEM, nor an existing file (the value, 101 characters, is not shown: it may be key material; base64 of DER is not accepted — give the PEM text, base64 of the whole PEM file, or a path)")
        let path = errors(["web": CertificateConf(tlsCert: leaf.pem, tlsKey: "/nonexistent/site.key")])
        #expect(path.first?.reason == "neither PEM, nor base64 of PEM, nor an existing file (/nonexistent/site.key)")
    }

    @Test("QuotedValue shows short values and numbers, hides base64-like and long ones")
    func quoting() {
        #expect(QuotedValue.quote("soon") == "'soon'")
        #expect(QuotedValue.quote("106751991167301d") == "'106751991167301d'")
        #expect(QuotedValue.quote("MIGHAgEAMBMGByqGSM49") == "a value of 20 characters (not shown)")
        #expect(QuotedValue.quote(String(repeating: "a.", count: 40)) == "a value of 80 characters (not shown)")
        #expect(QuotedValue.quote("two\nlines") == "a value of 9 characters (not shown)")
    }

    // MARK: - Chain hygiene

    @Test("a root sent twice is dropped; the self-signed root is not served; both are warnings")
    func duplicateAndRoot() throws {
        let leaf = Self.intermediate.leaf(dnsNames: ["hygiene.test"])
        let conf = leaf.conf(chain: [Self.intermediate, Self.root, Self.root])
        let set = try build(["web": conf]).get()
        let entry = try #require(set.entries["web"])
        #expect(entry.chainFingerprints == [Array(SHA256.hash(data: Self.intermediate.parsed.der))])
        #expect(entry.warnings == [
            "certificate 4 is the same as certificate 3 (CN=Hygiene Root); it is sent once",
            "certificate 3 (CN=Hygiene Root) is a self-signed root; it is not sent (clients use their own trust store)",
        ])
    }

    @Test("a key that matches a later certificate says the leaf must come first")
    func keyMatchesLaterCertificate() {
        let leaf = Self.intermediate.leaf(dnsNames: ["order.test"])
        let conf = CertificateConf(tlsCert: [Self.intermediate, Self.root, leaf].map(\.pem).joined(), tlsKey: leaf.key.pkcs8PEM)
        let found = errors(["web": conf])
        #expect(found.contains(CertificateEntryError(
            entry: "web", field: "tls_cert",
            reason: "the first certificate must be the leaf; certificate 3 (CN=order.test) matches the key")))
    }

    @Test("a chain out of order names the certificate that signed")
    func chainOutOfOrder() {
        let leaf = Self.intermediate.leaf(dnsNames: ["order.test"])
        let other = TestCertificate.authority(commonName: "Unrelated")
        let conf = leaf.conf(chain: [other, Self.intermediate])
        let found = errors(["web": conf])
        #expect(found.first == CertificateEntryError(
            entry: "web", field: "tls_cert",
            reason: "certificate 3 (CN=Hygiene Intermediate) signed certificate 1 (CN=order.test) but certificate 2 follows it; the chain must go leaf first, then each issuer in turn"))
    }

    // MARK: - Issued leaves

    @Test("a name longer than 64 characters goes in the SAN only, marked critical, with an empty subject")
    func longNameHasNoCommonName() throws {
        let ca = TestCertificate.authority(commonName: "CN limit CA")
        let entry = try #require(try CertificateSet.build(
            from: ["ca": ca.conf(domains: ["*"], isCA: true)], context: CertificateBuildContext()).set.entries["ca"])
        let long = String(repeating: "a", count: 60) + ".dyn.test"  // 69 characters
        let issued = try LocalAuthority(entry: entry).sign(.name(try #require(ServerName.normalize(long))), now: Date())
        let certificate = issued.chain[0].certificate
        #expect(Array(certificate.subject).isEmpty)
        let san = try #require(certificate.extensions[oid: .X509ExtensionID.subjectAlternativeName])
        #expect(san.critical)
        #expect(try certificate.extensions.subjectAlternativeNames == SubjectAlternativeNames([.dnsName(long)]))

        let short = try LocalAuthority(entry: entry).sign(.name(try #require(ServerName.normalize("short.dyn.test"))), now: Date())
        #expect(short.chain[0].certificate.subject.commonName == "short.dyn.test")
        #expect(short.chain[0].certificate.extensions[oid: .X509ExtensionID.subjectAlternativeName]?.critical == false)
    }

    @Test("leaf_validity_days above 397 is refused with the browsers' limit")
    func leafValidityCap() {
        var conf = TestCertificate.authority().conf(domains: ["*.dev.test"], isCA: true)
        conf.leafValidityDays = 398
        #expect(errors(["ca": conf]) == [CertificateEntryError(
            entry: "ca", field: "leaf_validity_days",
            reason: "must be 1 to 397 days, not 398 (browsers refuse TLS leaves valid for more than 398 days)")])
        conf.leafValidityDays = 397
        #expect((try? build(["ca": conf]).get()) != nil)
    }

    // MARK: - Update warnings

    @Test("removing the default entry, and emptying the set, are warned about")
    func updateWarnings() throws {
        let fallback = Self.root.leaf(dnsNames: ["fallback.test"])
        let site = Self.root.leaf(dnsNames: ["site.test"])
        let set = try build(["fallback": fallback.conf(isDefault: true), "site": site.conf()]).get()
        let withoutDefault = try set.updating(upserting: [:], deleting: ["fallback"], context: CertificateBuildContext())
        #expect(UpdateWarnings.of(withoutDefault, previous: set) == [CertificateEntryError(
            entry: "fallback", field: "is_default",
            reason: "the default entry is removed and no other is the default: clients without SNI, or asking for a name no entry serves, now fail the handshake")])
        let empty = try set.updating(upserting: [:], deleting: ["fallback", "site"], context: CertificateBuildContext())
        #expect(UpdateWarnings.of(empty, previous: set) == [CertificateEntryError(
            entry: "", field: "certificates", reason: "the set is now empty: every handshake fails until an entry is added")])
        let unchangedDefault = try set.updating(upserting: [:], deleting: ["site"], context: CertificateBuildContext())
        #expect(UpdateWarnings.of(unchangedDefault, previous: set).isEmpty)
    }
}
