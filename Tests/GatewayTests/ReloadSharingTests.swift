import CertificateKit
import CertificateTestSupport
import Foundation
@testable import Gateway
import Testing

@Suite("A reload's configuration shares the set's copy of each unchanged entry", .timeLimit(.minutes(2)))
struct ReloadSharingTests {
    /// Where a string's bytes are (nil for one stored inline, 15 bytes or fewer).
    static func storage(_ text: String?) -> UnsafeRawPointer? {
        text?.utf8.withContiguousStorageIfAvailable { UnsafeRawPointer($0.baseAddress) } ?? nil
    }

    /// Equal text in storage of its own.
    static func copy(_ text: String) -> String { String(decoding: Array(text.utf8), as: UTF8.self) }

    @Test("entries equal to the set's take the set's values (same text storage); a changed or new entry keeps its own; the configuration is equal")
    func sharesUnchangedEntries() throws {
        let leaf = TestCertificate.authority().leaf(dnsNames: ["shared.test", "changed.test"])
        let served = try CertificateSet.build(from: [
            "shared": CertificateConf(domains: "shared.test", tlsCert: leaf.pem, tlsKey: leaf.key.pkcs8PEM),
            "changed": CertificateConf(domains: "changed.test", tlsCert: leaf.pem, tlsKey: leaf.key.pkcs8PEM),
        ], context: CertificateBuildContext()).set
        // The reload's file, read anew: equal text in new storage.
        var next = GatewayConfiguration(baseDirectory: "/")
        next.certificates = [
            "shared": CertificateConf(domains: "shared.test", tlsCert: Self.copy(leaf.pem), tlsKey: Self.copy(leaf.key.pkcs8PEM)),
            "changed": CertificateConf(domains: "changed.test", tlsCert: Self.copy(leaf.pem), tlsKey: Self.copy(leaf.key.pkcs8PEM), bufferDays: 9),
            "new": CertificateConf(domains: "new.test", tlsCert: Self.copy(leaf.pem), tlsKey: Self.copy(leaf.key.pkcs8PEM)),
        ]
        #expect(Self.storage(next.certificates["shared"]?.tlsCert) != Self.storage(served.entries["shared"]?.conf.tlsCert))

        let shared = UpdatePipeline.sharingEntries(next, of: served)
        #expect(shared.certificates == next.certificates)
        #expect(Self.storage(shared.certificates["shared"]?.tlsCert) == Self.storage(served.entries["shared"]?.conf.tlsCert))
        #expect(Self.storage(shared.certificates["changed"]?.tlsCert) == Self.storage(next.certificates["changed"]?.tlsCert))
        #expect(Self.storage(shared.certificates["new"]?.tlsCert) == Self.storage(next.certificates["new"]?.tlsCert))
    }
}
