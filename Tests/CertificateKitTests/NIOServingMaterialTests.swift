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
        // Checked when built, made again at the first handshake that needs it, then kept.
        #expect(!material.isBuilt)
        let chain = try material.certificateChain()
        #expect(material.isBuilt)
        #expect(chain.count == 2)
        #expect(try chain[0].toDERBytes() == leaf.parsed.der)
        #expect(try chain[1].toDERBytes() == intermediate.parsed.der)

        let second = try CertificateSet.build(from: confs, context: context, reusing: first).set
        #expect(second.entries["nio"]?.nioServingMaterial === material)
    }
}
