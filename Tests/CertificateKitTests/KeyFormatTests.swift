import CertificateKit
import CertificateTestSupport
import Testing

@Suite("Private key formats", .timeLimit(.minutes(2)))
struct KeyFormatTests {
    static let authority = TestCertificate.authority()

    func load(_ leaf: TestCertificate, keyPEM: String) throws -> CertificateEntry? {
        try CertificateSet.build(
            from: ["web": CertificateConf(tlsCert: leaf.pem, tlsKey: keyPEM)], context: CertificateBuildContext()
        ).set.entries["web"]
    }

    @Test("PKCS#8 keys of every supported type load", arguments: TestKeyType.allCases)
    func pkcs8(type: TestKeyType) throws {
        let leaf = Self.authority.leaf(dnsNames: ["a.test"], keyType: type)
        #expect(try load(leaf, keyPEM: leaf.key.pkcs8PEM) != nil)
    }

    @Test("SEC1 ECDSA keys load (P-256, P-384)", arguments: [TestKeyType.p256, .p384])
    func sec1(type: TestKeyType) throws {
        let leaf = Self.authority.leaf(dnsNames: ["a.test"], keyType: type)
        #expect(try load(leaf, keyPEM: try #require(leaf.key.sec1PEM)) != nil)
    }

    @Test("openssl ecparam -genkey output (EC PARAMETERS, then the key) loads")
    func ecParametersFirst() throws {
        let leaf = Self.authority.leaf(dnsNames: ["a.test"], keyType: .p256)
        let pem = TestKey.p256ECParametersPEM + (try #require(leaf.key.sec1PEM))
        #expect(try load(leaf, keyPEM: pem) != nil)
    }

    @Test("PKCS#1 RSA keys load")
    func pkcs1() throws {
        let leaf = Self.authority.leaf(dnsNames: ["a.test"], keyType: .rsa2048)
        #expect(try load(leaf, keyPEM: try #require(leaf.key.pkcs1PEM)) != nil)
    }

    @Test("a certificate signed by an RSA CA validates its chain")
    func rsaAuthority() throws {
        let rsaCA = TestCertificate.authority(commonName: "RSA CA", keyType: .rsa2048)
        let intermediate = rsaCA.intermediate(commonName: "P-384 intermediate", keyType: .p384)
        let leaf = intermediate.leaf(dnsNames: ["a.test"], keyType: .ed25519)
        let entry = try CertificateSet.build(from: ["web": leaf.conf(chain: [intermediate])], context: CertificateBuildContext()).set.entries["web"]
        #expect(entry?.servedChainSubjects.count == 2)
    }

    @Test("a file with two keys is refused")
    func twoKeys() {
        let leaf = Self.authority.leaf(dnsNames: ["a.test"])
        #expect(throws: CertificateSetError.self) {
            try load(leaf, keyPEM: leaf.key.pkcs8PEM + TestKey.make().pkcs8PEM)
        }
    }
}
