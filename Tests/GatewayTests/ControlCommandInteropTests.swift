import CertificateTestSupport
import ControlProtocol
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `certgate ctl` as an operator runs it against the real binary — every subcommand's
/// table and `--json` output to the character, the update options, `watch` — that no
/// subcommand (nor `check`, `inspect`) prints a key, and the control socket's own
/// promises: a stale socket is replaced, a slow watcher holds nothing up.
@Suite("certgate ctl and the control socket, end to end (the real binary)", .serialized, .timeLimit(.minutes(3)))
struct ControlCommandInteropTests {
    static let authority = GatewayInteropTests.authority

    // MARK: Helpers

    /// A time on a whole second (certificates carry whole seconds), `offset` seconds from now.
    static func wholeSecond(_ offset: TimeInterval) -> Date {
        Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down) + offset)
    }

    /// `2026-01-02T03:04:05Z`: how `ctl` prints a time, and protobuf's JSON a whole second.
    static func iso(_ date: Date) -> String {
        ISO8601DateFormatter().string(from: date)
    }

    /// An RFC 3339 UTC time as `ctl` or protobuf's JSON writes it (fractional seconds optional).
    static func date(_ text: some StringProtocol) -> Date? {
        guard let match = String(text).wholeMatch(of: /(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d{1,9})?Z/),
              let seconds = ISO8601DateFormatter().date(from: match.output.1 + "Z") else { return nil }
        return seconds.addingTimeInterval(match.output.2.flatMap { Double("0" + $0) } ?? 0)
    }

    /// `text` with the value of every `"key":"…"` replaced by `…`, and the values taken out.
    static func masking(_ text: String, key: String) -> (text: String, values: [String]) {
        let marker = "\"\(key)\":\""
        var out = ""
        var values: [String] = []
        var rest = Substring(text)
        while let range = rest.range(of: marker), let end = rest[range.upperBound...].firstIndex(of: "\"") {
            out += rest[..<range.upperBound] + "…"
            values.append(String(rest[range.upperBound..<end]))
            rest = rest[end...]
        }
        return (out + rest, values)
    }

    /// A line that starts with a time: the time and the rest.
    static func stamped(_ line: String) -> (time: Date?, rest: String) {
        guard let space = line.firstIndex(of: " ") else { return (nil, line) }
        return (date(line[..<space]), String(line[line.index(after: space)...]))
    }

    /// The SHA-256 fingerprint of a certificate as `openssl x509 -fingerprint -sha256` gives it.
    static func opensslFingerprint(_ pem: String, folder: FixtureFolder) async throws -> String {
        try folder.write(pem, to: "fingerprint.pem")
        let (status, output) = try await runTool("/usr/bin/openssl", [
            "x509", "-noout", "-fingerprint", "-sha256", "-in", folder.url.appendingPathComponent("fingerprint.pem").path,
        ])
        #expect(status == 0, "\(output)")
        return String(output.split(separator: "=", maxSplits: 1).last ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Upserts a `probe` entry until every watcher has printed a line; from then on each sees
    /// every event. Returns the generation of the last probe.
    static func subscribe(_ watchers: [RunningCommand], socket: String) async throws -> UInt64 {
        try await ControlInteropTests.withControl(socket: socket) { control in
            let probe = ControlInteropTests.entry("probe", authority.leaf(dnsNames: ["probe.test"]))
            var attempts = 0
            while !watchers.allSatisfy({ !$0.lines.isEmpty }) {
                try #require(attempts < 100, "the watchers printed nothing for \(attempts) updates: \(watchers.map(\.errors))")
                _ = try await control.updateCertificates(.with { $0.upsert = [probe] })
                attempts += 1
                try await eventually(timeout: .milliseconds(300)) { watchers.allSatisfy { !$0.lines.isEmpty } }
            }
            return try await control.getStatus(Certgate_Control_V1_GetStatusRequest()).generation
        }
    }

    /// A Unix socket file with nobody listening on it, as a crashed process leaves it.
    static func leaveStaleSocket(at path: String) throws {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw GatewayProcessError(message: "socket() failed") }
        defer { close(fd) }
        var address = Self.unixAddress(path)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0 else { throw GatewayProcessError(message: "bind(\(path)) failed: errno \(errno)") }
    }

    /// 0 when a connection to the Unix socket at `path` is accepted, else connect()'s errno.
    static func connectError(_ path: String) -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return -1 }
        defer { close(fd) }
        var address = Self.unixAddress(path)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        return connected == 0 ? 0 : errno
    }

    private static func unixAddress(_ path: String) -> sockaddr_un {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            precondition(bytes.count < raw.count)
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return address
    }

    // MARK: 1. The subcommands, to the character

    @Test("ctl show prints one entry in full (names, validity, issuer, fingerprint, the chain) as a table and as JSON; an unknown name exits 1")
    func show() async throws {
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        let gateway = try await GatewayProcess(config: ControlInteropTests.config(), folder: folder)
        defer { gateway.stop() }
        let socket = ControlInteropTests.socket(folder)
        let intermediate = Self.authority.intermediate(commonName: "Interop Intermediate")
        let notBefore = Self.wholeSecond(-3600)
        let notAfter = Self.wholeSecond(30 * 86_400 + 3600)  // 30 days and an hour: "30 days"
        let leaf = intermediate.leaf(dnsNames: ["shown.test", "www.shown.test"], notBefore: notBefore, notAfter: notAfter)
        try folder.write(leaf.pem + "\n" + intermediate.pem, to: "certs/shown.pem")
        try folder.write(leaf.key.pkcs8PEM, to: "certs/shown.key")
        try folder.write("certificates:\n  shown: { tls_cert: certs/shown.pem, tls_key: certs/shown.key, buffer_days: 14 }\n", to: "shown.yaml")
        let fingerprint = try await Self.opensslFingerprint(leaf.pem, folder: folder)
        #expect(fingerprint.count == 95)  // 32 bytes as XX: pairs

        let upsert = try await runCtl(socket: socket, ["upsert", folder.url.appendingPathComponent("shown.yaml").path])
        #expect(upsert.status == 0)
        #expect(upsert.stdout == "applied generation 1: 1 added, 0 changed, 0 removed\n  added: shown\n")
        #expect(upsert.stderr == "")

        let table = try await runCtl(socket: socket, ["show", "shown"])
        #expect(table.status == 0)
        #expect(table.stderr == "")
        #expect(table.stdout == """
            name         shown
            kind         static
            domains      shown.test, www.shown.test
            not before   \(Self.iso(notBefore))
            not after    \(Self.iso(notAfter)) (30 days, ok)
            issuer       Interop Intermediate
            sha256       \(fingerprint)
            chain        CN=shown.test
                         CN=Interop Intermediate

            """)

        let json = try await runCtl(socket: socket, ["show", "shown", "--json"])
        #expect(json.status == 0)
        #expect(json.stdout == #"{"name":"shown","domains":["shown.test","www.shown.test"],"not_before":""#
            + Self.iso(notBefore) + #"","not_after":""# + Self.iso(notAfter)
            + #"","days_left":30,"state":"ok","issuer":"Interop Intermediate","kind":"static","chain_subjects":["CN=shown.test","CN=Interop Intermediate"],"sha256_fingerprint":""#
            + fingerprint + "\"}\n")

        // The default entry of the fixture says so.
        let fallback = try await runCtl(socket: socket, ["show", "fallback"])
        #expect(fallback.stdout.split(separator: "\n").dropFirst().first == "kind         static (default)")

        let missing = try await runCtl(socket: socket, ["show", "nobody"])
        #expect(missing.status == 1)
        #expect(missing.stdout == "")
        #expect(missing.stderr == "no entry named 'nobody'\n")
        let missingJSON = try await runCtl(socket: socket, ["show", "nobody", "--json"])
        #expect(missingJSON.status == 1)
        #expect(missingJSON.stdout == "")
        #expect(missingJSON.stderr == "no entry named 'nobody'\n")
    }

    @Test("an entry's warning (a self-signed root after its leaf) is in UpdateResult.warnings with an empty field (ctl upsert prints it), in ctl list after the table, in ctl show, and logged at warning with entry=")
    func entryWarningsEverywhere() async throws {
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        let gateway = try await GatewayProcess(config: ControlInteropTests.config(), folder: folder)
        defer { gateway.stop() }
        let socket = ControlInteropTests.socket(folder)
        let leaf = Self.authority.leaf(dnsNames: ["rooted.test"])
        // The leaf, then its CA, which is a self-signed root: certificate 2 is not sent.
        try folder.write(leaf.pem + "\n" + Self.authority.pem, to: "certs/rooted.pem")
        try folder.write(leaf.key.pkcs8PEM, to: "certs/rooted.key")
        try folder.write("certificates:\n  rooted: { tls_cert: certs/rooted.pem, tls_key: certs/rooted.key }\n", to: "rooted.yaml")
        let reason = "certificate 2 (CN=Interop CA) is a self-signed root; it is not sent (clients use their own trust store)"

        let upsert = try await runCtl(socket: socket, ["upsert", folder.url.appendingPathComponent("rooted.yaml").path])
        #expect(upsert.status == 0)
        #expect(upsert.stdout == "applied generation 1: 1 added, 0 changed, 0 removed\n  added: rooted\nwarning: rooted: \(reason)\n")
        // Changed (a new buffer_days), so its warnings come again; unchanged it would bring none.
        try folder.write("certificates:\n  rooted: { tls_cert: certs/rooted.pem, tls_key: certs/rooted.key, buffer_days: 14 }\n", to: "rooted.yaml")
        let json = try await runCtl(socket: socket, ["upsert", "--json", folder.url.appendingPathComponent("rooted.yaml").path])
        #expect(json.stdout.contains(#""changed":["rooted"]"#), "\(json.stdout)")
        #expect(json.stdout.contains(#""warnings":[{"entry":"rooted","reason":"\#(reason)"}]"#), "\(json.stdout)")

        let list = try await runCtl(socket: socket, ["list"])
        #expect(list.status == 0)
        let lines = list.stdout.split(separator: "\n").map(String.init)
        #expect(lines.filter { $0.contains("warning") } == ["rooted: warning: \(reason)"])
        // After the table, before the summary line.
        #expect(lines.last?.hasPrefix("generation ") == true)
        #expect(lines.dropLast().last == "rooted: warning: \(reason)")

        let show = try await runCtl(socket: socket, ["show", "rooted"])
        #expect(show.stdout.split(separator: "\n").last.map(String.init) == "warning      \(reason)")

        #expect(try await gateway.waitForLog(reason))
        let logged = ReloadInteropTests.lines(gateway.logText, containing: reason)
        #expect(logged.count >= 1)
        #expect(logged.allSatisfy { $0.contains(" warning ") && $0.contains("entry=rooted") && $0.contains("source=control") })
    }

    @Test("ctl status prints generation, counts, the last update and its source, and each listener (table and --json), and follows an update")
    func status() async throws {
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        let started = Self.wholeSecond(0)
        let gateway = try await GatewayProcess(config: ControlInteropTests.config(), folder: folder)
        defer { gateway.stop() }
        let socket = ControlInteropTests.socket(folder)
        let listener = "https [IPv4]127.0.0.1/127.0.0.1:\(gateway.port)"

        func expectStatus(generation: UInt64, certificates: Int, source: String, since: Date, sourceLocation: SourceLocation = #_sourceLocation) async throws {
            let table = try await runCtl(socket: socket, ["status"])
            #expect(table.status == 0, sourceLocation: sourceLocation)
            #expect(table.stderr == "", sourceLocation: sourceLocation)
            let lines = table.stdout.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            #expect(lines.count == 5, "\(table.stdout)", sourceLocation: sourceLocation)
            guard lines.count == 5 else { return }
            #expect(lines[0] == "generation   \(generation)", sourceLocation: sourceLocation)
            #expect(lines[1] == "certificates \(certificates) (0 issued leaves cached)", sourceLocation: sourceLocation)
            #expect(lines[2].hasPrefix("last update  "), sourceLocation: sourceLocation)
            let (time, rest) = Self.stamped(String(lines[2].dropFirst("last update  ".count)))
            #expect(rest == "(\(source))", sourceLocation: sourceLocation)
            #expect(time.map { $0 >= since && $0 <= Date() } == true, "\(lines[2])", sourceLocation: sourceLocation)
            #expect(lines[3] == "listener     \(listener)", sourceLocation: sourceLocation)
            #expect(lines[4] == "", sourceLocation: sourceLocation)

            let json = try await runCtl(socket: socket, ["status", "--json"])
            #expect(json.status == 0, sourceLocation: sourceLocation)
            let (masked, stamps) = Self.masking(json.stdout, key: "last_update")
            // proto3 JSON leaves out a zero generation; a uint64 is a string.
            let generationField = generation == 0 ? "" : "\"generation\":\"\(generation)\","
            #expect(masked == "{\(generationField)\"certificates\":\(certificates),\"listeners\":[{\"name\":\"https\",\"address\":\"[IPv4]127.0.0.1/127.0.0.1:\(gateway.port)\"}],"
                + "\"last_update\":\"…\",\"last_update_source\":\"\(source)\"}\n", sourceLocation: sourceLocation)
            #expect(stamps.count == 1 && stamps.compactMap { Self.date($0) }.allSatisfy { $0 >= since && $0 <= Date() },
                    "\(stamps)", sourceLocation: sourceLocation)
        }

        try await expectStatus(generation: 0, certificates: 4, source: "config", since: started)

        let before = Self.wholeSecond(0)
        let fresh = Self.authority.leaf(dnsNames: ["fresh.test"])
        _ = try await ControlInteropTests.withControl(socket: socket) { control in
            try await control.updateCertificates(.with { $0.upsert = [ControlInteropTests.entry("fresh", fresh)] })
        }
        try await expectStatus(generation: 1, certificates: 5, source: "control", since: before)

        let reloading = Self.wholeSecond(0)
        gateway.signal(SIGHUP)
        #expect(try await gateway.waitForLog("configuration reloaded"))
        try await expectStatus(generation: 2, certificates: 4, source: "signal", since: reloading)
    }

    @Test("ctl apply replaces the set: --keep-last-good applies the valid entries and reports the invalid one as kept, --dry-run changes nothing (the generation stays), --expect-generation N mismatch exits 1 with the reason (table and --json)")
    func apply() async throws {
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        let gateway = try await GatewayProcess(config: ControlInteropTests.config(), folder: folder)
        defer { gateway.stop() }
        let socket = ControlInteropTests.socket(folder)
        let fresh = Self.authority.leaf(dnsNames: ["fresh.test"])
        try folder.write(fresh.pem, to: "certs/fresh.pem")
        try folder.write(fresh.key.pkcs8PEM, to: "certs/fresh.key")
        try folder.write("""
            certificates:
              exact: { tls_cert: certs/exact.pem, tls_key: certs/exact.key }
              fallback: { tls_cert: certs/fallback.pem, tls_key: certs/fallback.key, is_default: true }
              fresh: { tls_cert: certs/fresh.pem, tls_key: certs/fresh.key }
              broken: { tls_cert: certs/fresh.pem, tls_key: certs/exact.key }

            """, to: "apply.yaml")
        let file = folder.url.appendingPathComponent("apply.yaml").path
        let brokenReason = "broken: tls_key: the private key does not match the certificate (CN=fresh.test)"
        func generation() async throws -> UInt64 {
            try await ControlInteropTests.withControl(socket: socket) { try await $0.getStatus(Certgate_Control_V1_GetStatusRequest()).generation }
        }

        // The default policy: one invalid entry rejects the whole file.
        let rejected = try await runCtl(socket: socket, ["apply", file])
        #expect(rejected.status == 1)
        #expect(rejected.stdout == "")
        #expect(rejected.stderr == "invalidArgument: \(brokenReason)\n")
        #expect(try await generation() == 0)

        // A dry run reports what would change (ctl sends files inline, so the file entries
        // kept are "changed"), and changes nothing.
        let dry = try await runCtl(socket: socket, ["apply", "--dry-run", "--keep-last-good", file])
        #expect(dry.status == 0)
        #expect(dry.stderr == "")
        #expect(dry.stdout == """
            dry run: would apply generation 0: 1 added, 2 changed, 2 removed
              added: fresh
              changed: exact, fallback
              removed: by-ip, wild
            kept previous version: \(brokenReason)

            """)
        #expect(try await generation() == 0)
        #expect(try await runCtl(socket: socket, ["status"]).stdout.hasPrefix("generation   0\n"))
        #expect(try await servedCommonName(port: gateway.port, serverName: "fresh.test", folder: folder).cn == "fallback.test")

        // Compare-and-swap: a stale generation exits 1 with the server's reason.
        let stale = try await runCtl(socket: socket, ["apply", "--keep-last-good", "--expect-generation", "5", file])
        #expect(stale.status == 1)
        #expect(stale.stdout == "")
        #expect(stale.stderr == "failedPrecondition: expected generation 5, the current one is 0\n")
        let staleJSON = try await runCtl(socket: socket, ["apply", "--keep-last-good", "--expect-generation", "5", "--json", file])
        #expect(staleJSON.status == 1)
        #expect(staleJSON.stdout == "")
        #expect(staleJSON.stderr == "failedPrecondition: expected generation 5, the current one is 0\n")
        #expect(try await generation() == 0)

        // KEEP_LAST_GOOD at the expected generation: the valid entries apply, broken is reported.
        let applied = try await runCtl(socket: socket, ["apply", "--keep-last-good", "--expect-generation", "0", file])
        #expect(applied.status == 0)
        #expect(applied.stderr == "")
        #expect(applied.stdout == """
            applied generation 1: 1 added, 2 changed, 2 removed
              added: fresh
              changed: exact, fallback
              removed: by-ip, wild
            kept previous version: \(brokenReason)

            """)
        let names = try await ControlInteropTests.withControl(socket: socket) {
            try await $0.listCertificates(Certgate_Control_V1_ListCertificatesRequest()).certificates.map(\.name)
        }
        #expect(names == ["exact", "fallback", "fresh"])
        #expect(try await servedCommonName(port: gateway.port, serverName: "fresh.test", folder: folder).cn == "fresh.test")

        // The same again as JSON, a dry run: nothing left to change but the broken entry.
        let dryJSON = try await runCtl(socket: socket, ["apply", "--dry-run", "--keep-last-good", "--json", file])
        #expect(dryJSON.status == 0)
        #expect(dryJSON.stdout == #"{"generation":"1","errors":[{"entry":"broken","field":"tls_key","reason":"the private key does not match the certificate (CN=fresh.test)"}],"dry_run":true}"# + "\n")
        #expect(try await generation() == 1)
        let rejectedJSON = try await runCtl(socket: socket, ["apply", "--json", file])
        #expect(rejectedJSON.status == 1)
        #expect(rejectedJSON.stdout == "")
        #expect(rejectedJSON.stderr == "invalidArgument: \(brokenReason)\n")
        let staleAgain = try await runCtl(socket: socket, ["apply", "--expect-generation", "0", "--keep-last-good", file])
        #expect(staleAgain.status == 1)
        #expect(staleAgain.stderr == "failedPrecondition: expected generation 0, the current one is 1\n")
        #expect(try await generation() == 1)
    }

    @Test("ctl reload applies the configuration file again as a new generation (table and --json); a file with an invalid entry exits 1 with its reason and changes nothing")
    func reload() async throws {
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        let config = ControlInteropTests.config()
        let gateway = try await GatewayProcess(config: config, folder: folder)
        defer { gateway.stop() }
        let socket = ControlInteropTests.socket(folder)
        let fresh = Self.authority.leaf(dnsNames: ["fresh.test"])
        _ = try await ControlInteropTests.withControl(socket: socket) { control in
            try await control.updateCertificates(.with { $0.upsert = [ControlInteropTests.entry("fresh", fresh)] })
        }

        // The file's entries are unchanged (same files): only the pushed one goes.
        let table = try await runCtl(socket: socket, ["reload"])
        #expect(table.status == 0)
        #expect(table.stderr == "")
        #expect(table.stdout == "applied generation 2: 0 added, 0 changed, 1 removed\n  removed: fresh\n")
        let json = try await runCtl(socket: socket, ["reload", "--json"])
        #expect(json.status == 0)
        #expect(json.stdout == #"{"generation":"3"}"# + "\n")

        let bad = Self.authority.leaf(dnsNames: ["bad.test"])
        try folder.write(bad.pem, to: "certs/bad.pem")
        let broken = config.replacingOccurrences(of: "PORT", with: String(gateway.port))
            .replacingOccurrences(of: "certificates:\n", with: "certificates:\n  bad: { tls_cert: certs/bad.pem, tls_key: certs/exact.key }\n")
        try folder.write(broken, to: "certgate.yaml")
        let refused = try await runCtl(socket: socket, ["reload"])
        #expect(refused.status == 1)
        #expect(refused.stdout == "")
        #expect(refused.stderr == "invalidArgument: bad: tls_key: the private key does not match the certificate (CN=bad.test)\n")
        let refusedJSON = try await runCtl(socket: socket, ["reload", "--json"])
        #expect(refusedJSON.status == 1)
        #expect(refusedJSON.stderr == refused.stderr)
        #expect(try await runCtl(socket: socket, ["status"]).stdout.hasPrefix("generation   3\n"))
    }

    @Test("ctl --config FILE reload with a file that has become invalid (but still names its socket) reaches the gateway, which refuses the file with its reasons: exit 1, nothing applied; a file ctl cannot read at all exits 1 with the reason, not a usage error")
    func reloadInvalidFile() async throws {
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        let gateway = try await GatewayProcess(config: ControlInteropTests.config(), folder: folder)
        defer { gateway.stop() }
        let path = folder.url.appendingPathComponent("certgate.yaml").path
        try (try String(contentsOfFile: path, encoding: .utf8) + "bogus_key: 1\n").write(toFile: path, atomically: true, encoding: .utf8)
        let refused = try await CertgateProcess.run(["ctl", "--config", path, "reload"])
        #expect(refused.status == 1)
        #expect(refused.stdout == "")
        #expect(refused.stderr.hasPrefix("invalidArgument: "), "\(refused.stderr)")
        #expect(refused.stderr.contains("bogus_key"), "\(refused.stderr)")
        #expect(try await gateway.waitForLog("reload rejected"), "\(gateway.logText)")
        #expect(try await runCtl(socket: ControlInteropTests.socket(folder), ["status"]).stdout.hasPrefix("generation   0\n"))

        try "listeners: [".write(toFile: path, atomically: true, encoding: .utf8)
        let unreadable = try await CertgateProcess.run(["ctl", "--config", path, "status"])
        #expect(unreadable.status == 1)
        #expect(unreadable.stderr.hasPrefix(path + ":"), "\(unreadable.stderr)")
        #expect(!unreadable.stderr.contains("Usage:"), "\(unreadable.stderr)")
    }

    @Test("ctl watch prints the events of each update as it happens — set changes by source, a validity change — as lines and as JSON")
    func watch() async throws {
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        let gateway = try await GatewayProcess(config: ControlInteropTests.config(), folder: folder)
        defer { gateway.stop() }
        let socket = ControlInteropTests.socket(folder)
        let table = try RunningCommand(["ctl", "--socket", socket, "watch"])
        defer { table.stop() }
        let json = try RunningCommand(["ctl", "--socket", socket, "watch", "--json"])
        defer { json.stop() }
        let base = try await Self.subscribe([table, json], socket: socket)
        let since = Self.wholeSecond(0)

        // Within its buffer_days (7 by default) of notAfter: expiring, 3 days left.
        let notAfter = Self.wholeSecond(3 * 86_400 + 3600)
        let soon = Self.authority.leaf(dnsNames: ["soon.test"], notAfter: notAfter)
        try await ControlInteropTests.withControl(socket: socket) { control in
            _ = try await control.updateCertificates(.with { $0.upsert = [ControlInteropTests.entry("soon", soon)] })
            _ = try await control.updateCertificates(.with { $0.delete = ["soon"] })
        }
        // The file again: the probe pushed while subscribing goes.
        gateway.signal(SIGHUP)
        let last = base + 3
        #expect(try await eventually {
            table.lines.contains { $0.contains(" generation \(last) ") } && json.lines.contains { $0.contains("\"generation\":\"\(last)\"") }
        }, "table: \(table.lines) json: \(json.lines)")

        func after(_ lines: [String], marker: String) -> [String] {
            guard let index = lines.firstIndex(where: { $0.contains(marker) }) else { return [] }
            return Array(lines[(index + 1)...])
        }
        let tableLines = after(table.lines, marker: " generation \(base) (control)")
        #expect(tableLines.map { Self.stamped($0).rest } == [
            "generation \(base + 1) (control): +1 ~0 -0",
            "soon: - → expiring (3 days)",
            "generation \(base + 2) (control): +0 ~0 -1",
            "generation \(base + 3) (signal): +0 ~0 -1",
        ])
        #expect(tableLines.allSatisfy { Self.stamped($0).time.map { $0 >= since && $0 <= Date() } == true }, "\(tableLines)")

        let jsonLines = after(json.lines, marker: "\"generation\":\"\(base)\"")
        let masked = jsonLines.map { Self.masking($0, key: "time") }
        #expect(masked.map(\.text) == [
            #"{"time":"…","set_changed":{"generation":"\#(base + 1)","source":"control","added":["soon"]}}"#,
            #"{"time":"…","validity_changed":{"entry":"soon","state":"expiring","days_left":3,"not_after":"\#(Self.iso(notAfter))"}}"#,
            #"{"time":"…","set_changed":{"generation":"\#(base + 2)","source":"control","removed":["soon"]}}"#,
            #"{"time":"…","set_changed":{"generation":"\#(base + 3)","source":"signal","removed":["probe"]}}"#,
        ])
        let times = masked.flatMap(\.values).compactMap { Self.date($0) }
        #expect(times.count == 4 && times.allSatisfy { $0 >= since && $0 <= Date() }, "\(masked.flatMap(\.values))")
        #expect(table.errors == "" && json.errors == "")
    }

    @Test("ctl watch says in its own words that the gateway closed the watch when the gateway stops (exit 1), not the transport's RST_STREAM text; ctl against a socket nobody serves says so")
    func watchEndsPlainly() async throws {
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        let gateway = try await GatewayProcess(config: ControlInteropTests.config(), folder: folder)
        let socket = ControlInteropTests.socket(folder)
        let watcher = try RunningCommand(["ctl", "--socket", socket, "watch"])
        defer { watcher.stop() }
        _ = try await Self.subscribe([watcher], socket: socket)
        #expect(gateway.stop() == 0)
        #expect(try await eventually { !watcher.process.isRunning })
        #expect(watcher.process.terminationStatus == 1)
        #expect(watcher.errors == "the gateway closed the watch (it stopped or restarted)\n", "\(watcher.errors)")

        let absent = try await CertgateProcess.run(["ctl", "--socket", folder.url.appendingPathComponent("run/none.sock").path, "status"])
        #expect(absent.status == 1)
        #expect(absent.stderr == "cannot reach the gateway at \(folder.url.appendingPathComponent("run/none.sock").path): no such socket (is certgate running with this control.socket?)\n")
    }

    // MARK: 2. Never a key

    @Test("no ctl subcommand — list, show, status, apply, upsert (of one file and of several, as one update), delete (of one name and of several), reload, watch; tables and --json; succeeding or failing — nor check or inspect prints a 16-character piece of a key it serves or is given")
    func neverPrintsAKey() async throws {
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        let corpus = DamagedKeyCorpus(authority: Self.authority)
        try corpus.write(into: folder)
        let key = corpus.leaf.key.pkcs8PEM
        let body = DamagedKeyCorpus.body(of: key)
        let hex = Data(base64Encoded: body)!.map { String(format: "%02x", $0) }.joined()
        // The detector knows this key: its PEM is full of the pieces looked for.
        #expect(corpus.leakedPiece(in: key) != nil)
        let leak = KeyMaterialLeakInteropTests()

        // A second certificate for the same key, pushed from a file, inline, and as base64.
        let pushed = Self.authority.leaf(dnsNames: ["pushed.test"], key: corpus.leaf.key)
        try folder.write(corpus.leaf.pem + "\n" + key, to: "corpus/whole.pem")
        try folder.write(key, to: "corpus/good.key")
        try folder.write(pushed.pem, to: "corpus/pushed.pem")
        let base64Key = Data(key.utf8).base64EncodedString()
        try folder.write("certificates:\n  pushed: { tls_cert: corpus/pushed.pem, tls_key: corpus/good.key }\n", to: "push-file.yaml")
        try folder.write("certificates:\n  pushed:\n    tls_cert: \(DamagedKeyCorpus.yamlValue(pushed.pem))\n    tls_key: \(DamagedKeyCorpus.yamlValue(key))\n", to: "push-inline.yaml")
        try folder.write("certificates:\n  pushed: { tls_cert: corpus/pushed.pem, tls_key: \"\(base64Key)\" }\n", to: "push-base64.yaml")
        try folder.write("""
            certificates:
              exact: { tls_cert: certs/exact.pem, tls_key: certs/exact.key }
              fallback: { tls_cert: certs/fallback.pem, tls_key: certs/fallback.key, is_default: true }
              leaky:
                tls_cert: \(DamagedKeyCorpus.yamlValue(corpus.leaf.pem + "\n" + key))
              pushed: { tls_cert: corpus/pushed.pem, tls_key: "\(base64Key)" }

            """, to: "apply.yaml")
        // The gateway serves the key from a combined file (no tls_key).
        let config = ControlInteropTests.config(GatewayInteropTests.config(extraCertificates: "  leaky: { tls_cert: corpus/whole.pem }"))
        let gateway = try await GatewayProcess(config: config, folder: folder)
        defer { gateway.stop() }
        let socket = ControlInteropTests.socket(folder)
        func path(_ name: String) -> String { folder.url.appendingPathComponent(name).path }
        func ctl(_ arguments: String...) async throws -> CertgateProcess.Output {
            let output = try await runCtl(socket: socket, arguments)
            leak.expectNoLeak(output.stdout + output.stderr, in: corpus, "ctl \(arguments.joined(separator: " "))")
            return output
        }

        let table = try RunningCommand(["ctl", "--socket", socket, "watch"])
        defer { table.stop() }
        let json = try RunningCommand(["ctl", "--socket", socket, "watch", "--json"])
        defer { json.stop() }
        let base = try await Self.subscribe([table, json], socket: socket)

        // upsert: file, inline, base64 (dry runs), table and JSON.
        await #expect(try ctl("upsert", path("push-file.yaml")).stdout == "applied generation \(base + 1): 1 added, 0 changed, 0 removed\n  added: pushed\n")
        await #expect(try ctl("upsert", "--json", path("push-inline.yaml")).stdout == #"{"generation":"\#(base + 2)","changed":["pushed"]}"# + "\n")
        await #expect(try ctl("upsert", "--dry-run", path("push-base64.yaml")).stdout == "dry run: would apply generation \(base + 2): 0 added, 1 changed, 0 removed\n  changed: pushed\n")
        await #expect(try ctl("upsert", "--dry-run", "--json", path("push-base64.yaml")).stdout == #"{"generation":"\#(base + 2)","changed":["pushed"],"dry_run":true}"# + "\n")

        // list, show, status.
        let list = try await ctl("list")
        #expect(list.status == 0)
        #expect(list.stdout.hasSuffix("\ngeneration \(base + 2), 7 certificates\n"))
        let listJSON = try await ctl("list", "--json")
        let listed = try #require(try JSONSerialization.jsonObject(with: Data(listJSON.stdout.utf8)) as? [String: Any])
        #expect((listed["certificates"] as? [[String: Any]])?.compactMap { $0["name"] as? String } == ["by-ip", "exact", "fallback", "leaky", "probe", "pushed", "wild"])
        for name in ["leaky", "pushed"] {
            await #expect(try ctl("show", name).stdout.hasPrefix("name         \(name)\n"))
            await #expect(try ctl("show", name, "--json").stdout.hasPrefix(#"{"name":"\#(name)","#))
        }
        await #expect(try ctl("status").stdout.hasPrefix("generation   \(base + 2)\n"))
        await #expect(try ctl("status", "--json").stdout.hasPrefix(#"{"generation":"\#(base + 2)","certificates":7,"#))

        // apply: dry run, for real, and again (nothing left to change), table and JSON.
        let applyPreview = "0 added, 4 changed, 3 removed\n  changed: exact, fallback, leaky, pushed\n  removed: by-ip, probe, wild\n"
        await #expect(try ctl("apply", "--dry-run", path("apply.yaml")).stdout == "dry run: would apply generation \(base + 2): " + applyPreview)
        await #expect(try ctl("apply", "--dry-run", "--json", path("apply.yaml")).stdout
            == #"{"generation":"\#(base + 2)","changed":["exact","fallback","leaky","pushed"],"removed":["by-ip","probe","wild"],"dry_run":true}"# + "\n")
        await #expect(try ctl("apply", path("apply.yaml")).stdout == "applied generation \(base + 3): " + applyPreview)
        await #expect(try ctl("apply", "--json", path("apply.yaml")).stdout == #"{"generation":"\#(base + 4)"}"# + "\n")

        // delete, table and JSON.
        await #expect(try ctl("delete", "pushed").stdout == "applied generation \(base + 5): 0 added, 0 changed, 1 removed\n  removed: pushed\n")
        await #expect(try ctl("upsert", path("push-file.yaml")).status == 0)
        await #expect(try ctl("delete", "--json", "pushed").stdout == #"{"generation":"\#(base + 7)","removed":["pushed"]}"# + "\n")

        // reload: the file's entries come back (from their files: "changed").
        await #expect(try ctl("reload").stdout == "applied generation \(base + 8): 2 added, 3 changed, 0 removed\n  added: by-ip, wild\n  changed: exact, fallback, leaky\n")
        await #expect(try ctl("reload", "--json").stdout == #"{"generation":"\#(base + 9)"}"# + "\n")

        // Several files, and several names, each as one update.
        for name in ["multi-a", "multi-b"] {
            let leaf = Self.authority.leaf(dnsNames: ["\(name).test"])
            try folder.write(leaf.pem, to: "certs/\(name).pem")
            try folder.write(leaf.key.pkcs8PEM, to: "certs/\(name).key")
            try folder.write("certificates:\n  \(name): { tls_cert: certs/\(name).pem, tls_key: certs/\(name).key }\n", to: "\(name).yaml")
        }
        await #expect(try ctl("upsert", path("multi-a.yaml"), path("multi-b.yaml")).stdout
            == "applied generation \(base + 10): 2 added, 0 changed, 0 removed\n  added: multi-a, multi-b\n")
        await #expect(try ctl("delete", "multi-a", "multi-b").stdout
            == "applied generation \(base + 11): 0 added, 0 changed, 2 removed\n  removed: multi-a, multi-b\n")

        // Failing updates: each damaged entry with --keep-last-good, whose reasons go to
        // stdout (the server's) — or, for what ctl cannot read itself, to stderr.
        for item in corpus.items {
            var yaml = "certificates:\n  \(item.name):\n    tls_cert: \(DamagedKeyCorpus.yamlValue(item.tlsCert))\n"
            if let key = item.tlsKey { yaml += "    tls_key: \(DamagedKeyCorpus.yamlValue(key))\n" }
            if let domains = item.domains { yaml += "    domains: \(DamagedKeyCorpus.yamlValue(domains))\n" }
            try folder.write(yaml, to: "damaged-\(item.name).yaml")
            let text = try await ctl("upsert", "--keep-last-good", path("damaged-\(item.name).yaml"))
            let machine = try await ctl("upsert", "--keep-last-good", "--json", path("damaged-\(item.name).yaml"))
            switch text.status {
            case 0:
                #expect(text.stdout.contains("\nkept previous version: \(item.name): "), "\(item.name): \(text.stdout)")
                #expect(machine.status == 0 && machine.stdout.contains(#""errors":[{"entry":"\#(item.name)","#), "\(item.name): \(machine.stdout)")
            case 1:
                #expect(text.stdout == "" && text.stderr.contains("\(item.name): "), "\(item.name): \(text.stderr)")
                #expect(machine.status == 1 && machine.stderr == text.stderr, "\(item.name)")
            default:
                Issue.record("ctl upsert of \(item.name) exited \(text.status): \(text.stderr)")
            }
        }
        // A key pasted where a name belongs.
        try folder.write("certificates:\n  \"\(hex)\": { tls_cert: corpus/pushed.pem, tls_key: corpus/good.key }\n", to: "key-as-name.yaml")
        let keyAsName = try await ctl("upsert", path("key-as-name.yaml"))
        #expect(keyAsName.status == 1)
        #expect(keyAsName.stderr.hasPrefix("invalidArgument: (\(hex.count) characters, not shown): name: "), "\(keyAsName.stderr)")
        _ = try await ctl("upsert", "--json", path("key-as-name.yaml"))
        await #expect(try ctl("delete", body).stdout.hasSuffix(": 0 added, 0 changed, 0 removed\n"))
        await #expect(try ctl("delete", "--json", hex).status == 0)

        // `ctl show NAME` answers "no entry named NAME": with a key pasted as the name.
        for name in [body, hex] {
            for arguments in [["show", name], ["show", name, "--json"]] {
                let output = try await runCtl(socket: socket, arguments)
                #expect(output.status == 1)
                #expect(output.stdout == "")
                leak.expectNoLeak(output.stdout + output.stderr, in: corpus, "ctl show <the key as a name>")
                #expect(output.stderr.hasPrefix("no entry named a value of "), "\(output.stderr.prefix(80))")
            }
        }

        // The watchers saw all of it.
        let generation = try await ControlInteropTests.withControl(socket: socket) { try await $0.getStatus(Certgate_Control_V1_GetStatusRequest()).generation }
        #expect(try await eventually {
            table.lines.contains { $0.contains(" generation \(generation) ") } && json.lines.contains { $0.contains("\"generation\":\"\(generation)\"") }
        })
        #expect(table.lines.contains { Self.stamped($0).rest == "generation \(base + 1) (control): +1 ~0 -0" })
        leak.expectNoLeak(table.lines.joined(separator: "\n") + table.errors, in: corpus, "ctl watch")
        leak.expectNoLeak(json.lines.joined(separator: "\n") + json.errors, in: corpus, "ctl watch --json")

        // check (the gateway's file: a combined file; and a file with the key inline) and inspect.
        try folder.write("""
            listeners:
              - listen: 127.0.0.1:8443
            certificates:
              inline:
                tls_cert: \(DamagedKeyCorpus.yamlValue(corpus.leaf.pem))
                tls_key: \(DamagedKeyCorpus.yamlValue(key))

            """, to: "inline.yaml")
        for (file, count) in [("certgate.yaml", 5), ("inline.yaml", 1)] {
            let check = try await CertgateProcess.run(["check", "--config", path(file)])
            #expect(check.status == 0, "\(check.stdout)")
            #expect(check.stdout.contains(count == 1 ? "configuration is valid: 1 certificate\n" : "configuration is valid: \(count) certificates\n"), "\(check.stdout)")
            leak.expectNoLeak(check.stdout + check.stderr, in: corpus, "check \(file)")
            let checkJSON = try await CertgateProcess.run(["check", "--json", "--config", path(file)])
            #expect(checkJSON.status == 0)
            leak.expectNoLeak(checkJSON.stdout + checkJSON.stderr, in: corpus, "check --json \(file)")
        }
        let inspect = try await CertgateProcess.run(["inspect", path("corpus/whole.pem")])
        #expect(inspect.status == 0)
        #expect(inspect.stdout.hasSuffix("\nserved chain:\n  0: CN=corpus.test (issuer: Interop CA)\n"))
        leak.expectNoLeak(inspect.stdout + inspect.stderr, in: corpus, "inspect whole.pem")
        let inspectJSON = try await CertgateProcess.run(["inspect", "--json", path("corpus/whole.pem")])
        #expect(inspectJSON.status == 0)
        leak.expectNoLeak(inspectJSON.stdout + inspectJSON.stderr, in: corpus, "inspect --json whole.pem")
        for arguments in [["inspect", path("corpus/good.key")], ["inspect", "--json", path("corpus/good.key")]] {
            let output = try await CertgateProcess.run(arguments)
            #expect(output.status == 1)
            #expect(output.stderr == "\(path("corpus/good.key")): no CERTIFICATE block found (found: PRIVATE KEY)\n")
            leak.expectNoLeak(output.stdout + output.stderr, in: corpus, arguments.joined(separator: " "))
        }
        leak.expectNoLeak(gateway.logText, in: corpus, "the gateway's log")
    }

    // MARK: 3. The socket

    @Test("a stale control socket left by a crash (a socket file nobody listens on, and its lock file) is replaced at start, and the gateway serves on it")
    func staleSocketReplaced() async throws {
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        let socket = ControlInteropTests.socket(folder)
        try FileManager.default.createDirectory(
            at: folder.url.appendingPathComponent("run"), withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        try Self.leaveStaleSocket(at: socket)
        try folder.write("", to: "run/control.sock.lock")
        #expect(try FileManager.default.attributesOfItem(atPath: socket)[.type] as? FileAttributeType == .typeSocket)
        #expect(Self.connectError(socket) == ECONNREFUSED)

        let gateway = try await GatewayProcess(config: ControlInteropTests.config(), folder: folder)
        defer { gateway.stop() }
        #expect(logEntries(gateway.logText).contains("notice certgate: socket=\(socket) [Gateway] control socket listening"))
        #expect(!gateway.logText.contains("control socket failed"))
        #expect(Self.connectError(socket) == 0)
        let attributes = try FileManager.default.attributesOfItem(atPath: socket)
        #expect(attributes[.type] as? FileAttributeType == .typeSocket)
        #expect(attributes[.posixPermissions] as? Int == 0o600)
        let status = try await runCtl(socket: socket, ["status"])
        #expect(status.status == 0)
        #expect(status.stdout.hasPrefix("generation   0\ncertificates 4 (0 issued leaves cached)\n"))
        let generation = try await ControlInteropTests.withControl(socket: socket) { control in
            try await control.updateCertificates(.with {
                $0.upsert = [ControlInteropTests.entry("fresh", Self.authority.leaf(dnsNames: ["fresh.test"]))]
            }).generation
        }
        #expect(generation == 1)
    }

    @Test("a watcher that stops reading (a slow WatchEvents client) does not hold up updates: 1,100 are applied (more than the 1,024 events a watcher buffers) and answered meanwhile; closing it leaves the gateway serving and watchable")
    func slowWatcher() async throws {
        let folder = try GatewayInteropTests.fixture()
        defer { folder.remove() }
        let gateway = try await GatewayProcess(config: ControlInteropTests.config(), folder: folder)
        defer { gateway.stop() }
        let socket = ControlInteropTests.socket(folder)
        let updates = 1_100
        let senders = 4
        // The slow watcher has its own connection, with a small HTTP/2 window (1 KiB, about
        // 24 events): once that is full the gateway can send it nothing more, and what it
        // has not sent waits in the watcher's own buffer.
        var slowConfig = HTTP2ClientTransport.Posix.Config.defaults
        slowConfig.http2.targetWindowSize = 1_024
        let slowTransport = try HTTP2ClientTransport.Posix(
            target: .unixDomainSocket(path: socket), transportSecurity: .plaintext, config: slowConfig)
        let subscribed = Collected<UInt64>()
        let answered = Collected<UInt64>()
        // Finished when the slow watcher is to close.
        let (close, closeNow) = AsyncStream.makeStream(of: Void.self)
        // Should anything here wait for ever, say where before the time limit ends the test.
        let phase = Collected<String>()
        let watchdog = Task {
            try await Task.sleep(for: .seconds(150))
            Issue.record("still waiting after '\(phase.all.last ?? "start")': \(answered.all.count) updates answered; the log ends \(logEntries(gateway.logText).suffix(5))")
        }
        defer { watchdog.cancel() }

        let base = try await withGRPCClient(transport: slowTransport) { slowClient -> UInt64 in
            let slow = ControlInteropTests.Control(wrapping: slowClient)
            return try await withThrowingTaskGroup(of: Void.self) { group -> UInt64 in
                group.addTask {
                    try await slow.watchEvents(Certgate_Control_V1_WatchEventsRequest()) { response in
                        var events = response.messages.makeAsyncIterator()
                        // The first event says it is subscribed; from then on it reads nothing.
                        while let event = try await events.next() {
                            if case .setChanged(let change) = event.kind {
                                subscribed.append(change.generation)
                                break
                            }
                        }
                        for await _ in close {}
                        // Returning closes the stream.
                    }
                }
                defer { closeNow.finish() }
                let base = try await ControlInteropTests.withControl(socket: socket) { control -> UInt64 in
                    let probe = ControlInteropTests.entry("probe", Self.authority.leaf(dnsNames: ["probe.test"]))
                    var attempts = 0
                    phase.append("subscribing")
                    while subscribed.all.isEmpty {
                        try #require(attempts < 100, "the slow watcher saw none of \(attempts) updates")
                        _ = try await control.updateCertificates(.with { $0.upsert = [probe] })
                        attempts += 1
                        try await eventually(timeout: .milliseconds(300)) { !subscribed.all.isEmpty }
                    }
                    let base = try await control.getStatus(Certgate_Control_V1_GetStatusRequest()).generation
                    // Each sender flips its own entry between two certificates: every update a real change.
                    let flips = (0..<senders).map { index in
                        (0..<2).map { _ in ControlInteropTests.entry("flip-\(index)", Self.authority.leaf(dnsNames: ["flip-\(index).test"])) }
                    }
                    phase.append("updating")
                    try await withThrowingTaskGroup(of: Void.self) { senderGroup in
                        for index in 0..<senders {
                            senderGroup.addTask {
                                for round in 0..<(updates / senders) {
                                    let result = try await control.updateCertificates(.with { $0.upsert = [flips[index][round % 2]] })
                                    answered.append(result.generation)
                                }
                            }
                        }
                        try await senderGroup.waitForAll()
                    }
                    return base
                }
                // Each update was answered, with its own generation, while the watcher read nothing.
                #expect(answered.all.sorted() == Array((base + 1)...(base + UInt64(updates))))
                phase.append("closing the slow watcher")
                closeNow.finish()
                try await group.waitForAll()
                return base
            }
        }

        // Closed: the gateway goes on, and a new watcher sees the next update.
        phase.append("after")
        #expect(!gateway.logText.contains("control socket failed"))
        let status = try await runCtl(socket: socket, ["status"])
        #expect(status.stdout.hasPrefix("generation   \(base + UInt64(updates))\ncertificates 9 (0 issued leaves cached)\n"), "\(status.stdout)")
        let watcher = try RunningCommand(["ctl", "--socket", socket, "watch"])
        defer { watcher.stop() }
        let probed = try await Self.subscribe([watcher], socket: socket)
        let after = try await ControlInteropTests.withControl(socket: socket) { control in
            try await control.updateCertificates(.with {
                $0.upsert = [ControlInteropTests.entry("after", Self.authority.leaf(dnsNames: ["after.test"]))]
            }).generation
        }
        #expect(after == probed + 1)
        #expect(try await eventually { watcher.lines.contains { Self.stamped($0).rest == "generation \(after) (control): +1 ~0 -0" } }, "\(watcher.lines)")
        phase.append("handshake")
        #expect(try await servedCommonName(port: gateway.port, serverName: "after.test", folder: folder).cn == "after.test")
    }
}

/// A `certgate` command left running (`ctl watch`), its output gathered as it comes.
final class RunningCommand: Sendable {
    let process: LaunchedProcess

    init(_ arguments: [String]) throws {
        process = try LaunchedProcess(CertgateProcess.binary, arguments)
    }

    /// The complete lines printed so far.
    var lines: [String] {
        var lines = process.standardOutputText.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        lines.removeLast()  // what follows the last newline: nothing, or a line still being written
        return lines
    }

    var errors: String { process.standardErrorText }

    func stop() {
        process.stop()
    }
}
