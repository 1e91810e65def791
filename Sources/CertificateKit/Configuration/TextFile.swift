#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A whole regular file read as UTF-8 text, with the ``FileStamp`` of what was read.
///
/// One `open` and one `fstat` per file: the stamp describes the very file the bytes came
/// from (a rename over the path between a `stat` and an `open` cannot pair one file's stamp
/// with another's text). Only regular files are read — a FIFO would block, `/dev/zero`
/// would never end — and none larger than ``maximumSize`` (a certificate chain is a few
/// KiB; a bundle of every public root about 200 KiB).
struct TextFile {
    /// Why a file was not read.
    enum Failure: Error, Equatable {
        /// No file at the path — the value may not be a path at all (it must then not be quoted).
        case missing
        /// A folder, device, FIFO or socket.
        case notRegular(isDirectory: Bool)
        /// Larger than ``maximumSize``.
        case tooLarge
        /// Not valid UTF-8.
        case notText
        /// The file exists but `open`, `fstat` or `read` failed (permissions, I/O).
        case unreadable
    }

    /// 16 MiB.
    static let maximumSize = 16 << 20

    let text: String
    let stamp: FileStamp

    static func read(_ path: String) -> Result<TextFile, Failure> {
        // A NUL would end the path early: `/etc\0…` is no file named so.
        guard !path.utf8.contains(0) else { return .failure(.missing) }
        let descriptor = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        guard descriptor >= 0 else {
            // Whatever `open` said (a name too long for a path is no file either), only a
            // path that exists is "unreadable": the caller may quote that one.
            var info = stat()
            return .failure(stat(path, &info) == 0 ? .unreadable : .missing)
        }
        defer { close(descriptor) }
        var info = stat()
        guard fstat(descriptor, &info) == 0 else { return .failure(.unreadable) }
        guard info.st_mode & S_IFMT == S_IFREG else { return .failure(.notRegular(isDirectory: info.st_mode & S_IFMT == S_IFDIR)) }
        guard info.st_size <= maximumSize else { return .failure(.tooLarge) }
        // The size stat gave, and more if the file grows while it is read.
        var bytes = [UInt8](repeating: 0, count: Int(info.st_size) + 1)
        var count = 0
        while true {
            if count == bytes.count {
                guard count <= maximumSize else { return .failure(.tooLarge) }
                bytes.append(contentsOf: repeatElement(0, count: max(4096, count)))
            }
            let read = bytes.withUnsafeMutableBytes { buffer in
                Glibc.read(descriptor, buffer.baseAddress! + count, buffer.count - count)
            }
            if read < 0 {
                if errno == EINTR { continue }
                return .failure(.unreadable)
            }
            if read == 0 { break }
            count += read
        }
        guard count <= maximumSize else { return .failure(.tooLarge) }
        guard let text = String(validating: bytes[..<count], as: UTF8.self) else { return .failure(.notText) }
        return .success(TextFile(text: text, stamp: FileStamp(info)))
    }
}
