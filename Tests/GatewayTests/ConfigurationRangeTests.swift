import CertificateKit
import CertificateTestSupport
import Foundation
@testable import Gateway
import Testing

/// Every number in the file has a stated range checked at load; a key certgate does not
/// know is an error with the closest known key; no value quotes key material back.
@Suite("Configuration ranges, unknown keys and quoting", .timeLimit(.minutes(1)))
struct ConfigurationRangeTests {
    static let listener = "listeners:\n  - listen: 127.0.0.1:8443\n"

    func errors(_ yaml: String) -> [ConfigurationError] {
        do {
            _ = try GatewayConfiguration.parse(yaml: yaml, file: "certgate.yaml", baseDirectory: "/etc/certgate")
            return []
        } catch {
            return error.errors
        }
    }

    @Test("a duration that overflows 64 bits is refused with a reason, not a trap")
    func overflowingDuration() {
        let found = errors(Self.listener + "shutdown_timeout: 106751991167301d\n")
        #expect(found.map(\.key) == ["shutdown_timeout"])
        #expect(found.first?.reason == "'106751991167301d' is longer than any setting allows (at most 3650d)")
        #expect(found.first?.line == 3)
    }

    @Test("a number with more digits than 64 bits hold is refused as too long")
    func tooManyDigits() {
        let found = errors(Self.listener + "shutdown_timeout: 99999999999999999999999s\n")
        #expect(found.first?.reason == "'99999999999999999999999s' is longer than any setting allows (at most 3650d)")
    }

    @Test("each range names the key, the range and the value", arguments: [
        ("shutdown_timeout: 2h\n", "shutdown_timeout", "must be 0s to 1h, not 2h"),
        ("listeners:\n  - listen: 127.0.0.1:1\n    handshake_timeout: 0s\n", "listeners.0.handshake_timeout", "must be 10ms to 10m, not 0s"),
        ("listeners:\n  - listen: 127.0.0.1:1\n    handshake_timeout: 11m\n", "listeners.0.handshake_timeout", "must be 10ms to 10m, not 11m"),
        ("routes:\n  - server_names: ['*']\n    upstream: 127.0.0.1:9\n    connect_timeout: 5ms\n", "routes.0.connect_timeout", "must be 10ms to 10m, not 5ms"),
        ("routes:\n  - server_names: ['*']\n    upstream: 127.0.0.1:0\n", "routes.0.upstream", "the port must be 1 to 65535, not 0"),
        ("issuing:\n  cache_size: 0\n", "issuing.cache_size", "must be 1 to 10000000, not 0"),
        ("issuing:\n  cache_size: 10000001\n", "issuing.cache_size", "must be 1 to 10000000, not 10000001"),
        ("issuing:\n  max_concurrent: 1025\n", "issuing.max_concurrent", "must be 1 to 1024, not 1025"),
        ("issuing:\n  rate_per_second: .nan\n", "issuing.rate_per_second", "must be 0 to 1000000, not nan"),
        ("issuing:\n  rate_per_second: .inf\n", "issuing.rate_per_second", "must be 0 to 1000000, not inf"),
        ("issuing:\n  rate_per_second: -1\n", "issuing.rate_per_second", "must be 0 to 1000000, not -1.0"),
        ("issuing:\n  burst: 0\n", "issuing.burst", "must be 1 to 1000000, not 0"),
        ("issuing:\n  idle_timeout: 366d\n", "issuing.idle_timeout", "must be 1s to 365d, not 366d"),
        ("validity:\n  interval: 31d\n", "validity.interval", "must be 1s to 30d, not 31d"),
        ("validity:\n  notify:\n    - { webhook: 'http://127.0.0.1:9/h', timeout: 1h }\n", "validity.notify.0.timeout", "must be 10ms to 10m, not 1h"),
        ("control:\n  socket: c.sock\n  max_message_bytes: 10\n", "control.max_message_bytes", "must be 1024 to 1073741824, not 10"),
        ("issuing:\n  max_queued: 1000001\n", "issuing.max_queued", "must be 0 to 1000000, not 1000001"),
        ("issuing:\n  max_queued: -1\n", "issuing.max_queued", "must be 0 to 1000000, not -1"),
    ])
    func ranges(yaml: String, key: String, reason: String) {
        let found = errors(yaml.hasPrefix("listeners:") ? yaml : Self.listener + yaml)
        #expect(found.map(\.key) == [key])
        #expect(found.first?.reason == reason)
    }

