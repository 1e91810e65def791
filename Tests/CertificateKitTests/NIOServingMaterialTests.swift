import CertificateKit
import CertificateKitNIO
import CertificateTestSupport
import Testing

@Suite("NIOSSL serving material")
struct NIOServingMaterialTests {
    @Test("a set built with the NIOSSL factory carries the chain and key, made once and reused by rebuilds", arguments: TestKeyType.allCases)
    func materialIsBuiltOnce(type: TestKeyType) throws {
        let authority = TestCertificate.authority()
        let intermediate = authority.intermediate(commonName: "Intermediate")
        let leaf = intermediate.leaf(dnsNames: ["nio.test"], keyType: type)
        let context = CertificateBuildContext(servingMaterialFactory: NIOServingMaterial.factory)
        let confs = ["nio": leaf.conf(chain: [intermediate])]
        let first = try CertificateSet.build(from: confs, context: context).set
        let material = try #require(first.entries["nio"]?.nioServingMaterial)
        #expect(material.certificateChain.count == 2)
        #expect(try material.certificateChain[0].toDERBytes() == leaf.parsed.der)

        let second = try CertificateSet.build(from: confs, context: context, reusing: first).set
        #expect(second.entries["nio"]?.nioServingMaterial === material)
    }
}
