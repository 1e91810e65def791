import CertificateKit
import CertificateKitNIO
import CertificateTestSupport
import Crypto
import Foundation
import Synchronization
import Testing
import X509

@Suite("On-the-fly signing", .timeLimit(.minutes(2)))
struct IssuingTests {
    static func authority(
        keyType: TestKeyType = .p256, domains: DomainList = ["*.dev.test", "dev.test", "127.0.0.1"],
        leafNames: LocalAuthority.LeafNames? = nil, leafValidityDays: Int? = nil
    ) throws -> (TestCertificate, LocalAuthority) {
        let ca = TestCertificate.authority(commonName: "Issuing test CA \(keyType)", keyType: keyType)
        var conf = ca.conf(domains: domains, isCA: true)
        conf.leafNames = leafNames
        conf.leafValidityDays = leafValidityDays
        let entry = try #require(try CertificateSet.build(from: ["ca": conf], context: CertificateBuildContext()).set.entries["ca"])
        return (ca, LocalAuthority(entry: entry))
    }

    /// Waits for a pending lookup's completion.
    static func await(_ body: (@escaping IssuedCertificateCache.Completion) -> IssuedCertificateCache.Lookup) async throws -> IssuedCertificateCache.CachedLeaf? {
        try await withCheckedThrowingContinuation { continuation in
            let lookup = body { result in continuation.resume(with: result.map(Optional.some)) }
            switch lookup {
            case .hit(let cached): continuation.resume(returning: cached)
            case .pending: break
            case .refused: continuation.resume(returning: nil)
            }
        }
    }

    @Test("an issued leaf as README lists it: P-256; SAN and CN the name; serverAuth; digitalSignature alone, critical; not a CA; SKI the SHA-1 of its key, AKI the CA's SKI; a random serial (20 random bytes), another for each leaf; notBefore exactly five minutes before the signing, notAfter 30 days after it")
    func issuedLeafFields() throws {
        let (ca, authority) = try Self.authority()
        let now = Date(timeIntervalSince1970: (Date().timeIntervalSince1970).rounded(.down))
        let first = try authority.sign(.name(ServerName.normalize("api.dev.test")!), now: now)
        let second = try authority.sign(.name(ServerName.normalize("api.dev.test")!), now: now)
        let leaf = first.chain[0].certificate
        let key = try #require(P256.Signing.PublicKey(leaf.publicKey))
        #expect(leaf.dnsNames == ["api.dev.test"])
        #expect(leaf.subject.commonName == "api.dev.test")
        #expect(try leaf.extensions.extendedKeyUsage == ExtendedKeyUsage([.serverAuth]))
        let keyUsage = try #require(leaf.extensions[oid: .X509ExtensionID.keyUsage])
        #expect(keyUsage.critical)
        #expect(try KeyUsage(keyUsage) == KeyUsage(digitalSignature: true))
        #expect(try leaf.extensions.basicConstraints == .notCertificateAuthority)
        let ski = try #require(try leaf.extensions.subjectKeyIdentifier)
        #expect(Array(ski.keyIdentifier) == Array(Insecure.SHA1.hash(data: key.x963Representation)))
        let caSKI = try #require(try ca.certificate.extensions.subjectKeyIdentifier)
        #expect(try leaf.extensions.authorityKeyIdentifier?.keyIdentifier == caSKI.keyIdentifier)
        // 20 random bytes, as an ASN.1 INTEGER (a leading zero byte dropped, or one added before a high bit).
        #expect((19...21).contains(leaf.serialNumber.bytes.count), "\(leaf.serialNumber)")
        #expect(second.chain[0].certificate.serialNumber != leaf.serialNumber)
        #expect(leaf.notValidBefore == now.addingTimeInterval(-300))
        #expect(leaf.notValidAfter == now.addingTimeInterval(30 * 86_400))
        #expect(ca.certificate.publicKey.isValidSignature(leaf.signature, for: leaf))
    }

