import CertificateKit
import Testing

/// Inputs the fuzzer (scripts/fuzz.sh) found, kept so they stay fixed.
@Suite("Fuzzer findings", .timeLimit(.minutes(2)))
struct FuzzRegressionTests {
    /// sni target, input 3a 3a 00 ("::" NUL): inet_pton stopped at the NUL, so the text
    /// parsed as the address `::` and a domains/server_names item with a NUL in it was
    /// taken as an IP pattern.
    @Test("a NUL ends no IP address early", arguments: ["::\u{0}", "127.0.0.1\u{0}evil.example", "::1\u{0}", "[::1\u{0}]", "fe80::1\u{0}%eth0"])
    func nulIsNotAnAddress(text: String) {
        #expect(IPAddress(text) == nil)
        #expect(NamePattern.parse(text) == .failure(.invalidName(text)))
    }

    @Test("addresses without a NUL still parse")
    func addressesStillParse() {
        #expect(IPAddress("::") != nil)
        #expect(IPAddress("127.0.0.1")?.description == "127.0.0.1")
        #expect(IPAddress("fe80::1%eth0") == IPAddress("fe80::1"))
        #expect(NamePattern.parse("::1") == .success(.ip(IPAddress("::1")!)))
    }
}
