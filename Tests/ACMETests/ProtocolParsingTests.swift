import Foundation
import Testing
@testable import ACME

@Suite("Reading what an ACME server answers: problems, Retry-After, Link, times", .timeLimit(.minutes(2)))
struct ProtocolParsingTests {
    @Test("a problem document reads as its ACME error name and the CA's detail, subproblems named by identifier, control characters escaped")
    func problems() throws {
        let json = #"""
        {"type":"urn:ietf:params:acme:error:rejectedIdentifier","detail":"Some names were rejected\u001b[31m","status":400,
         "subproblems":[{"type":"urn:ietf:params:acme:error:caa","detail":"CAA forbids","identifier":{"type":"dns","value":"a.test"}}]}
        """#
        let problem = try JSONDecoder().decode(ACMEProblem.self, from: Data(json.utf8))
        #expect(problem.kind == "rejectedIdentifier")
        #expect(problem.description == #"rejectedIdentifier: Some names were rejected\u{1B}[31m; caa (a.test): CAA forbids"#)
        #expect(ACMEProblem(type: "urn:ietf:params:acme:error:badNonce").isBadNonce)
        #expect(ACMEProblem(type: "about:blank", detail: "HTTP 500").description == "about:blank: HTTP 500")
        #expect(ACMEProblem(type: "x", detail: String(repeating: "a", count: 400)).description.count == "x: ".count + 300 + 1)
    }

    @Test("Retry-After as seconds or as an HTTP-date; anything else is ignored")
    func retryAfter() {
        let now = Date(timeIntervalSince1970: 1_445_412_480)  // Wed, 21 Oct 2015 07:28:00 GMT
        #expect(RetryAfter.seconds("120", now: now) == 120)
        #expect(RetryAfter.seconds("Wed, 21 Oct 2015 07:30:00 GMT", now: now) == 120)
        #expect(RetryAfter.seconds("Wed, 21 Oct 2015 07:00:00 GMT", now: now) == 0)
        #expect(RetryAfter.seconds("soon", now: now) == nil)
        #expect(RetryAfter.seconds("-5", now: now) == nil)
        #expect(RetryAfter.seconds(nil, now: now) == nil)
    }

    @Test("alternate chains are the rel=alternate targets of Link headers")
    func links() {
        #expect(ACMEClient.alternateLinks(#"<https://ca.test/cert/1/1>;rel="alternate", <https://ca.test/dir>;rel="index""#)
            == ["https://ca.test/cert/1/1"])
        #expect(ACMEClient.alternateLinks(#"<https://ca.test/cert/1/2>; rel=alternate"#) == ["https://ca.test/cert/1/2"])
        #expect(ACMEClient.alternateLinks(#"https://ca.test/x; rel="alternate""#).isEmpty)
    }

    @Test("RFC 3339 times with and without fractions; nonces are base64url only")
    func timesAndNonces() {
        #expect(ACMEClient.date("2026-11-29T13:00:00Z") == Date(timeIntervalSince1970: 1_795_957_200))
        #expect(ACMEClient.date("2026-11-29T13:00:00.5Z") == Date(timeIntervalSince1970: 1_795_957_200.5))
        #expect(ACMEClient.date("29 Nov 2026") == nil)
        #expect(ACMEClient.isNonce("oFvnlFP1wIhRlYS2jTaXbA"))
        #expect(!ACMEClient.isNonce("a b"))
        #expect(!ACMEClient.isNonce(""))
    }
}
