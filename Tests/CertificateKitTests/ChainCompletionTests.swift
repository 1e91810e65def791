import Crypto
import CertificateKit
import CertificateTestSupport
import Foundation
import Testing
import X509

@Suite("Chain completion", .timeLimit(.minutes(2)))
struct ChainCompletionTests {
    /// A hierarchy shaped like Let's Encrypt's: an old widely trusted root, a newer root
    /// cross-signed by it, and an intermediate issued by the new root and cross-signed
    /// by the old one.
    struct Hierarchy {
        let oldRoot = TestCertificate.authority(commonName: "Old Root", notBefore: Date().addingTimeInterval(-3000 * 86_400))
        let newRoot = TestCertificate.authority(commonName: "New Root", keyType: .p384, notBefore: Date().addingTimeInterval(-1000 * 86_400))
        let intermediate: TestCertificate
        let intermediateCross: TestCertificate
        let newRootCross: TestCertificate

        init() {
            intermediate = newRoot.intermediate(commonName: "Issuing CA")
            intermediateCross = oldRoot.crossSign(intermediate, pathLength: 0)
            newRootCross = oldRoot.crossSign(newRoot)
        }
    }

    func verifyLinks(_ chain: [ParsedCertificate], from leaf: Certificate, anchors: [Certificate], sourceLocation: SourceLocation = #_sourceLocation) {
        var child = leaf
        for link in chain {
            #expect(child.isIssued(by: link.certificate), "\(link.certificate.subject) did not sign \(child.subject)", sourceLocation: sourceLocation)
            child = link.certificate
        }
        #expect(anchors.contains { child.isIssued(by: $0) }, "the chain does not end under a root", sourceLocation: sourceLocation)
    }

    @Test("the variant anchored at the older root is preferred, and the shortest such chain")
    func prefersOlderAnchor() {
        let h = Hierarchy()
        let completion = ChainCompletion(certificates: [h.oldRoot, h.newRoot, h.intermediate, h.intermediateCross, h.newRootCross].map(\.parsed))
        let leaf = h.intermediate.leaf(dnsNames: ["a.test"])
        let chain = completion.chain(for: leaf.certificate, at: Date())
        #expect(chain.map(\.der) == [h.intermediateCross.parsed.der])
        verifyLinks(chain, from: leaf.certificate, anchors: [h.oldRoot.certificate])
    }

    @Test("without the direct cross-sign, the chain goes through the cross-signed new root")
    func throughCrossSignedRoot() {
        let h = Hierarchy()
        let completion = ChainCompletion(certificates: [h.oldRoot, h.newRoot, h.intermediate, h.newRootCross].map(\.parsed))
        let leaf = h.intermediate.leaf(dnsNames: ["a.test"])
        let chain = completion.chain(for: leaf.certificate, at: Date())
        #expect(chain.map(\.der) == [h.intermediate.parsed.der, h.newRootCross.parsed.der])
        verifyLinks(chain, from: leaf.certificate, anchors: [h.oldRoot.certificate])
    }

    @Test("an expired variant is never used")
    func skipsExpired() {
        let h = Hierarchy()
        let expiredCross = h.oldRoot.crossSign(h.intermediate, notAfter: Date().addingTimeInterval(-86_400), pathLength: 0)
        let completion = ChainCompletion(certificates: [h.oldRoot, h.newRoot, h.intermediate, expiredCross].map(\.parsed))
        let leaf = h.intermediate.leaf(dnsNames: ["a.test"])
        let chain = completion.chain(for: leaf.certificate, at: Date())
        #expect(chain.map(\.der) == [h.intermediate.parsed.der])
        verifyLinks(chain, from: leaf.certificate, anchors: [h.newRoot.certificate])
    }

    @Test("roots are never part of a completed chain")
    func noRoots() {
        let h = Hierarchy()
        let completion = ChainCompletion(certificates: [h.oldRoot, h.newRoot, h.intermediate, h.intermediateCross].map(\.parsed))
        let chain = completion.chain(for: h.intermediate.leaf(dnsNames: ["a.test"]).certificate, at: Date())
        #expect(!chain.contains { $0.certificate.isSelfSigned })
        // A leaf issued by a root directly needs no chain.
        #expect(completion.chain(for: h.oldRoot.leaf(dnsNames: ["b.test"]).certificate, at: Date()).isEmpty)
    }

