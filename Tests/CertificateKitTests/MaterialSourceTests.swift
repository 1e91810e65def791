import Crypto
import CertificateKit
import CertificateTestSupport
import Foundation
import Testing

@Suite("tls_cert / tls_key sources", .timeLimit(.minutes(2)))
struct MaterialSourceTests {
    static let authority = TestCertificate.authority()

    @Test("inline PEM, base64 of PEM and a relative file path load the same certificate")
    func threeForms() throws {
        let leaf = Self.authority.leaf(dnsNames: ["forms.test"])
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("certgate-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder.appendingPathComponent("certs"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        try leaf.pem.write(to: folder.appendingPathComponent("certs/forms.pem"), atomically: true, encoding: .utf8)
        let context = CertificateBuildContext(baseDirectory: folder.path)

        let base64 = Data(leaf.pem.utf8).base64EncodedString()
        let confs: [String: CertificateConf] = [
            "inline": CertificateConf(domains: "inline.test", tlsCert: leaf.pem, tlsKey: leaf.key.pkcs8PEM),
            "base64": CertificateConf(domains: "base64.test", tlsCert: base64, tlsKey: Data(leaf.key.pkcs8PEM.utf8).base64EncodedString()),
            "file": CertificateConf(domains: "file.test", tlsCert: "certs/forms.pem", tlsKey: leaf.key.pkcs8PEM),
        ]
        let set = try CertificateSet.build(from: confs, context: context).set
        #expect(Set(set.entries.values.map(\.fingerprint)) == [Array(SHA256.hash(data: leaf.parsed.der))])
    }

    @Test("a path is relative to the config folder; '~' is the home folder; absolute stays")
    func pathResolution() {
        #expect(MaterialSource.resolve(path: "certs/a.pem", baseDirectory: "/etc/certgate") == "/etc/certgate/certs/a.pem")
        #expect(MaterialSource.resolve(path: "/abs/a.pem", baseDirectory: "/etc/certgate") == "/abs/a.pem")
        let home = ProcessInfo.processInfo.environment["HOME"] ?? NSHomeDirectory()
        #expect(MaterialSource.resolve(path: "~/a.pem", baseDirectory: "/etc/certgate") == home + "/a.pem")
    }

    @Test("which form a value is", arguments: [
        ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----", "inline"),
        (Data("-----BEGIN CERTIFICATE-----\n".utf8).base64EncodedString(), "base64"),
        ("certs/example.pem", "file"),
        ("c2l0ZQ==", "file"),  // base64, but not of PEM
    ])
    func classification(value: String, form: String) {
        switch MaterialSource(value) {
        case .inline: #expect(form == "inline")
        case .base64: #expect(form == "base64")
        case .file: #expect(form == "file")
        }
    }

    @Test("domains read as a comma-separated string or as a list")
    func domainForms() throws {
        let fromString = DomainList(commaSeparated: " a.test, b.test ,,c.test ")
        #expect(fromString.items == ["a.test", "b.test", "c.test"])
        let decoded = try JSONDecoder().decode(DomainList.self, from: Data(#"["a.test"," b.test "]"#.utf8))
        #expect(decoded.items == ["a.test", "b.test"])
    }
}
