import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL

/// ``ACMETransport`` over AsyncHTTPClient: HTTPS only, trusting the system's roots plus
/// `extraRoots` (a private CA, Pebble's test root), with a deadline per exchange and a
/// bound on the answer's size.
public final class HTTPClientTransport: ACMETransport {
    private let client: HTTPClient
    private let timeout: TimeAmount
    /// The largest answer read (a certificate chain, a directory): 1 MiB.
    public static let maxResponseBytes = 1 << 20

    /// - Parameter extraRoots: DER certificates trusted besides the system's roots.
    public init(extraRoots: [[UInt8]] = [], timeout: Duration = .seconds(30)) throws {
        var tls = TLSConfiguration.makeClientConfiguration()
        if !extraRoots.isEmpty {
            tls.additionalTrustRoots = [.certificates(try extraRoots.map { try NIOSSLCertificate(bytes: $0, format: .der) })]
        }
        var configuration = HTTPClient.Configuration(tlsConfiguration: tls)
        configuration.redirectConfiguration = .disallow
        configuration.decompression = .disabled
        self.client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        let (seconds, attoseconds) = timeout.components
        self.timeout = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }

    /// Must be called before the transport goes away.
    public func shutdown() async {
        try? await client.shutdown()
    }

    public func send(_ request: ACMEHTTPRequest) async throws(ACMETransportError) -> ACMEHTTPResponse {
        guard request.url.lowercased().hasPrefix("https://") else { throw ACMETransportError(.invalidURL, url: request.url) }
        var outgoing = HTTPClientRequest(url: request.url)
        outgoing.method = HTTPMethod(rawValue: request.method.rawValue)
        outgoing.headers.add(name: "User-Agent", value: "certgate")
        if let contentType = request.contentType { outgoing.headers.add(name: "Content-Type", value: contentType) }
        if let accept = request.accept { outgoing.headers.add(name: "Accept", value: accept) }
        if let body = request.body { outgoing.body = .bytes(ByteBuffer(bytes: body)) }
        do {
            let response = try await client.execute(outgoing, timeout: timeout)
            let body = request.method == .head ? ByteBuffer() : try await response.body.collect(upTo: Self.maxResponseBytes)
            return ACMEHTTPResponse(
                status: Int(response.status.code),
                headers: response.headers.map { ($0.name, $0.value) },
                body: Array(body.readableBytesView))
        } catch {
            throw ACMETransportError(Self.kind(of: error), url: request.url)
        }
    }

    /// The error's kind, never its text.
    private static func kind(of error: any Error) -> ACMETransportError.Kind {
        switch error {
        case let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout || error == .connectTimeout:
            return .timeout
        case let error as HTTPClientError where error == .invalidURL || error == .emptyHost:
            return .invalidURL
        case is NIOSSLError, is BoringSSLError:
            return .tls
        case is NIOTooManyBytesError:
            return .tooLarge
        default:
            return .connection
        }
    }
}
