import CertificateTestSupport
import Crypto
import Foundation
import SwiftASN1
import Testing
import X509

/// `certgate ca init`, `certgate inspect` and `ctl` against a dead socket, as README's
/// command table promises them (the real binary).
@Suite("ca init, inspect and ctl's reasons for an unreachable gateway (the real binary)", .timeLimit(.minutes(2)))
struct AuthorityAndInspectCommandTests {
    /// Colon-separated upper-case hex, as `inspect` prints identifiers (checked by hand
    /// against `openssl x509 -noout -serial -fingerprint -sha256`).
    static func hex(_ bytes: some Sequence<UInt8>) -> String {
        bytes.map { String(format: "%02X", $0) }.joined(separator: ":")
    }

    static func iso(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.string(from: date)
    }

    @Test("ca init with no options writes state/ca.pem and state/ca.key: CN 'certgate local CA' (O=certgate), 3650 days, P-256, CA with pathLen 0 and keyCertSign, key 0600; a second run refuses to overwrite")
    func caInitDefaults() async throws {
        let folder = try FixtureFolder()
        defer { folder.remove() }
        let first = try await CertgateProcess.run(["ca", "init"], in: folder.url)
        #expect(first.status == 0, "\(first.stderr)")
        #expect(first.stdout == "wrote state/ca.pem and state/ca.key\n")
        let pem = try String(contentsOf: folder.url.appendingPathComponent("state/ca.pem"), encoding: .utf8)
        let certificate = try Certificate(pemEncoded: pem)
        #expect(certificate.subject.description == "O=certgate,CN=certgate local CA")
        #expect(certificate.issuer == certificate.subject)
        #expect(certificate.notValidAfter.timeIntervalSince(certificate.notValidBefore) >= 3_650 * 86_400)
        #expect(certificate.notValidAfter.timeIntervalSince(certificate.notValidBefore) <= 3_650 * 86_400 + 3_600)
        #expect(P256.Signing.PublicKey(certificate.publicKey) != nil)
        #expect(try certificate.extensions.basicConstraints == .isCertificateAuthority(maxPathLength: 0))
        #expect(try certificate.extensions.keyUsage?.keyCertSign == true)
        let keyPath = folder.url.appendingPathComponent("state/ca.key").path
        let mode = try #require(try FileManager.default.attributesOfItem(atPath: keyPath)[.posixPermissions] as? Int)
        #expect(mode == 0o600)
        // The key is the certificate's.
        let key = try P256.Signing.PrivateKey(pemRepresentation: String(contentsOfFile: keyPath, encoding: .utf8))
        #expect(Certificate.PublicKey(key.publicKey) == certificate.publicKey)

        let again = try await CertgateProcess.run(["ca", "init"], in: folder.url)
        #expect(again.status == 1)
        #expect(again.stderr == "state/ca.pem exists; refusing to overwrite a CA (move it away first)\n")
        #expect(try String(contentsOf: folder.url.appendingPathComponent("state/ca.pem"), encoding: .utf8) == pem)
    }

    @Test("ca init --out --name --days: the CA named and valid for that many days, in that folder; --days outside 1–9125 is refused")
    func caInitOptions() async throws {
        let folder = try FixtureFolder()
        defer { folder.remove() }
        let out = folder.url.appendingPathComponent("pki").path
        let made = try await CertgateProcess.run(["ca", "init", "--out", out, "--name", "Dev CA", "--days", "30"])
        #expect(made.status == 0, "\(made.stderr)")
        let certificate = try Certificate(pemEncoded: String(contentsOfFile: out + "/ca.pem", encoding: .utf8))
        #expect(certificate.subject.description == "O=certgate,CN=Dev CA")
        #expect(certificate.notValidAfter.timeIntervalSince(certificate.notValidBefore) >= 30 * 86_400)
        #expect(certificate.notValidAfter.timeIntervalSince(certificate.notValidBefore) <= 30 * 86_400 + 3_600)
        for days in ["0", "9126"] {
            let refused = try await CertgateProcess.run(["ca", "init", "--out", folder.url.appendingPathComponent("other").path, "--days", days])
            #expect(refused.status != 0)
            #expect(refused.stderr.contains("--days must be 1 to 9125 (25 years), not \(days)"), "\(refused.stderr)")
            #expect(!FileManager.default.fileExists(atPath: folder.url.appendingPathComponent("other/ca.pem").path))
        }
    }

