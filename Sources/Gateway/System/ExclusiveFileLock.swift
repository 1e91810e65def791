import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// An exclusive `flock` on a file, held until this object goes: how a second certgate
/// learns that a socket or state folder is in use. The kernel drops the lock when the
/// process dies, so a crash leaves nothing stale behind.
final class ExclusiveFileLock: Sendable {
    enum Failure: Error, CustomStringConvertible {
        case cannotOpen(path: String, reason: String)
        case held(path: String)

        var description: String {
            switch self {
            case .cannotOpen(let path, let reason): return "cannot open the lock file \(path): \(reason)"
            case .held(let path): return "another process holds the lock \(path)"
            }
        }
    }

    private let descriptor: Int32

    /// Takes the lock without waiting; throws ``Failure/held(path:)`` if another process has it.
    init(path: String) throws(Failure) {
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw .cannotOpen(path: path, reason: String(cString: strerror(errno))) }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            close(descriptor)
            throw .held(path: path)
        }
        self.descriptor = descriptor
    }

    deinit {
        flock(descriptor, LOCK_UN)
        close(descriptor)
    }
}
