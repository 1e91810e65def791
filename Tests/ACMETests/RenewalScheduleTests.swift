import Crypto
import Foundation
import SwiftASN1
import Testing
import X509
@testable import ACME

@Suite("When an obtained certificate is renewed (RFC 9773 ARI, or a third of its life left)", .timeLimit(.minutes(2)))
struct RenewalScheduleTests {
    static let now = Date(timeIntervalSince1970: 1_800_000_000)

    @Test("ARI's certificate identifier of RFC 9773 §4.1's example: AKI 69:88:5B:… and serial 00:87:65:43:21")
    func certificateIdentifier() throws {
        let key = P256.Signing.PrivateKey()
        let authorityKeyIdentifier: [UInt8] = [
            0x69, 0x88, 0x5B, 0x6B, 0x87, 0x46, 0x40, 0x41, 0xE1, 0xB3,
            0x7B, 0x84, 0x7B, 0xA0, 0xAE, 0x2C, 0xDE, 0x01, 0xC8, 0xD4,
        ]
        let name = try DistinguishedName { CommonName("ari.test") }
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(bytes: [0x00, 0x87, 0x65, 0x43, 0x21]),
            publicKey: .init(key.publicKey), notValidBefore: Self.now, notValidAfter: Self.now.addingTimeInterval(86_400),
            issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions { AuthorityKeyIdentifier(keyIdentifier: authorityKeyIdentifier[...]) },
            issuerPrivateKey: .init(key))
        #expect(ARICertificateIdentifier.of(certificate) == "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE")
    }

    @Test("a window in the past means now; a window in the future gives a time inside it")
    func ariWindow() {
        let past = ACMERenewalInfo.Window(start: Self.now.addingTimeInterval(-7_200), end: Self.now.addingTimeInterval(-3_600))
        #expect(RenewalSchedule.renewalTime(notBefore: Self.now, notAfter: Self.now, window: past, now: Self.now) == Self.now)
        let future = ACMERenewalInfo.Window(start: Self.now.addingTimeInterval(86_400), end: Self.now.addingTimeInterval(2 * 86_400))
        // The random pick is given the window's bounds; its choice is used as is.
        let lowest = RenewalSchedule.renewalTime(notBefore: Self.now, notAfter: Self.now, window: future, now: Self.now) { $0.lowerBound }
        let highest = RenewalSchedule.renewalTime(notBefore: Self.now, notAfter: Self.now, window: future, now: Self.now) { $0.upperBound }
        #expect(lowest == future.start)
        #expect(highest == future.end)
        for _ in 0..<100 {
            let time = RenewalSchedule.renewalTime(notBefore: Self.now, notAfter: Self.now, window: future, now: Self.now)
            #expect(time >= future.start && time <= future.end)
        }
        // A window that has begun: from now to its end.
        let begun = ACMERenewalInfo.Window(start: Self.now.addingTimeInterval(-60), end: Self.now.addingTimeInterval(60))
        #expect(RenewalSchedule.renewalTime(notBefore: Self.now, notAfter: Self.now, window: begun, now: Self.now) { $0.lowerBound } == Self.now)
    }

    @Test("a later ARI answer keeps the chosen time while it lies inside the new window; outside it, a new time inside the window; a moved-back window that has passed means now")
    func ariWindowKept() {
        let window = ACMERenewalInfo.Window(start: Self.now.addingTimeInterval(3_600), end: Self.now.addingTimeInterval(7_200))
        let chosen = Self.now.addingTimeInterval(5_000)
        #expect(RenewalSchedule.renewalTime(keeping: chosen, window: window, notBefore: Self.now, notAfter: Self.now, now: Self.now) { _ in 0 } == chosen)
        let moved = ACMERenewalInfo.Window(start: Self.now.addingTimeInterval(600), end: Self.now.addingTimeInterval(1_200))
        #expect(RenewalSchedule.renewalTime(keeping: chosen, window: moved, notBefore: Self.now, notAfter: Self.now, now: Self.now) { $0.upperBound }
            == moved.end)
        let passed = ACMERenewalInfo.Window(start: Self.now.addingTimeInterval(-7_200), end: Self.now.addingTimeInterval(-3_600))
        #expect(RenewalSchedule.renewalTime(keeping: chosen, window: passed, notBefore: Self.now, notAfter: Self.now, now: Self.now) == Self.now)
        #expect(RenewalSchedule.renewalTime(keeping: nil, window: window, notBefore: Self.now, notAfter: Self.now, now: Self.now) { $0.lowerBound }
            == window.start)
    }

    @Test("ARI is asked again after its Retry-After, 6 hours without one, within a minute to a day")
    func ariRecheck() {
        #expect(RenewalSchedule.nextRenewalInfoCheck(retryAfter: nil) == 21_600)
        #expect(RenewalSchedule.nextRenewalInfoCheck(retryAfter: 3_600) == 3_600)
        #expect(RenewalSchedule.nextRenewalInfoCheck(retryAfter: 1) == 60)
        #expect(RenewalSchedule.nextRenewalInfoCheck(retryAfter: 7 * 86_400) == 86_400)
    }

    @Test("without ARI: a 90-day certificate renews 30 days before its notAfter, or renew_before")
    func withoutARI() {
        let notAfter = Self.now.addingTimeInterval(90 * 86_400)
        #expect(RenewalSchedule.renewalTime(notBefore: Self.now, notAfter: notAfter, now: Self.now) == Self.now.addingTimeInterval(60 * 86_400))
        #expect(RenewalSchedule.renewalTime(notBefore: Self.now, notAfter: notAfter, renewBefore: 10 * 86_400, now: Self.now)
            == Self.now.addingTimeInterval(80 * 86_400))
    }

    @Test("failures back off 1, 2, 4 … minutes, never more than a day")
    func backoff() {
        #expect((1...6).map(RenewalSchedule.backoff) == [60, 120, 240, 480, 960, 1_920])
        #expect(RenewalSchedule.backoff(failures: 11) == 61_440)
        #expect(RenewalSchedule.backoff(failures: 12) == 86_400)
        #expect(RenewalSchedule.backoff(failures: 1_000) == 86_400)
        #expect(RenewalSchedule.backoff(failures: 0) == 0)
    }
}