    @Test("inspect prints every fact of a leaf exactly: subject, issuer, serial, validity, days left, key, names, CA, key identifiers, SHA-256; then the served chain")
    func inspectExactly() async throws {
        let folder = try FixtureFolder()
        defer { folder.remove() }
        let authority = TestCertificate.authority(commonName: "Inspect CA")
        // 89.5 days left, so "days left" is 89 whenever the test runs within half a day.
        let notAfter = Date(timeIntervalSince1970: (Date().timeIntervalSince1970 + 89.5 * 86_400).rounded())
        let leaf = authority.leaf(dnsNames: ["inspect.test", "www.inspect.test"], ipAddresses: ["127.0.0.1"], notAfter: notAfter)
        try folder.write(leaf.pem, to: "leaf.pem")
        // As stored: X.509 times are whole seconds.
        let stored = try Certificate(derEncoded: leaf.parsed.der)
        let ski = try #require(try stored.extensions.subjectKeyIdentifier?.keyIdentifier)
        let aki = try #require(try stored.extensions.authorityKeyIdentifier?.keyIdentifier)
        let output = try await CertgateProcess.run(["inspect", folder.url.appendingPathComponent("leaf.pem").path])
        #expect(output.status == 0, "\(output.stderr)")
        #expect(output.stdout == """
            certificate 1 of 1
              subject          CN=inspect.test
              issuer           CN=Inspect CA
              serial           \(Self.hex(stored.serialNumber.bytes))
              not before       \(Self.iso(stored.notValidBefore))
              not after        \(Self.iso(stored.notValidAfter))
              days left        89 (ok)
              key              ECDSA P-256
              dns names        inspect.test, www.inspect.test
              ip addresses     127.0.0.1
              ca               no
              subject key id   \(Self.hex(ski))
              authority key id \(Self.hex(aki))
              sha256           \(Self.hex(SHA256.hash(data: leaf.parsed.der)))
            served chain:
              0: CN=inspect.test (issuer: Inspect CA)

            """)
    }

    @Test("ctl at a socket file nobody listens on says so and exits 1")
    func ctlDeadSocket() async throws {
        let folder = try FixtureFolder()
        defer { folder.remove() }
        // A socket bound and left behind by a process that exited.
        let socket = folder.url.appendingPathComponent("dead.sock").path
        let bound = try await runCommand("/usr/bin/python3", ["-c", "import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])", socket])
        #expect(bound.status == 0, "\(bound.output)")
        let output = try await CertgateProcess.run(["ctl", "--socket", socket, "status"])
        #expect(output.status == 1)
        #expect(output.stdout.isEmpty)
        #expect(output.stderr == "cannot reach the gateway at \(socket): nothing listens on the socket (certgate stopped?)\n", "\(output.stderr)")
    }

    @Test("ctl with neither --socket nor --config uses control.socket of config/certgate.yaml in the working folder")
    func ctlDefaultSocket() async throws {
        let folder = try FixtureFolder()
        defer { folder.remove() }
        try FileManager.default.createDirectory(at: folder.url.appendingPathComponent("config"), withIntermediateDirectories: true)
        try folder.write("listeners:\n  - listen: 127.0.0.1:8443\ncontrol:\n  socket: run/here.sock\n", to: "config/certgate.yaml")
        let output = try await CertgateProcess.run(["ctl", "status"], in: folder.url)
        #expect(output.status == 1)
        // Relative to the configuration's folder.
        let socket = folder.url.appendingPathComponent("config/run/here.sock").path
        #expect(output.stderr == "cannot reach the gateway at \(socket): no such socket (is certgate running with this control.socket?)\n", "\(output.stderr)")
    }
}
