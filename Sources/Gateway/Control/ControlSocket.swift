import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The control socket's file-system side: the parent folder (0700), a lock file held for
/// the process's lifetime so a second instance refuses to start (gRPC's bind would
/// otherwise silently replace a live socket), the removal of a stale socket left by a
/// crash, and the socket's mode once bound.
final class ControlSocket: Sendable {
    struct Failure: Error, CustomStringConvertible {
        let reason: String
        var description: String { reason }
    }

    let path: String
    private let lock: ExclusiveFileLock

    /// Prepares `path` for binding; throws if another instance holds it.
    init(path: String) throws(Failure) {
        self.path = path
        let folder = (path as NSString).deletingLastPathComponent
        if !folder.isEmpty && !FileManager.default.fileExists(atPath: folder) {
            do {
                try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            } catch {
                throw Failure(reason: "cannot make the socket's folder \(folder)")
            }
        }
        let lockPath = path + ".lock"
        do {
            lock = try ExclusiveFileLock(path: lockPath)
        } catch .held {
            throw Failure(reason: "another certgate holds the control socket \(path) (lock \(lockPath)); refusing to start")
        } catch {
            throw Failure(reason: error.description)
        }
        // We hold the lock: a socket file still there was left by a process that is gone.
        if FileManager.default.fileExists(atPath: path) { unlink(path) }
    }

    /// Applies the configured mode to the bound socket.
    func restrict(mode: Int) throws(Failure) {
        guard chmod(path, mode_t(mode)) == 0 else {
            throw Failure(reason: "cannot set mode \(String(mode, radix: 8)) on \(path): \(String(cString: strerror(errno)))")
        }
    }

    deinit {
        // Before the lock goes with this object: the socket is ours to remove.
        unlink(path)
    }
}
