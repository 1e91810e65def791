#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import NIOCore

/// Why a socket could not be bound, in the system's words for its `errno` ("Address
/// already in use (errno 98)") rather than NIO's error text, which names its own calls.
enum SocketFailure {
    static func describe(_ error: any Error) -> String {
        switch error {
        case let error as IOError:
            return "\(String(cString: strerror(error.errnoCode))) (errno \(error.errnoCode))"
        case is SocketAddressError:
            return "not an address this machine can bind"
        default:
            return "an unexpected error"
        }
    }
}