    @Test("values decoded with their own rule name the key and the rule: control.mode is an octal mode up to 0777, a webhook's retries 0 to 10", arguments: [
        ("control:\n  socket: c.sock\n  mode: \"0800\"\n", "control.mode", "'0800' is not an octal file mode like \"0600\""),
        ("control:\n  socket: c.sock\n  mode: \"1000\"\n", "control.mode", "'1000' is not an octal file mode like \"0600\""),
        ("validity:\n  notify:\n    - { webhook: 'http://127.0.0.1:9/h', retries: 11 }\n", "validity.notify.0.retries", "retries is 0 to 10"),
        ("validity:\n  notify:\n    - { webhook: 'http://127.0.0.1:9/h', retries: -1 }\n", "validity.notify.0.retries", "retries is 0 to 10"),
    ])
    func decodedRules(yaml: String, key: String, reason: String) {
        let found = errors(Self.listener + yaml)
        #expect(found.map(\.key) == [key])
        #expect(found.first?.reason == reason)
    }

    @Test("the edges of those rules are accepted: mode 0000 and 0777, retries 0 and 10, max_queued 0 and 1000000", arguments: [
        "control:\n  socket: c.sock\n  mode: \"0000\"\n", "control:\n  socket: c.sock\n  mode: \"0777\"\n",
        "validity:\n  notify:\n    - { webhook: 'http://127.0.0.1:9/h', retries: 0 }\n",
        "validity:\n  notify:\n    - { webhook: 'http://127.0.0.1:9/h', retries: 10 }\n",
        "issuing:\n  max_queued: 0\n", "issuing:\n  max_queued: 1000000\n",
    ])
    func ruleEdges(yaml: String) {
        #expect(errors(Self.listener + yaml).isEmpty)
    }

    @Test("a responder header that would split the response, or is not a token, is refused", arguments: [
        ("{ 'X-A': \"a\\r\\nSet-Cookie: x=1\" }", "routes.0.respond.headers.X-A", "a header value may not hold CR, LF or NUL (RFC 9110 §5.5)"),
        ("{ 'X A': b }", "routes.0.respond.headers.X A", "a header name is one or more token characters (RFC 9110 §5.1), at most 64"),
    ])
    func headerInjection(headers: String, key: String, reason: String) {
        let found = errors(Self.listener + "routes:\n  - server_names: ['*']\n    respond: { headers: \(headers) }\n")
        #expect(found.map(\.key) == [key])
        #expect(found.first?.reason == reason)
    }

    @Test("the bounds of every range are accepted")
    func boundsAccepted() {
        let yaml = """
        listeners:
          - listen: 127.0.0.1:8443
            handshake_timeout: 10ms
        routes:
          - server_names: ['*']
            upstream: 127.0.0.1:65535
            connect_timeout: 10m
        shutdown_timeout: 1h
        issuing: { cache_size: 10000000, max_concurrent: 1024, rate_per_second: 1000000, burst: 1000000, idle_timeout: 365d }
        validity: { interval: 30d, notify: [{ command: ['/bin/true'], timeout: 10m }] }
        control: { socket: c.sock, max_message_bytes: 1073741824 }
        """
        #expect(errors(yaml).isEmpty)
    }

