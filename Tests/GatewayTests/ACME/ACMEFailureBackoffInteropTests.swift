import CertificateTestSupport
import ControlProtocol
import Foundation
import Testing

/// A failed order waits before the next attempt: one minute after the first failure
/// (doubling), or as long as the CA's `Retry-After` says when that is longer.
@Suite("the wait after a failed order, through the real binary", .serialized, .timeLimit(.minutes(2)))
struct ACMEFailureBackoffInteropTests {
    @Test("a CA that refuses with rateLimited and Retry-After 7200 is asked again in two hours, not in one minute; one that refuses without Retry-After is asked again in a minute; each says why in ctl list, ListCertificates (acme_status, last_error, next_attempt) and the log, and is counted as invalid")
    func retryAfterOnFailure() async throws {
        let patient = try await RateLimitingCA(retryAfter: 7_200)
        let plain = try await RateLimitingCA(retryAfter: nil)
        defer { Task { await patient.close(); await plain.close() } }
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        try folder.write(patient.rootPEM + plain.rootPEM, to: "ca-roots.pem")
        let config = ControlInteropTests.config(
            GatewayInteropTests.config(extraCertificates: """
                  waits: { acme: patient, domains: waits.test }
                  soon: { acme: plain, domains: soon.test }
                """),
            extra: """
                metrics:
                  listen: 127.0.0.1:0
                acme:
                  patient: { directory: "\(patient.directoryURL)", ca_roots: ca-roots.pem, challenges: [tls-alpn-01] }
                  plain: { directory: "\(plain.directoryURL)", ca_roots: ca-roots.pem, challenges: [tls-alpn-01] }

                """)
        let gateway = try await GatewayProcess(config: config, folder: folder)
        defer { gateway.stop() }
        #expect(try await gateway.waitForLog("obtaining a certificate failed", occurrences: 2, timeout: .seconds(30)), "\(gateway.logText)")
        let now = Date()
        #expect(patient.refused == 1 && plain.refused == 1)

        let list = try await runCtl(socket: ControlInteropTests.socket(folder), ["list"])
        func nextAttempt(_ entry: String) -> Date? {
            let line = list.stdout.split(separator: "\n").first { $0.hasPrefix("\(entry): ") } ?? ""
            return line.firstRange(of: ", next attempt ").flatMap { ControlCommandInteropTests.date(line[$0.upperBound...].prefix(20)) }
        }
        let waits = try #require(nextAttempt("waits"), "\(list.stdout)")
        let soon = try #require(nextAttempt("soon"), "\(list.stdout)")
        // Whole seconds in the listing; the failures happened within the last 30 s.
        #expect(waits > now.addingTimeInterval(7_200 - 35) && waits <= now.addingTimeInterval(7_201), "\(waits) vs \(now)")
        #expect(soon > now.addingTimeInterval(60 - 35) && soon <= now.addingTimeInterval(61), "\(soon) vs \(now)")
        let waitsLine = list.stdout.split(separator: "\n").first { $0.hasPrefix("waits: ") } ?? ""
        #expect(waitsLine.hasSuffix("; last error: newAccount: the CA refused: rateLimited: too many new accounts from this address (retry after 7200 s)"), "\(list.stdout)")
        #expect(gateway.logText.contains("reason=newAccount: the CA refused: rateLimited: too many new accounts from this address (retry after 7200 s)"), "\(gateway.logText)")

        // The same through ListCertificates, and counted as refused by the CA.
        let listed = try await ControlInteropTests.withControl(socket: ControlInteropTests.socket(folder)) { control in
            try await control.listCertificates(Certgate_Control_V1_ListCertificatesRequest())
        }
        let row = try #require(listed.certificates.first { $0.name == "waits" })
        #expect(row.acme == "patient")
        #expect(row.acmeStatus == "failed")
        #expect(row.lastError == "newAccount: the CA refused: rateLimited: too many new accounts from this address (retry after 7200 s)")
        #expect(abs(Double(row.nextAttempt.seconds) - waits.timeIntervalSince1970) < 1)
        let metrics = try await scrapeMetrics(port: try #require(gateway.metricsPort))
        for issuer in ["patient", "plain"] {
            #expect(metrics.value("certgate_acme_orders_total", ["acme": issuer, "result": "invalid"]) == 1, "\(issuer)")
            #expect(metrics.value("certgate_acme_orders_total", ["acme": issuer, "result": "valid"]) == nil, "\(issuer)")
        }
    }
}