    @Test("a CA with the issuer's name but another key is not taken for the issuer")
    func matchesByKeyIdentifier() {
        let h = Hierarchy()
        let impostor = h.newRoot.intermediate(commonName: "Issuing CA")  // same name, new key
        let completion = ChainCompletion(certificates: [h.oldRoot, h.newRoot, impostor].map(\.parsed))
        #expect(completion.chain(for: h.intermediate.leaf(dnsNames: ["a.test"]).certificate, at: Date()).isEmpty)
    }

    @Test("a leaf arriving alone is completed when its set is built; a leaf with a chain is left alone")
    func completionDuringBuild() throws {
        let h = Hierarchy()
        let completion = ChainCompletion(certificates: [h.oldRoot, h.newRoot, h.intermediate, h.intermediateCross].map(\.parsed))
        let context = CertificateBuildContext(chainCompletion: completion)
        let alone = h.intermediate.leaf(dnsNames: ["alone.test"])
        let withChain = h.intermediate.leaf(dnsNames: ["chained.test"])
        let set = try CertificateSet.build(from: ["alone": alone.conf(), "chained": withChain.conf(chain: [h.intermediate])], context: context).set
        #expect(set.entries["alone"]?.chainWasCompleted == true)
        #expect(set.entries["alone"]?.chainFingerprints == [Array(SHA256.hash(data: h.intermediateCross.parsed.der))])
        #expect(set.entries["chained"]?.chainWasCompleted == false)
        #expect(set.entries["chained"]?.chainFingerprints == [Array(SHA256.hash(data: h.intermediate.parsed.der))])
    }

    // MARK: The bundled Let's Encrypt certificates

    static let bundle = try! LetsEncryptBundle.certificates()
    static let july2026 = Date(timeIntervalSince1970: 1_784_000_000)  // 2026-07-14

    static func bundled(_ commonName: String, issuer: String) -> ParsedCertificate {
        bundle.first { $0.certificate.subject.commonName == commonName && $0.certificate.issuer.commonName == issuer }!
    }

    static var roots: [Certificate] { bundle.filter { $0.certificate.isSelfSigned }.map(\.certificate) }

    @Test("all 28 bundled certificates load")
    func bundleLoads() {
        #expect(Self.bundle.count == 28)
        #expect(Self.roots.count == 4)
    }

    @Test("YE1 completes with Root YE (by X2), then ISRG Root X2 (by X1)")
    func ye1() {
        let ye1 = Self.bundled("YE1", issuer: "Root YE")
        let chain = LetsEncryptBundle.completion.chain(for: ye1.certificate, at: Self.july2026)
        #expect(chain.map { "\($0.certificate.subject.commonName!) by \($0.certificate.issuer.commonName!)" }
                == ["Root YE by ISRG Root X2", "ISRG Root X2 by ISRG Root X1"])
        verifyLinks(chain, from: ye1.certificate, anchors: Self.roots)
    }

    @Test("YR1 completes with Root YR (by X1)")
    func yr1() {
        let yr1 = Self.bundled("YR1", issuer: "Root YR")
        let chain = LetsEncryptBundle.completion.chain(for: yr1.certificate, at: Self.july2026)
        #expect(chain.map { "\($0.certificate.subject.commonName!) by \($0.certificate.issuer.commonName!)" } == ["Root YR by ISRG Root X1"])
        verifyLinks(chain, from: yr1.certificate, anchors: Self.roots)
    }

    @Test("every bundled intermediate's own chain anchors at ISRG Root X1, each link verified")
    func everyIntermediateReachesX1() {
        let x1 = Self.roots.first { $0.subject.commonName == "ISRG Root X1" }!
        for intermediate in Self.bundle where !intermediate.certificate.isSelfSigned {
            let chain = LetsEncryptBundle.completion.chain(for: intermediate.certificate, at: Self.july2026)
            let last = chain.last?.certificate ?? intermediate.certificate
            #expect(last.isIssued(by: x1), "\(intermediate.certificate.subject) via \(chain.count) links")
            verifyLinks(chain, from: intermediate.certificate, anchors: [x1])
        }
    }

    @Test("nothing is completed with an intermediate past its notAfter")
    func bundleRespectsExpiry() {
        let ye1 = Self.bundled("YE1", issuer: "Root YE")
        // After 2032-09-02 the cross-signs have expired: nothing verified remains but the newest roots.
        let later = Date(timeIntervalSince1970: 2_000_000_000)  // 2033-05-18
        #expect(LetsEncryptBundle.completion.chain(for: ye1.certificate, at: later).isEmpty)
    }
}
