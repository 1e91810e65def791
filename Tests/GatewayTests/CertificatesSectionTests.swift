import CertificateKit
import Foundation
@testable import Gateway
import Testing

/// A large `certificates:` section is parsed in pieces on every core; what a file means,
/// and every error it gets, is what parsing it whole gives.
@Suite("A large certificates: section parsed in pieces", .timeLimit(.minutes(2)))
struct CertificatesSectionTests {
    /// A file of `count` entries in the forms operators write: flow and block mappings, a
    /// quoted wildcard name, lists of domains, comments and blank lines between entries,
    /// sections before and after.
    static func file(entries count: Int, lineEnd: String = "\n", after: String = "") -> String {
        var lines = ["log_level: warning", "listeners:", "  - { name: https, listen: 127.0.0.1:8443 }", "certificates:   # the set"]
        for index in 0..<count {
            switch index % 4 {
            case 0:
                lines.append("  e\(index).test: { tls_cert: certs/\(index).pem, tls_key: certs/\(index).key }")
            case 1:
                lines += ["  # entry \(index)", "  \"*.w\(index).test\":", "    tls_cert: certs/\(index).pem", "    tls_key: certs/\(index).key",
                          "    domains: [\"*.w\(index).test\", w\(index).test]", ""]
            case 2:
                lines += ["  e\(index).test:", "    tls_cert: certs/\(index).pem", "    tls_key: certs/\(index).key", "    buffer_days: 21",
                          "    domains:", "      - e\(index).test", "      - www.e\(index).test"]
            default:
                lines.append("  'e\(index).test': {tls_cert: certs/\(index).pem, tls_key: certs/\(index).key, is_default: \(index == 3)}")
            }
        }
        lines += ["routes:", "  - { server_names: ['*'], respond: { body: ok } }"]
        return lines.joined(separator: lineEnd) + lineEnd + after
    }

    static func parse(_ yaml: String) -> Result<GatewayConfiguration, ConfigurationErrors> {
        Result { () throws(ConfigurationErrors) in try GatewayConfiguration.parse(yaml: yaml, file: "c.yaml", baseDirectory: "/etc/certgate") }
    }

    static func parseWhole(_ yaml: String) -> Result<GatewayConfiguration, ConfigurationErrors> {
        Result { () throws(ConfigurationErrors) in try GatewayConfiguration.parseWhole(yaml: yaml, file: "c.yaml", baseDirectory: "/etc/certgate", acmeIssuersElsewhere: false) }
    }

    /// The same configuration, or the same errors, as the whole file's.
    static func expectSameAsWhole(_ yaml: String, sourceLocation: SourceLocation = #_sourceLocation) {
        switch (parse(yaml), parseWhole(yaml)) {
        case (.success(let pieces), .success(let whole)):
            #expect(pieces.certificates == whole.certificates, sourceLocation: sourceLocation)
            #expect(pieces.listeners.map(\.listen) == whole.listeners.map(\.listen), sourceLocation: sourceLocation)
            #expect(pieces.routes.count == whole.routes.count, sourceLocation: sourceLocation)
            #expect(pieces.logLevel == whole.logLevel, sourceLocation: sourceLocation)
        case (.failure(let pieces), .failure(let whole)):
            #expect(pieces.description == whole.description, sourceLocation: sourceLocation)
        case (let pieces, let whole):
            Issue.record("in pieces: \(pieces); whole: \(whole)", sourceLocation: sourceLocation)
        }
    }

