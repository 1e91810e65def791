import CertificateKit
import CertificateTestSupport
import Foundation
import NIOCore
import NIOPosix
import Synchronization
import Testing
import X509

/// A leaf the local CA has not signed yet is signed on a signing thread: the handshake's
/// event loop only asks, and is told when the leaf is there.
@Suite("Signing off the event loop", .timeLimit(.minutes(1)))
struct SigningOffTheEventLoopTests {
    @Test("a miss asked on an event loop returns pending at once; the leaf is signed and handed over on a signing thread, not on that event loop; the next ask is a hit")
    func missIsSignedOffTheLoop() async throws {
        let ca = TestCertificate.authority(commonName: "off-the-loop CA")
        let entry = try #require(try CertificateSet.build(
            from: ["ca": ca.conf(domains: ["*.dev.test"], isCA: true)], context: CertificateBuildContext()).set.entries["ca"])
        let authority = LocalAuthority(entry: entry)
        let cache = IssuedCertificateCache()
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let name = try #require(ServerName.normalize("api.dev.test"))
        let delivered = Mutex<(onLoop: Bool, leafDER: [UInt8])?>(nil)
        let (answer, leaf): (String, IssuedCertificateCache.CachedLeaf?) = try await withCheckedThrowingContinuation { continuation in
            loop.execute {
                let lookup = cache.leaf(from: authority, for: .name(name), now: Date()) { result in
                    let onLoop = loop.inEventLoop
                    switch result {
                    case .success(let cached):
                        delivered.withLock { $0 = (onLoop, cached.leafDER) }
                        continuation.resume(returning: ("pending", cached))
                    case .failure(let error):
                        continuation.resume(throwing: error)
                    }
                }
                switch lookup {
                case .pending: break
                case .hit: continuation.resume(returning: ("hit", nil))
                case .refused(let refusal): continuation.resume(returning: ("refused \(refusal)", nil))
                }
            }
        }
        #expect(answer == "pending")
        #expect(leaf != nil)
        #expect(delivered.withLock { $0?.onLoop } == false)
        let der = try #require(delivered.withLock { $0?.leafDER })
        #expect(try Certificate(derEncoded: der).dnsNames == ["api.dev.test"])
        let again = try await loop.submit { () -> String in
            switch cache.leaf(from: authority, for: .name(name), now: Date(), completion: { _ in }) {
            case .hit: return "hit"
            case .pending: return "pending"
            case .refused: return "refused"
            }
        }.get()
        #expect(again == "hit")
    }
}