    @Test("issued leaves pass openssl verify -purpose sslserver -verify_hostname (P-256 and RSA-2048 CAs)", arguments: [TestKeyType.p256, .rsa2048])
    func opensslVerifies(keyType: TestKeyType) async throws {
        let (ca, authority) = try Self.authority(keyType: keyType)
        let leaf = try authority.sign(.name(ServerName.normalize("api.dev.test")!), now: Date())
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("certgate-issue-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        try ca.pem.write(to: folder.appendingPathComponent("ca.pem"), atomically: true, encoding: .utf8)
        try leaf.chain[0].certificate.serializeAsPEM().pemString.write(to: folder.appendingPathComponent("leaf.pem"), atomically: true, encoding: .utf8)
        let (status, text) = try await runCommand("/usr/bin/openssl", [
            "verify", "-CAfile", folder.appendingPathComponent("ca.pem").path, "-purpose", "sslserver",
            "-verify_hostname", "api.dev.test", folder.appendingPathComponent("leaf.pem").path,
        ])
        #expect(status == 0, "\(text)")
        #expect(text.contains(": OK"))
        // The facts the design asks for.
        let certificate = leaf.chain[0].certificate
        #expect(certificate.keyDescription == "ECDSA P-256")
        #expect(certificate.dnsNames == ["api.dev.test"])
        #expect(try certificate.extensions.extendedKeyUsage?.contains(.serverAuth) == true)
        #expect(certificate.notValidBefore < Date().addingTimeInterval(-60))
        #expect(certificate.notValidAfter <= Date().addingTimeInterval(30 * 86_400 + 5))
        #expect(leaf.chain.count == 2)
    }

    @Test("an intermediate issuer's leaf is served with the issuer's certificate and the issuer entry's own chain after it (the root left out), and openssl verifies it to the root")
    func issuerChainFollowsTheLeaf() async throws {
        let root = TestCertificate.authority(commonName: "Issuing Root")
        let parent = root.intermediate(commonName: "Issuing Parent", maxPathLength: 1)
        let ca = parent.intermediate(commonName: "Issuing Intermediate")
        // The entry's file: its certificate, its parent, the root (which is not sent).
        let conf = ca.conf(chain: [parent, root], domains: ["*.dev.test"], isCA: true)
        let entry = try #require(try CertificateSet.build(from: ["ca": conf], context: CertificateBuildContext()).set.entries["ca"])
        let authority = LocalAuthority(entry: entry)
        let leaf = try authority.sign(.name(ServerName.normalize("api.dev.test")!), now: Date())
        #expect(leaf.chain.map(\.der) == [leaf.chain[0].der, ca.parsed.der, parent.parsed.der])
        #expect(leaf.chain.dropFirst().map { $0.certificate.subject.commonName } == ["Issuing Intermediate", "Issuing Parent"])
        // As the gateway's TLS objects carry it.
        let material = try #require(try NIOServingMaterial.issuedLeafFactory()(ServingMaterialInput(chain: leaf.chain, keyBlock: leaf.key.block)) as? NIOServingMaterial)
        #expect(try material.certificateChain().map { try $0.toDERBytes() } == leaf.chain.map(\.der))

        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("certgate-issue-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        try root.pem.write(to: folder.appendingPathComponent("root.pem"), atomically: true, encoding: .utf8)
        try leaf.chain.dropFirst().map { $0.pem + "\n" }.joined().write(to: folder.appendingPathComponent("sent.pem"), atomically: true, encoding: .utf8)
        try (leaf.chain[0].pem + "\n").write(to: folder.appendingPathComponent("leaf.pem"), atomically: true, encoding: .utf8)
        let verified = try await runCommand("/usr/bin/openssl", [
            "verify", "-CAfile", folder.appendingPathComponent("root.pem").path, "-untrusted", folder.appendingPathComponent("sent.pem").path,
            "-purpose", "sslserver", "-verify_hostname", "api.dev.test", folder.appendingPathComponent("leaf.pem").path,
        ])
        #expect(verified.status == 0, "\(verified.output)")
    }

    @Test("a leaf never outlives its CA")
    func validityCappedByAuthority() throws {
        let ca = TestCertificate.authority(notAfter: Date().addingTimeInterval(2 * 86_400))
        let entry = try #require(try CertificateSet.build(from: ["ca": ca.conf(domains: ["*"], isCA: true)], context: CertificateBuildContext()).set.entries["ca"])
        let leaf = try LocalAuthority(entry: entry).sign(.name(ServerName.normalize("x.test")!), now: Date())
        #expect(leaf.notAfter == ca.certificate.notValidAfter)
    }

    @Test("the allow-list: names outside the patterns are refused; '*' takes every name; addresses need '*' or their IP")
    func allowList() throws {
        let (_, authority) = try Self.authority()
        #expect(authority.allows(.name(ServerName.normalize("a.dev.test")!)))
        #expect(authority.allows(.name(ServerName.normalize("dev.test")!)))
        #expect(!authority.allows(.name(ServerName.normalize("a.b.dev.test")!)))
        #expect(!authority.allows(.name(ServerName.normalize("evil.test")!)))
        #expect(authority.allows(.address(IPAddress("127.0.0.1")!)))
        #expect(!authority.allows(.address(IPAddress("10.0.0.1")!)))
        let (_, everything) = try Self.authority(domains: ["*"])
        #expect(everything.allows(.name(ServerName.normalize("anything.example")!)))
        #expect(everything.allows(.address(IPAddress("::1")!)))

        let cache = IssuedCertificateCache()
        let lookup = cache.leaf(from: authority, for: .name(ServerName.normalize("evil.test")!), now: Date()) { _ in
            Issue.record("a refused name must not be signed")
        }
        guard case .refused(.notAllowed) = lookup else { Issue.record("expected not_allowed, got \(lookup)"); return }
    }

    @Test("no SNI: the leaf carries the local IP address as an IP SAN")
    func ipLeaf() throws {
        let (_, authority) = try Self.authority()
        let leaf = try authority.sign(.address(IPAddress("127.0.0.1")!), now: Date())
        #expect(leaf.chain[0].certificate.ipAddresses == [IPAddress("127.0.0.1")!])
        #expect(leaf.chain[0].certificate.dnsNames.isEmpty)
    }

    @Test("1,000 concurrent requests for one new name produce one signature")
    func singleFlight() async throws {
        let (_, authority) = try Self.authority()
        let issued = Atomic<Int>(0)
        let cache = IssuedCertificateCache(onEvent: { event in
            if case .issued = event { issued.add(1, ordering: .relaxed) }
        })
        let name = LocalAuthority.Subject.name(ServerName.normalize("one.dev.test")!)
        let leaves = try await withThrowingTaskGroup(of: [UInt8]?.self) { group in
            for _ in 0..<1_000 {
                group.addTask {
                    try await Self.await { cache.leaf(from: authority, for: name, now: Date(), completion: $0) }?.leafDER
                }
            }
            var all: [[UInt8]?] = []
            for try await leaf in group { all.append(leaf) }
            return all
        }
        #expect(issued.load(ordering: .relaxed) == 1)
        #expect(Set(leaves.compactMap { $0 }).count == 1)
        #expect(leaves.allSatisfy { $0 != nil })
    }

    @Test("the cache keeps at most its capacity, evicting the least recently used")
    func lruBound() async throws {
        let (_, authority) = try Self.authority()
        var policy = IssuedCertificateCache.Policy()
        policy.capacity = 3
        let cache = IssuedCertificateCache(policy: policy)
        func fetch(_ name: String) async throws -> [UInt8]? {
            try await Self.await { cache.leaf(from: authority, for: .name(ServerName.normalize(name)!), now: Date(), completion: $0) }?.leafDER
        }
        let first = try await fetch("a.dev.test")
        let bFirst = try await fetch("b.dev.test")
        let cFirst = try await fetch("c.dev.test")
        _ = try await fetch("a.dev.test")  // a is now the most recent; b the least (order b, c, a)
        let dFirst = try await fetch("d.dev.test")  // evicts b (c, a, d)
        #expect(cache.count == 3)
        #expect(try await fetch("a.dev.test") == first)  // a hit (c, d, a)
        // b was evicted: fetching it signs anew (another key, so another leaf) and evicts c (d, a, b).
        let bSecond = try await fetch("b.dev.test")
        #expect(bSecond != nil && bSecond != bFirst)
        #expect(cache.count == 3)
        #expect(try await fetch("d.dev.test") == dFirst)  // d was kept (a, b, d)
        let cSecond = try await fetch("c.dev.test")  // c was evicted: signed anew
        #expect(cSecond != nil && cSecond != cFirst)
    }

    @Test("new limits take effect at once: a smaller capacity evicts the least recently used, a lower burst refuses the next new name")
    func replacedPolicy() async throws {
        let (_, authority) = try Self.authority()
        let cache = IssuedCertificateCache()
        func fetch(_ name: String) async throws -> [UInt8]? {
            try await Self.await { cache.leaf(from: authority, for: .name(ServerName.normalize(name)!), now: Date(), completion: $0) }?.leafDER
        }
        _ = try await fetch("a.dev.test")
        let bFirst = try await fetch("b.dev.test")
        let cFirst = try await fetch("c.dev.test")
        _ = try await fetch("a.dev.test")  // use order: b, c, a (b least recent)

        var policy = IssuedCertificateCache.Policy()
        policy.capacity = 2
        policy.signingsPerSecond = 0
        policy.burst = 1
        let evicted = cache.replacePolicy(policy)
        #expect(evicted == [IssuedLeafKey(authority: authority.fingerprint, name: "b.dev.test")])
        #expect(cache.count == 2)
        #expect(cache.policy.capacity == 2)
        #expect(try await fetch("c.dev.test") == cFirst)  // kept: a hit, no signature
        // Burst 1 leaves one token (the default's 400 were clamped to it): b is signed anew…
        let bSecond = try await fetch("b.dev.test")
        #expect(bSecond != nil && bSecond != bFirst)
        // …and the next new name finds none, with no refill at 0 per second.
        guard case .refused(.rateLimited) = cache.leaf(from: authority, for: .name(ServerName.normalize("d.dev.test")!), now: Date(), completion: { _ in }) else {
            Issue.record("expected rate_limited after the burst was lowered to 1"); return
        }
    }

    @Test("new signatures beyond the rate limit are refused, cached names are not")
    func rateLimit() async throws {
        let (_, authority) = try Self.authority()
        var policy = IssuedCertificateCache.Policy()
        policy.signingsPerSecond = 0
        policy.burst = 2
        let refusals = Mutex<[IssuedCertificateCache.Refusal]>([])
        let cache = IssuedCertificateCache(policy: policy, onEvent: { event in
            if case .refused(let reason) = event { refusals.withLock { $0.append(reason) } }
        })
        let now = Date()
        for name in ["a.dev.test", "b.dev.test"] {
            #expect(try await Self.await { cache.leaf(from: authority, for: .name(ServerName.normalize(name)!), now: now, completion: $0) } != nil)
        }
        let third = cache.leaf(from: authority, for: .name(ServerName.normalize("c.dev.test")!), now: now) { _ in }
        guard case .refused(.rateLimited) = third else { Issue.record("expected rate_limited, got \(third)"); return }
        guard case .hit = cache.leaf(from: authority, for: .name(ServerName.normalize("a.dev.test")!), now: now, completion: { _ in }) else {
            Issue.record("a cached name must still be served"); return
        }
        #expect(refusals.withLock { $0 } == [.rateLimited])
    }

    @Test("a rotated CA never serves a leaf of the old one, and the sweep drops the old leaves")
    func rotation() async throws {
        let (_, old) = try Self.authority()
        let (newCA, new) = try Self.authority()
        let cache = IssuedCertificateCache()
        let name = LocalAuthority.Subject.name(ServerName.normalize("r.dev.test")!)
        let oldLeaf = try #require(try await Self.await { cache.leaf(from: old, for: name, now: Date(), completion: $0) })
        let newLeaf = try #require(try await Self.await { cache.leaf(from: new, for: name, now: Date(), completion: $0) })
        #expect(oldLeaf.leafDER != newLeaf.leafDER)
        #expect(try Certificate(derEncoded: newLeaf.leafDER).isIssued(by: newCA.certificate))
        #expect(cache.sweep(now: Date(), currentAuthorities: [new.fingerprint]) == 1)
        #expect(cache.count == 1)
    }

    @Test("a leaf with less than a third of its life left is served while its replacement is signed")
    func renewal() async throws {
        let (_, authority) = try Self.authority(leafValidityDays: 3)
        let cache = IssuedCertificateCache()
        let name = LocalAuthority.Subject.name(ServerName.normalize("renew.dev.test")!)
        let start = Date()
        let first = try #require(try await Self.await { cache.leaf(from: authority, for: name, now: start, completion: $0) })
        // Two and a half days later: still valid, but due for renewal.
        let later = start.addingTimeInterval(2.5 * 86_400)
        guard case .hit(let served) = cache.leaf(from: authority, for: name, now: later, completion: { _ in }) else {
            Issue.record("the old leaf must be served during renewal"); return
        }
        #expect(served.leafDER == first.leafDER)
        var renewed: IssuedCertificateCache.CachedLeaf?
        for _ in 0..<200 {
            if case .hit(let current) = cache.leaf(from: authority, for: name, now: later, completion: { _ in }),
               current.leafDER != first.leafDER {
                renewed = current
                break
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        let replacement = try #require(renewed)
        #expect(replacement.notAfter > first.notAfter)
        // Past its notAfter a leaf is never served: it is signed anew.
        let expired = start.addingTimeInterval(10 * 86_400)
        #expect(cache.sweep(now: expired) == 1)
    }

    @Test("leaf_names: wildcard signs the parent wildcard, shared by siblings")
    func wildcardLeaves() async throws {
        let (_, authority) = try Self.authority(leafNames: .wildcard)
        let cache = IssuedCertificateCache()
        let a = try #require(try await Self.await { cache.leaf(from: authority, for: .name(ServerName.normalize("a.dev.test")!), now: Date(), completion: $0) })
        let b = try #require(try await Self.await { cache.leaf(from: authority, for: .name(ServerName.normalize("b.dev.test")!), now: Date(), completion: $0) })
        #expect(try Certificate(derEncoded: a.leafDER).dnsNames == ["*.dev.test"])
        #expect(a.leafDER == b.leafDER)
    }
}