    @Test("5,001 entries in every form are cut at entry lines into pieces of 2,000 and mean what the whole file means")
    func largeSection() throws {
        let yaml = Self.file(entries: 5_001)
        let section = try #require(CertificatesSection(splitting: yaml))
        #expect(section.headerLine == 4)
        #expect(section.pieces.map(\.keyLines.count) == [2_000, 2_000, 1_001])
        // Entry 0 is on line 5; entry 1 (a comment, then its key) starts on line 6, its key on 7.
        #expect(section.pieces[0].keyLines.prefix(3) == [5, 7, 12])
        // The cut stands: the pieces are what the configuration is made of, not a fallback.
        let inPieces = GatewayConfiguration.parseInPieces(section, baseDirectory: "/etc/certgate", acmeIssuersElsewhere: false)
        #expect(inPieces?.certificates.count == 5_001)
        let crlf = try #require(CertificatesSection(splitting: Self.file(entries: 5_001, lineEnd: "\r\n")))
        let crlfInPieces = GatewayConfiguration.parseInPieces(crlf, baseDirectory: "/etc/certgate", acmeIssuersElsewhere: false)
        #expect(crlfInPieces?.certificates.count == 5_001)
        let configuration = try Self.parse(yaml).get()
        #expect(configuration.certificates.count == 5_001)
        #expect(configuration.certificates["*.w1.test"]?.domains?.items == ["*.w1.test", "w1.test"])
        #expect(configuration.certificates["e2.test"]?.bufferDays == 21)
        #expect(configuration.certificates["e3.test"]?.isDefault == true)
        #expect(configuration.certificates["e7.test"]?.isDefault == false)
        Self.expectSameAsWhole(yaml)
        Self.expectSameAsWhole(Self.file(entries: 5_001, lineEnd: "\r\n"))
    }

    @Test("a small section, tabs, a lone carriage return or a flow-style section are not cut")
    func notCut() {
        #expect(CertificatesSection(splitting: Self.file(entries: 1_999)) == nil)
        #expect(CertificatesSection(splitting: Self.file(entries: 2_000)) != nil)
        #expect(CertificatesSection(splitting: Self.file(entries: 3_000).replacingOccurrences(of: "log_level: warning", with: "log_level:\twarning")) == nil)
        #expect(CertificatesSection(splitting: Self.file(entries: 3_000).replacingOccurrences(of: "log_level: warning\n", with: "log_level: warning\r")) == nil)
        #expect(CertificatesSection(splitting: "certificates: {a: {tls_cert: x}}\n") == nil)
    }

    @Test("where a cut would change the meaning, the file is parsed whole: a quoted value spanning the section, an alias to an anchor in another piece, an entry named twice")
    func cutsThatCannotStand() throws {
        // A double-quoted value that starts before `certificates:` and ends inside it: the
        // header is text, not a key.
        let quoted = Self.file(entries: 3_000).replacingOccurrences(of: "log_level: warning", with: "log_level: \"warning")
            .replacingOccurrences(of: "  e4.test: {", with: "  e4.test\": {")
        Self.expectSameAsWhole(quoted)
        // An anchor in the first piece used in the last.
        let aliased = Self.file(entries: 4_500)
            .replacingOccurrences(of: "  e0.test: { tls_cert: certs/0.pem, tls_key: certs/0.key }", with: "  e0.test: &shared { tls_cert: certs/0.pem, tls_key: certs/0.key }")
            .replacingOccurrences(of: "  e4400.test: { tls_cert: certs/4400.pem, tls_key: certs/4400.key }", with: "  e4400.test: *shared")
        Self.expectSameAsWhole(aliased)
        #expect(try Self.parse(aliased).get().certificates["e4400.test"]?.tlsCert == "certs/0.pem")
        // The same name in two pieces.
        let twice = Self.file(entries: 4_500).replacingOccurrences(of: "  e4400.test:", with: "  e0.test:")
        Self.expectSameAsWhole(twice)
        #expect(throws: ConfigurationErrors.self) { try Self.parse(twice).get() }
    }

