import CertificateKit
import CertificateKitNIO
import NIOSSL
import CertificateTestSupport
import Foundation
import Synchronization
import Testing
import X509

@Suite("NIOSSL serving material", .timeLimit(.minutes(2)))
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

    @Test("a stored entry proven unchanged is restored for every key type without BoringSSL parsing it; its first use makes the same chain and its key", arguments: TestKeyType.allCases)
    func verifiedRestoreBuildsAtFirstUse(type: TestKeyType) throws {
        let authority = TestCertificate.authority()
        let intermediate = authority.intermediate(commonName: "Intermediate")
        let leaf = intermediate.leaf(dnsNames: ["proven.test"], keyType: type)
        let context = CertificateBuildContext(servingMaterialFactory: NIOServingMaterial.factory)
        let built = try CertificateSet.build(from: ["proven": leaf.conf(chain: [intermediate])], context: context)
        let content = try #require(built.contents["proven"])
        let stored = ["proven": StoredCertificateEntry(conf: try #require(built.set.entries["proven"]).conf, content: content, verified: true)]
        // What the restore asks of the TLS layer: material already accepted, not to be checked again.
        let asked = Mutex<[Bool]>([])
        let recording = CertificateBuildContext(servingMaterialFactory: { input in
            asked.withLock { $0.append(input.alreadyAccepted) }
            return try NIOServingMaterial.factory(input)
        })
        let restored = try CertificateSet.restore(from: stored, context: recording)
        #expect(asked.withLock { $0 } == [true])
        // A row not proven is checked as at any build.
        _ = try CertificateSet.restore(from: ["proven": StoredCertificateEntry(conf: stored["proven"]!.conf, content: content)], context: recording)
        #expect(asked.withLock { $0 } == [true, false])
        let entry = try #require(restored.entries["proven"])
        #expect(entry.fingerprint == built.set.entries["proven"]?.fingerprint)
        let material = try #require(entry.nioServingMaterial)
        #expect(!material.isBuilt)
        let chain = try material.certificateChain()
        #expect(try chain.map { try $0.toDERBytes() } == [leaf.parsed.der, intermediate.parsed.der])
        // The key is made at first use too (that it is the leaf's key is what the restart
        // interop tests prove with real handshakes).
        let override = try material.contextOverride()
        guard case .privateKey? = override.privateKey else {
            Issue.record("no private key in the override")
            return
        }
        #expect(material.isBuilt)
    }

    @Test("leaves from one issued-leaf factory share their CA's NIOSSL certificate; each has its own leaf and key; another factory makes its own")
    func issuedLeavesShareTheirChain() throws {
        let authority = TestCertificate.authority()
        let factory = NIOServingMaterial.issuedLeafFactory()
        let (a, leafA) = try Self.issued("a.test", by: authority, from: factory)
        let (b, leafB) = try Self.issued("b.test", by: authority, from: factory)
        let (c, _) = try Self.issued("c.test", by: authority, from: NIOServingMaterial.issuedLeafFactory())
        #expect(a.isBuilt && b.isBuilt && c.isBuilt)
        let chainA = try a.certificateChain(), chainB = try b.certificateChain(), chainC = try c.certificateChain()
        #expect(try chainA.map { try $0.toDERBytes() } == [leafA.parsed.der, authority.parsed.der])
        #expect(try chainB.map { try $0.toDERBytes() } == [leafB.parsed.der, authority.parsed.der])
        #expect(chainA[1] === chainB[1])
        #expect(chainA[0] !== chainB[0])
        #expect(chainC[1] !== chainA[1])
        guard case .privateKey(let keyA)? = try a.contextOverride().privateKey, case .privateKey(let keyB)? = try b.contextOverride().privateKey else {
            Issue.record("no private key in the TLS objects")
            return
        }
        #expect(keyA == (try NIOSSLPrivateKey(bytes: Array(leafA.key.pkcs8PEM.utf8), format: .pem)))
        #expect(keyB == (try NIOSSLPrivateKey(bytes: Array(leafB.key.pkcs8PEM.utf8), format: .pem)))
    }
    /// An issued leaf's material from `factory`, with the leaf it was made from.
    static func issued(
        _ name: String, by authority: TestCertificate, from factory: ServingMaterialFactory, sec1: Bool = false
    ) throws -> (material: NIOServingMaterial, leaf: TestCertificate) {
        let leaf = authority.leaf(dnsNames: [name])
        let keyPEM = sec1 ? try #require(leaf.key.sec1PEM) : leaf.key.pkcs8PEM
        let made = try factory(ServingMaterialInput(chain: [leaf.parsed, authority.parsed], keyPEM: keyPEM))
        return (try #require(made as? NIOServingMaterial), leaf)
    }

    @Test("an issued leaf pushed out of the most recently served lets its NIOSSL objects go and has the same leaf, CA certificate and key made again when next served (PKCS#8 and SEC1 keys)", arguments: [false, true])
    func issuedLeafObjectsAreRemade(sec1: Bool) throws {
        let authority = TestCertificate.authority()
        let factory = NIOServingMaterial.issuedLeafFactory(keepingObjectsFor: 2)
        let (a, leafA) = try Self.issued("a.test", by: authority, from: factory, sec1: sec1)
        let (b, _) = try Self.issued("b.test", by: authority, from: factory, sec1: sec1)
        let caCertificate = try b.certificateChain()[1]
        #expect(a.isBuilt && b.isBuilt)
        // Made (and so served) in the order a, b, then b again: c pushes a out.
        let (c, _) = try Self.issued("c.test", by: authority, from: factory, sec1: sec1)
        #expect(!a.isBuilt && b.isBuilt && c.isBuilt)

        // Served again: a's objects are made from its kept DER; b, now the least recently
        // served, lets its own go.
        let chainA = try a.certificateChain()
        #expect(a.isBuilt && !b.isBuilt && c.isBuilt)
        #expect(try chainA.map { try $0.toDERBytes() } == [leafA.parsed.der, authority.parsed.der])
        #expect(chainA[1] === caCertificate)
        guard case .privateKey(let key)? = try a.contextOverride().privateKey else {
            Issue.record("no private key in the remade TLS objects")
            return
        }
        #expect(key == (try NIOSSLPrivateKey(bytes: Array(leafA.key.pkcs8PEM.utf8), format: .pem)))
    }

    @Test("an issued leaf that goes away (evicted from the cache) leaves the recently served: it pushes no other leaf's objects out")
    func goneLeafLeavesTheRecentlyServed() throws {
        let authority = TestCertificate.authority()
        let factory = NIOServingMaterial.issuedLeafFactory(keepingObjectsFor: 2)
        let (a, _) = try Self.issued("a.test", by: authority, from: factory)
        do {
            let (b, _) = try Self.issued("b.test", by: authority, from: factory)
            #expect(b.isBuilt)
        }
        // With b gone there is room for c beside a.
        let (c, _) = try Self.issued("c.test", by: authority, from: factory)
        #expect(a.isBuilt && c.isBuilt)
    }

    @Test("through the cache: a hit for a leaf whose objects were let go serves that same leaf, without signing again")
    func cacheHitRemakesObjects() async throws {
        let (ca, authority) = try IssuingTests.authority()
        let signings = Mutex(0)
        let cache = IssuedCertificateCache(servingMaterialFactory: NIOServingMaterial.issuedLeafFactory(keepingObjectsFor: 1)) { event in
            if case .issued = event { signings.withLock { $0 += 1 } }
        }
        func lookup(_ name: String) async throws -> IssuedCertificateCache.CachedLeaf {
            try #require(try await IssuingTests.await { cache.leaf(from: authority, for: .name(ServerName.normalize(name)!), now: Date(), completion: $0) })
        }
        let first = try await lookup("first.dev.test")
        _ = try await lookup("second.dev.test")
        let firstMaterial = try #require(first.servingMaterial as? NIOServingMaterial)
        #expect(!firstMaterial.isBuilt)

        let again = try await lookup("first.dev.test")
        #expect(again === first)
        let chain = try #require(again.servingMaterial as? NIOServingMaterial).certificateChain()
        #expect(try chain.map { try $0.toDERBytes() } == [first.leafDER, ca.parsed.der])
        #expect(try Certificate(derEncoded: first.leafDER).subject.commonName == "first.dev.test")
        #expect(signings.withLock { $0 } == 2)
    }
    /// A key type and the PEM form its file is written in.
    enum KeyForm: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case p256PKCS8, p256SEC1, p256SEC1AfterParameters, p384PKCS8, p384SEC1, rsaPKCS8, rsaPKCS1, ed25519PKCS8
        var testDescription: String { rawValue }
        var type: TestKeyType {
            switch self {
            case .p256PKCS8, .p256SEC1, .p256SEC1AfterParameters: .p256
            case .p384PKCS8, .p384SEC1: .p384
            case .rsaPKCS8, .rsaPKCS1: .rsa2048
            case .ed25519PKCS8: .ed25519
            }
        }
        func pem(_ key: TestKey) -> String? {
            switch self {
            case .p256PKCS8, .p384PKCS8, .rsaPKCS8, .ed25519PKCS8: key.pkcs8PEM
            case .p256SEC1, .p384SEC1: key.sec1PEM
            case .p256SEC1AfterParameters: key.sec1PEM.map { TestKey.p256ECParametersPEM + $0 }
            case .rsaPKCS1: key.pkcs1PEM
            }
        }
    }

    @Test("every key form a file may hold reaches BoringSSL as the same key, checked when built and made again at the first handshake, with and without the stated-key match of run",
          arguments: KeyForm.allCases, [false, true])
    func keyFormsReachBoringSSL(form: KeyForm, statedKeyMatch: Bool) throws {
        let authority = TestCertificate.authority()
        let leaf = authority.leaf(dnsNames: ["form.test"], keyType: form.type)
        var conf = leaf.conf()
        conf.tlsKey = form.pem(leaf.key)
        let context = CertificateBuildContext(servingMaterialFactory: NIOServingMaterial.factory, factoryChecksKeyPairs: statedKeyMatch)
        let material = try #require(try CertificateSet.build(from: ["form": conf], context: context).set.entries["form"]?.nioServingMaterial)
        #expect(!material.isBuilt)
        guard case .privateKey(let served)? = try material.contextOverride().privateKey else {
            Issue.record("no private key in the TLS objects")
            return
        }
        #expect(served == (try NIOSSLPrivateKey(bytes: Array(leaf.key.pkcs8PEM.utf8), format: .pem)))
        #expect(try material.certificateChain().map { try $0.toDERBytes() } == [leaf.parsed.der])
    }
}
