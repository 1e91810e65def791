@testable import CertificateKit
import CertificateTestSupport
import Foundation
import Testing

/// How `tls_cert`/`tls_key` files are read: whole regular files only, with the stamp of what
/// was read; anything else is an error naming the path, never a hang.
@Suite("Certificate and key files are read whole, regular files only", .timeLimit(.minutes(1)))
struct TextFileTests {
    static func folder() throws -> URL {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("certgate-textfile-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        return folder
    }

    static func reason(_ value: String, baseDirectory: String) -> String? {
        do {
            _ = try MaterialSource(value).read(baseDirectory: baseDirectory, entry: "e", field: "tls_cert")
            return nil
        } catch {
            return error.reason
        }
    }

    @Test("a regular file is read whole, and its stamp is the one stat gives for it")
    func regularFile() throws {
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = folder.appendingPathComponent("leaf.pem").path
        let leaf = TestCertificate.authority().leaf(dnsNames: ["file.test"])
        try leaf.pem.write(toFile: path, atomically: false, encoding: .utf8)
        let file = try TextFile.read(path).get()
        #expect(file.text == leaf.pem)
        #expect(file.stamp == FileStamp(path: path))
    }

    @Test("a FIFO is refused at once (with no writer, opening one would block)")
    func fifoIsNotRead() throws {
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = folder.appendingPathComponent("pipe.pem").path
        #expect(mkfifo(path, 0o600) == 0)
        #expect(TextFile.read(path).failure == .notRegular(isDirectory: false))
        #expect(Self.reason(path, baseDirectory: "/") == "\(path) is not a regular file (a device, FIFO or socket is not read)")
    }

    @Test("a device (/dev/zero would never end) and a folder are refused, each named")
    func devicesAndFolders() throws {
        #expect(TextFile.read("/dev/zero").failure == .notRegular(isDirectory: false))
        #expect(Self.reason("/dev/zero", baseDirectory: "/") == "/dev/zero is not a regular file (a device, FIFO or socket is not read)")
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(at: folder) }
        #expect(TextFile.read(folder.path).failure == .notRegular(isDirectory: true))
        #expect(Self.reason(folder.path, baseDirectory: "/") == "\(folder.path) is a folder, not a file")
    }

    @Test("a file over 16 MiB is refused unread; one of exactly 16 MiB is read")
    func sizeLimit() throws {
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let large = folder.appendingPathComponent("large.pem").path
        #expect(FileManager.default.createFile(atPath: large, contents: Data(repeating: 0x41, count: 16 << 20 + 1)))
        #expect(TextFile.read(large).failure == .tooLarge)
        #expect(Self.reason(large, baseDirectory: "/") == "file \(large) is larger than 16 MiB: no certificate or key is")
        let limit = folder.appendingPathComponent("limit.pem").path
        #expect(FileManager.default.createFile(atPath: limit, contents: Data(repeating: 0x41, count: 16 << 20)))
        #expect(try TextFile.read(limit).get().text.utf8.count == 16 << 20)
    }

    @Test("bytes that are not UTF-8 (DER) are 'not text'")
    func notText() throws {
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = folder.appendingPathComponent("leaf.der").path
        #expect(FileManager.default.createFile(atPath: path, contents: Data([0x30, 0x82, 0xFF, 0xFE])))
        #expect(TextFile.read(path).failure == .notText)
        #expect(Self.reason(path, baseDirectory: "/") == "file \(path) is not text (DER is not supported; use PEM)")
    }

    @Test("no file, or a value too long to be a path, is 'missing' — and a long value is not quoted")
    func missing() throws {
        #expect(TextFile.read("/nonexistent/leaf.pem").failure == .missing)
        let long = String(repeating: "QUJD", count: 80)  // 320 characters: ENAMETOOLONG
        #expect(TextFile.read("/tmp/" + long).failure == .missing)
        let reason = try #require(Self.reason(long, baseDirectory: "/tmp"))
        #expect(!reason.contains("QUJDQUJD"))
        #expect(reason.hasPrefix("neither PEM, nor base64 of PEM, nor an existing file (the value, 320 characters, is not shown"))
        // A NUL would cut the path short (open("/etc") succeeds): no file, and nothing quoted.
        let cut = "/etc\0" + long
        #expect(TextFile.read(cut).failure == .missing)
        let cutReason = try #require(Self.reason(cut, baseDirectory: "/"))
        #expect(!cutReason.contains("QUJDQUJD"))
    }
}

extension Result {
    var failure: Failure? {
        if case .failure(let failure) = self { return failure }
        return nil
    }
}