    @Test("a flow-style top level around a block section, an anchor in the section that an alias after it means, a %TAG directive: not cut, and the same meaning or errors as the whole file")
    func shapesNeverCut() throws {
        // A flow mapping around the file: the whole parse refuses the block entries inside it.
        let body = Self.file(entries: 2_500)
        let flow = "{listeners: [],\n" + body[body.range(of: "certificates:")!.lowerBound...].replacingOccurrences(of: "routes:\n  - { server_names: ['*'], respond: { body: ok } }\n", with: "") + "}\n"
        // The cut is made (the section's lines look like a block section) and does not stand.
        let flowSection = try #require(CertificatesSection(splitting: flow))
        let inPieces = GatewayConfiguration.parseInPieces(flowSection, baseDirectory: "/etc/certgate", acmeIssuersElsewhere: false)
        #expect(inPieces == nil)
        Self.expectSameAsWhole(flow)
        #expect(throws: ConfigurationErrors.self) { try Self.parse(flow).get() }
        // An anchor defined before the section, redefined in it, and used after it: the
        // whole file means the section's value.
        let aliased = Self.file(entries: 2_500)
            .replacingOccurrences(of: "log_level: warning", with: "log_level: warning\nstate_dir: &place var/first")
            .replacingOccurrences(of: "  e4.test: { tls_cert: certs/4.pem, tls_key: certs/4.key }", with: "  e4.test: { tls_cert: certs/4.pem, tls_key: certs/4.key, remark: &place var/second }")
            + "shutdown_timeout: 5s\nvalidity: { notify: [ { command: [ /bin/echo, *place ] } ] }\n"
        #expect(CertificatesSection(splitting: aliased) == nil)
        Self.expectSameAsWhole(aliased)
        guard case .command(let arguments, _)? = try Self.parse(aliased).get().validity.notify.first else {
            Issue.record("no command notifier")
            return
        }
        #expect(arguments == ["/bin/echo", "var/second"])
        // %TAG redefining "!" for the whole document.
        let tagged = "%TAG ! tag:yaml.org,2002:\n---\n" + Self.file(entries: 2_500).replacingOccurrences(of: "is_default: true}", with: "is_default: !str true}")
        #expect(CertificatesSection(splitting: tagged) == nil)
        Self.expectSameAsWhole(tagged)
    }

    @Test("an invalid file is parsed whole, so its errors name the same lines: an unknown key and a bad value in the third piece")
    func errorsReadAsBefore() throws {
        let unknown = Self.file(entries: 5_000).replacingOccurrences(of: "  e4400.test: { tls_cert: certs/4400.pem,", with: "  e4400.test: { tls_crt: certs/4400.pem,")
        Self.expectSameAsWhole(unknown)
        let description = try #require(Self.parse(unknown).failure?.description)
        #expect(description.contains("tls_crt"))
        let badValue = Self.file(entries: 5_000).replacingOccurrences(of: "    buffer_days: 21", with: "    buffer_days: soon")
        Self.expectSameAsWhole(badValue)
    }

    @Test("a mapping is told block or flow by where it starts: block at its first key (plain or quoted), flow at its brace; an anchored or empty mapping is not taken as block")
    func blockOrFlow() throws {
        /// Whether the top mapping of `yaml` (or the value of its `key`) is taken as block.
        func isBlock(_ yaml: String, key: String? = nil) throws -> Bool {
            let top = try #require(try YAMLResolution.compose(yaml)?.mapping)
            guard let key else { return YAMLResolution.isBlock(top) }
            return YAMLResolution.isBlock(try #require(top.first { $0.key.string == key }?.value.mapping))
        }
        #expect(try isBlock("a: 1\nb: 2\n"))
        #expect(try isBlock("\n# a comment\n  'q.test': 1\n  r.test: 2\n"))
        #expect(try !isBlock("{a: 1, b: 2}\n"))
        #expect(try !isBlock("{\na: 1}\n"))
        #expect(try !isBlock("a: {b: 1}\n", key: "a"))
        #expect(try isBlock("a:\n  b: 1\n", key: "a"))
        #expect(try !isBlock("&anchor\na: 1\n"))
        #expect(try !isBlock("{}\n"))
    }
}

extension Result {
    var failure: Failure? {
        if case .failure(let failure) = self { return failure }
        return nil
    }
}
