import Foundation

/// One HTTP exchange with an ACME server. ``HTTPClientTransport`` is the real one; tests
/// give the client a fake directory through this protocol.
public protocol ACMETransport: Sendable {
    /// - Throws: ``ACMETransportError`` when no response arrived (connection, TLS, timeout).
    func send(_ request: ACMEHTTPRequest) async throws(ACMETransportError) -> ACMEHTTPResponse
}

public struct ACMEHTTPRequest: Sendable, Equatable {
    public enum Method: String, Sendable { case get = "GET", head = "HEAD", post = "POST" }

    public var method: Method
    public var url: String
    public var body: [UInt8]?
    /// The body's media type: `application/jose+json` for every ACME POST (RFC 8555 §6.2).
    public var contentType: String?
    /// e.g. `application/pem-certificate-chain` when downloading a certificate.
    public var accept: String?

    public init(method: Method, url: String, body: [UInt8]? = nil, contentType: String? = nil, accept: String? = nil) {
        self.method = method
        self.url = url
        self.body = body
        self.contentType = contentType
        self.accept = accept
    }
}

public struct ACMEHTTPResponse: Sendable, Equatable {
    public var status: Int
    /// Header names as sent; compare case-insensitively (``header(_:)``).
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    public init(status: Int, headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// The first value of header `name` (case-insensitive).
    public func header(_ name: String) -> String? {
        headers.first { $0.name.caseInsensitiveCompare(name) == .orderedSame }?.value
    }

    /// Every value of header `name`.
    public func headers(named name: String) -> [String] {
        headers.filter { $0.name.caseInsensitiveCompare(name) == .orderedSame }.map(\.value)
    }

    public static func == (lhs: ACMEHTTPResponse, rhs: ACMEHTTPResponse) -> Bool {
        lhs.status == rhs.status && lhs.body == rhs.body
            && lhs.headers.map { "\($0.name): \($0.value)" } == rhs.headers.map { "\($0.name): \($0.value)" }
    }
}

/// No response from the ACME server, in certgate's words.
public struct ACMETransportError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        case connection = "cannot connect"
        case tls = "the TLS handshake failed (is the CA's root in ca_roots?)"
        case timeout = "no answer in time"
        case invalidURL = "not an https URL"
        case tooLarge = "the answer is too large"
    }

    public var kind: Kind
    public var url: String

    public init(_ kind: Kind, url: String) {
        self.kind = kind
        self.url = url
    }

    public var description: String { "\(url): \(kind.rawValue)" }
}
