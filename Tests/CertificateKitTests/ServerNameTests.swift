import CertificateKit
import Testing

@Suite("Server names", .timeLimit(.minutes(2)))
struct ServerNameTests {
    @Test("normalisation folds case and strips one trailing dot", arguments: [
        ("example.com", "example.com"),
        ("API.Example.COM", "api.example.com"),
        ("www.example.com.", "www.example.com"),
        ("WWW.EXAMPLE.COM.", "www.example.com"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("localhost", "localhost"),
        ("a-b.c-d.e", "a-b.c-d.e"),
    ])
    func normalises(raw: String, expected: String) {
        #expect(ServerName.normalize(raw)?.text == expected)
    }

    @Test("invalid names are rejected", arguments: [
        "", ".", "example.com..", "..example.com", "a..b", "under_score.example.com", "sp ace.example.com",
        "*.example.com", "-lead.example.com", "trail-.example.com", "bücher.example", "tab\t.example",
        String(repeating: "a", count: 64) + ".example.com",
        (0..<64).map { _ in "abc" }.joined(separator: "."),  // 255 octets
    ])
    func rejects(raw: String) {
        #expect(ServerName.normalize(raw) == nil)
    }

    @Test("a name whose last label is all digits is no host name; digits elsewhere are fine", arguments: [
        ("1.0.0.1", false), ("1.0.0.1.", false), ("127.0.0.1", false), ("example.123", false), ("123", false),
        ("1.0.0.1.example", true), ("123.example.com", true), ("example.c0m", true), ("3com", true),
    ])
    func numericLastLabel(raw: String, isName: Bool) {
        #expect((ServerName.normalize(raw) != nil) == isName)
    }

    @Test("'1.0.0.1.' is refused as a pattern, not read as a name that prints like the address")
    func trailingDotAddress() throws {
        #expect(NamePattern.parse("1.0.0.1.").isFailure)
        #expect(try NamePattern.parse("1.0.0.1").get() == .ip(IPAddress("1.0.0.1")!))
    }

    @Test("length limits are 63 per label and 253 in all")
    func lengthLimits() {
        let label63 = String(repeating: "a", count: 63)
        #expect(ServerName.normalize(label63 + ".example") != nil)
        // 63*3 + 61 + 3 dots = 253
        let name253 = [label63, label63, label63, String(repeating: "b", count: 61)].joined(separator: ".")
        #expect(name253.utf8.count == 253)
        #expect(ServerName.normalize(name253) != nil)
        #expect(ServerName.normalize(name253 + ".") != nil)
        #expect(ServerName.normalize(name253 + "c") == nil)
    }

    @Test("parent drops exactly the first label")
    func parent() {
        #expect(ServerName.normalize("a.b.example.com")?.parent == "b.example.com")
        #expect(ServerName.normalize("localhost")?.parent == nil)
    }

    @Test("domain patterns: exact, one-level wildcard, IP, and '*'")
    func patterns() throws {
        #expect(try NamePattern.parse("Api.Example.com").get() == .exact(ServerName.normalize("api.example.com")!))
        #expect(try NamePattern.parse("*.Example.com").get() == .wildcard(parent: ServerName.normalize("example.com")!))
        #expect(try NamePattern.parse("127.0.0.1").get() == .ip(IPAddress("127.0.0.1")!))
        #expect(try NamePattern.parse("::1").get() == .ip(IPAddress("::1")!))
        #expect(try NamePattern.parse("*").get() == .any)
        #expect(throws: NamePatternError.self) { try NamePattern.parse("a.*.example.com").get() }
        #expect(throws: NamePatternError.self) { try NamePattern.parse("*example.com").get() }
        #expect(throws: NamePatternError.self) { try NamePattern.parse("exa mple.com").get() }
    }

    @Test("IPv4-mapped IPv6 addresses equal their IPv4 form")
    func mappedAddresses() {
        #expect(IPAddress("::ffff:127.0.0.2") == IPAddress("127.0.0.2"))
        #expect(IPAddress("127.0.0.2")?.description == "127.0.0.2")
        #expect(IPAddress("2001:db8::1")?.description == "2001:db8::1")
        #expect(IPAddress("[::1]") == IPAddress("::1"))
        #expect(IPAddress("not-an-ip") == nil)
    }
}

private extension Result {
    var isFailure: Bool {
        if case .failure = self { return true }
        return false
    }
}
