#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import NIOCore

import AsyncHTTPClient
import NIOPosix
import NIOSSL

/// Why a socket could not be bound or a connection made, in the system's words for its
/// `errno` ("Connection refused (errno 111)") or certgate's, rather than a library's error
/// text, which names its own calls and types.
enum SocketFailure {
    static func describe(_ error: any Error) -> String {
        switch error {
        case let error as ChannelError:
            if case .connectTimeout(let amount) = error { return "no answer within \(amount.nanoseconds / 1_000_000) ms" }
            return error == .ioOnClosedChannel ? "the connection closed" : "the connection failed"
        case let error as NIOConnectionError:
            if let first = error.connectionErrors.first { return describe(first.error) }
            // No address to try: the name did not resolve.
            return error.dnsAError != nil || error.dnsAAAAError != nil ? "the host name does not resolve" : "cannot connect"
        case let error as HTTPClientError:
            if error == .deadlineExceeded || error == .readTimeout || error == .connectTimeout { return "no answer in time" }
            return "the HTTP exchange failed"
        case is NIOSSLError, is BoringSSLError:
            return "the TLS handshake failed"
        case let error as IOError:
            return "\(String(cString: strerror(error.errnoCode))) (errno \(error.errnoCode))"
        case is SocketAddressError:
            return "not an address this machine can bind"
        default:
            return "an unexpected error"
        }
    }
}
