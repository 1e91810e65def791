import CertificateKit
import CertificateTestSupport
import Foundation
@testable import Gateway
import Testing

@Suite("Per-entry validity series at scrape time", .timeLimit(.minutes(2)))
struct ValiditySeriesTests {
    static let authority = TestCertificate.authority(commonName: "Series CA")

    @Test("three series per entry, with its notAfter, notBefore and expiring flag; label values escaped")
    func render() throws {
        let now = Date()
        let soon = Self.authority.leaf(dnsNames: ["soon.test"], notAfter: now.addingTimeInterval(2 * 86_400))
        let later = Self.authority.leaf(dnsNames: ["later.test"], notAfter: now.addingTimeInterval(60 * 86_400))
        let set = try CertificateSet.build(from: [
            "soon": soon.conf(),
            #"odd"name"\x"#: later.conf(),
        ], context: CertificateBuildContext()).set
        var output: [UInt8] = []
        ValiditySeries.render(set, now: now, into: &output)
        let lines = String(decoding: output, as: UTF8.self).split(separator: "\n").map(String.init)
        #expect(lines.filter { $0.hasPrefix("# TYPE ") }.count == 3)
        #expect(lines.contains("certgate_certificate_expiring{name=\"soon\"} 1"))
        #expect(lines.contains(#"certgate_certificate_expiring{name="odd\"name\"\\x"} 0"#))
        let notAfter = Int64(soon.certificate.notValidAfter.timeIntervalSince1970)
        #expect(lines.contains("certgate_certificate_not_after_timestamp_seconds{name=\"soon\"} \(notAfter)"))
        let notBefore = Int64(soon.certificate.notValidBefore.timeIntervalSince1970)
        #expect(lines.contains("certgate_certificate_not_before_timestamp_seconds{name=\"soon\"} \(notBefore)"))
        #expect(lines.filter { !$0.hasPrefix("#") }.count == 6)
    }
}