    @Test("an unknown key is an error with its line, column and the closest known key")
    func unknownKeySuggestion() {
        let yaml = Self.listener + """
        certificates:
          web:
            tls_cert: a.pem
            tls_kye: a.key
        """
        let found = errors(yaml)
        #expect(found.count == 1)
        #expect(found.first?.description == "certgate.yaml:6:5: certificates.web.tls_kye: unknown key; did you mean 'tls_key'?")
    }

    @Test("unknown keys are found in every section, each with its place", arguments: [
        ("listners:\n  - listen: 127.0.0.1:1\n", "listners", "unknown key; did you mean 'listeners'?"),
        ("listeners:\n  - listen: 127.0.0.1:1\n    alpn_list: [h2]\n", "listeners.0.alpn_list", "unknown key; did you mean 'alpn'?"),
        ("routes:\n  - server_names: ['*']\n    respond: { status: 200, bdy: x }\n", "routes.0.respond.bdy", "unknown key; did you mean 'body'?"),
        ("issuing:\n  cache: 5\n", "issuing.cache", "unknown key; did you mean 'cache_size'?"),
        ("issuing:\n  speed: 5\n", "issuing.speed", "unknown key (known here: burst, cache_size, idle_timeout, max_concurrent, max_queued, rate_per_second)"),
        ("metrics:\n  listen: 127.0.0.1:9100\n  path: /m\n", "metrics.path", "unknown key (known here: listen)"),
        ("validity:\n  notify:\n    - { webhook: 'http://127.0.0.1:9/h', retires: 2 }\n", "validity.notify.0.retires", "unknown key; did you mean 'retries'?"),
        ("control:\n  socket: c.sock\n  mod: '0600'\n", "control.mod", "unknown key; did you mean 'mode'?"),
    ])
    func unknownKeysEverywhere(yaml: String, key: String, reason: String) {
        let found = errors(yaml.hasPrefix("listeners:") || yaml.hasPrefix("listners:") ? yaml : Self.listener + yaml)
        #expect(found.map(\.key) == [key])
        #expect(found.first?.reason == reason)
    }

    @Test("a responder's status is that of a final response, and 204 and 304 carry no body", arguments: [
        ("respond: { status: 101 }", "routes.0.respond.status", "101 is not the status of a final HTTP response (200-599)"),
        ("respond: { status: 600 }", "routes.0.respond.status", "600 is not the status of a final HTTP response (200-599)"),
        ("respond: { status: 204, body: gone }", "routes.0.respond.body", "a 204 response has no content (RFC 9110 §15.3.5, §15.4.5): remove the body"),
        ("respond: { status: 304, body: same }", "routes.0.respond.body", "a 304 response has no content (RFC 9110 §15.3.5, §15.4.5): remove the body"),
    ])
    func responderStatus(route: String, key: String, reason: String) {
        let found = errors(Self.listener + "routes:\n  - server_names: ['*']\n    \(route)\n")
        #expect(found.map(\.key) == [key])
        #expect(found.first?.reason == reason)
        #expect(errors(Self.listener + "routes:\n  - server_names: ['*']\n    respond: { status: 204 }\n").isEmpty)
    }

    @Test("a folder that is not there yet is fine, a file in its way is not; relative paths end (a fuzzer found a loop)")
    func folderChecks() throws {
        #expect(GatewayConfiguration.notAFolder("state") == nil)
        #expect(GatewayConfiguration.notAFolder("no/such/relative/folder") == nil)
        #expect(GatewayConfiguration.notAFolder("") == nil)
        // `..` made Foundation's deleteLastPathComponent grow the path instead of shortening it.
        #expect(GatewayConfiguration.notAFolder("/nonexistent/state/../..") == nil)
        #expect(GatewayConfiguration.notAFolder("../../..") == nil)
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("certgate-\(UUID().uuidString)")
        try "x".write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        #expect(GatewayConfiguration.notAFolder(file.path) == "\(file.path) exists and is not a folder")
        #expect(GatewayConfiguration.notAFolder(file.path + "/state/deeper") == "\(file.path) is not a folder")
        let relative = try GatewayConfiguration.parse(yaml: Self.listener + "state_dir: state\n", file: "certgate.yaml", baseDirectory: "")
        #expect(relative.problemsForServing(file: "certgate.yaml").isEmpty)
        // The fuzzer's case: a base folder that does not exist, the shipped state_dir and socket.
        let missingBase = try GatewayConfiguration.parse(
            yaml: Self.listener + "state_dir: state\ncontrol: { socket: state/control.sock }\n", file: "fuzz.yaml", baseDirectory: "/nonexistent")
        #expect(missingBase.problemsForServing(file: "fuzz.yaml").isEmpty)
    }

