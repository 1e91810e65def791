import CertificateTestSupport
import Foundation
import Testing

/// README: "Tests generate every certificate and key they use; no private key is committed."
/// The files Git tracks are read (`git ls-files`, as a fresh clone has them; what is ignored —
/// build output, the fuzzer's local corpus — is not the repository's); outside a Git checkout,
/// every file but build output.
@Suite("No private key in the repository", .timeLimit(.minutes(2)))
struct NoCommittedKeysTests {
    /// The package root: this file is `Tests/GatewayTests/NoCommittedKeysTests.swift`.
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// A PEM private key block with a body: its BEGIN line, any `Name: value` headers (an
    /// encrypted legacy key), then at least two full lines of base64 or one run of 100
    /// base64 characters — lines may be indented (a multi-line string in code) and ended by
    /// an escaped `\n` (a one-line string). The damaged-PEM fixtures in the tests have a few
    /// characters at most; the smallest key, Ed25519 in PKCS#8, has 64.
    static var keyBlock: Regex<Substring> { /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----(?:\r?\n|\\n)(?:[^\n\\]*:[^\n\\]*(?:\r?\n|\\n))*(?:\r?\n|\\n)?(?:(?:[ \t]*[A-Za-z0-9+\/=]{40,}(?:\r?\n|\\n)){2,}|[ \t]*[A-Za-z0-9+\/=]{100,})/ }

    /// File names that hold keys or key stores whatever their content.
    static let keyFileSuffixes = [".key", ".p12", ".pfx", ".jks", ".keystore"]

    /// Every file under `folder` except build output (`.build*`), Git's folder and the
    /// package manager's caches.
    static func files(under folder: URL) -> [URL] {
        guard let walker = FileManager.default.enumerator(at: folder, includingPropertiesForKeys: [.isRegularFileKey, .fileSizeKey]) else { return [] }
        var found: [URL] = []
        for case let url as URL in walker {
            let name = url.lastPathComponent
            if name.hasPrefix(".build") || name == ".git" || name == ".swiftpm" {
                walker.skipDescendants()
                continue
            }
            if (try? url.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true { found.append(url) }
        }
        return found
    }

    /// The files Git tracks under `folder`, or nil when it is not a Git checkout.
    static func trackedFiles(under folder: URL) async throws -> [URL]? {
        guard FileManager.default.fileExists(atPath: folder.appendingPathComponent(".git").path) else { return nil }
        // safe.directory: the checkout may belong to another user than the one running the tests.
        let listed = try await FinishedProcess.run(
            URL(fileURLWithPath: "/usr/bin/git"), ["-c", "safe.directory=*", "-C", folder.path, "ls-files", "-z"], timeout: .seconds(60))
        guard listed.status == 0, !listed.timedOut else { throw ScanFailure(reason: "git ls-files failed: \(listed.stderr)") }
        return listed.stdout.split(separator: "\0").map { folder.appendingPathComponent(String($0)) }
    }

    struct ScanFailure: Error { let reason: String }

    /// The files of `folder` that hold a private key, by path relative to it.
    static func keyHolders(under folder: URL) async throws -> [String] {
        try await (trackedFiles(under: folder) ?? files(under: folder)).compactMap { url -> String? in
            let relative = String(url.path.dropFirst(folder.path.count + 1))
            if keyFileSuffixes.contains(where: { relative.lowercased().hasSuffix($0) }) { return relative }
            guard let size = try? url.resourceValues(forKeys: [.fileSizeKey]).fileSize, size < 8 << 20,
                  let data = FileManager.default.contents(atPath: url.path) else { return nil }
            let text = String(decoding: data, as: UTF8.self)
            return text.contains(keyBlock) ? relative : nil
        }
    }

    @Test("no file of the package holds a PEM private key or is a key file; the damaged-key fixtures in the tests are not keys")
    func noKeyCommitted() async throws {
        #expect(FileManager.default.fileExists(atPath: Self.root.appendingPathComponent("Package.swift").path))
        #expect(try await Self.keyHolders(under: Self.root) == [])
    }

    @Test("the scan finds a generated key in an indented multi-line string, in an escaped one-line string, with its base64 on one line, as SEC1 after EC PARAMETERS, as encrypted PEM with headers, and a .key file whatever it holds; not a torn fixture or build output")
    func scanFindsKeys() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("certgate-keyscan-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder.appendingPathComponent("nested"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let key = TestKey.make()
        let body = key.pkcs8PEM.split(separator: "\n").dropFirst().dropLast().joined(separator: "\n")
        let indented = key.pkcs8PEM.split(separator: "\n").map { "        " + $0 }.joined(separator: "\n")
        try Data(("    let fixture = \"\"\"\n" + indented + "\n        \"\"\"\n").utf8).write(to: folder.appendingPathComponent("nested/Fixture.swift"))
        let escaped = key.pkcs8PEM.replacingOccurrences(of: "\n", with: "\\n")
        try Data(("let fixture = \"" + escaped + "\"\n").utf8).write(to: folder.appendingPathComponent("nested/Escaped.swift"))
        let oneLine = "-----BEGIN PRIVATE KEY-----\n" + body.replacingOccurrences(of: "\n", with: "") + "\n-----END PRIVATE KEY-----\n"
        try Data(oneLine.utf8).write(to: folder.appendingPathComponent("one-line.pem"))
        try Data((TestKey.p256ECParametersPEM + (key.sec1PEM ?? "")).utf8).write(to: folder.appendingPathComponent("sec1.pem"))
        let encrypted = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00000000000000000000000000000000\n\n\(body)\n-----END RSA PRIVATE KEY-----\n"
        try Data(encrypted.utf8).write(to: folder.appendingPathComponent("legacy.txt"))
        try Data("not a key at all".utf8).write(to: folder.appendingPathComponent("server.key"))
        try Data("-----BEGIN PRIVATE KEY-----\nMIGHAgEA\n-----END PRIVATE KEY-----\n".utf8).write(to: folder.appendingPathComponent("torn.txt"))
        try FileManager.default.createDirectory(at: folder.appendingPathComponent(".build"), withIntermediateDirectories: true)
        try Data(key.pkcs8PEM.utf8).write(to: folder.appendingPathComponent(".build/ignored.pem"))
        #expect(try await Self.keyHolders(under: folder).sorted() == ["legacy.txt", "nested/Escaped.swift", "nested/Fixture.swift", "one-line.pem", "sec1.pem", "server.key"])
    }
}