    @Test("a key that is a list or a mapping is named as such; a number where one is expected says so")
    func oddKeys() {
        let complex = errors(Self.listener + "certificates:\n  a:\n    ? [x, y]\n    : z\n")
        #expect(complex.map(\.key) == ["certificates.a"])
        #expect(complex.first?.reason == "a key is a name, not a list or a mapping")
        let text = errors(Self.listener + "issuing:\n  rate_per_second: fast\n")
        #expect(text.map(\.reason) == ["expected a number"])
    }

    @Test("the names under certificates: and respond.headers: are the user's, not keys")
    func userNamedKeys() {
        let yaml = Self.listener + """
        routes:
          - server_names: ['*']
            respond: { headers: { X-Anything: yes } }
        """
        #expect(errors(yaml).isEmpty)
    }

    @Test("an unknown key is reported with a decoding error in the same file")
    func unknownKeyAndDecodingError() {
        let found = errors(Self.listener + "log_levle: debug\nshutdown_timeout: soon\n")
        #expect(found.map(\.key) == ["log_levle", "shutdown_timeout"])
    }

    @Test("a key pasted into the wrong field is not quoted back")
    func keyInWrongField() {
        let base64 = Data(TestKeyMaterial.pkcs8PEM.utf8).base64EncodedString()
        let found = errors("listeners:\n  - listen: \(base64)\n")
        #expect(found.first?.reason == "a value of \(base64.count) characters (not shown) is not host:port with a port of 0 to 65535 (IPv6 as [::1]:8443)")
    }

    @Test("edit distance counts a swap of neighbours as one edit")
    func editDistance() {
        #expect(ConfigurationSchema.editDistance(Array("tls_kye".utf8), Array("tls_key".utf8)) == 1)
        #expect(ConfigurationSchema.editDistance(Array("domain".utf8), Array("domains".utf8)) == 1)
        #expect(ConfigurationSchema.editDistance(Array("kitten".utf8), Array("sitting".utf8)) == 3)
        #expect(ConfigurationSchema.closest(to: "zzz", among: ["listen"]) == nil)
    }

    @Test("check's serving requirements: no listeners, a socket path too long for sun_path")
    func servingProblems() throws {
        let empty = try GatewayConfiguration.parse(yaml: "", file: "certgate.yaml", baseDirectory: "/etc/certgate")
        #expect(empty.problemsForServing(file: "certgate.yaml").map(\.key) == ["listeners"])
        let longPath = String(repeating: "s", count: 100) + ".sock"
        let configuration = try GatewayConfiguration.parse(
            yaml: Self.listener + "control: { socket: \(longPath) }\n", file: "certgate.yaml", baseDirectory: "/etc/certgate")
        // "/etc/certgate/" (14 bytes) + 105 bytes = 119 > 107.
        #expect(configuration.problemsForServing(file: "certgate.yaml").map(\.reason)
            == ["the socket path is 119 bytes once resolved; a Unix socket path is at most 107"])
    }
}

/// A P-256 key in PKCS#8 PEM made for the quoting tests.
enum TestKeyMaterial {
    static let pkcs8PEM: String = {
        TestKey.make().pkcs8PEM
    }()
}
