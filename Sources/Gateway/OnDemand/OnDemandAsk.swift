import AsyncHTTPClient
import CertificateKit
import Foundation
import NIOCore
import NIOHTTP1
import Synchronization

/// The `ask` endpoint of an on-demand entry (as Caddy's on-demand TLS asks): before a name
/// is ordered, `GET <ask>?domain=<name>`; a 2xx answer allows it; any other status, a
/// redirect, a connection failure or no answer within `ask_timeout` refuses it. A yes is
/// remembered for `ask_cache`; a no goes to the negative cache (``OnDemandLimits``).
final class OnDemandAsk: Sendable {
    private let client: HTTPClient
    private let allowed = Mutex<[String: Date]>([:])

    init(client: HTTPClient) {
        self.client = client
    }

    /// Why `value` cannot be an `ask` URL, or nil: an absolute http or https URL with a host,
    /// no user or password, no fragment.
    static func problem(with value: String) -> String? {
        guard let components = URLComponents(string: value), let scheme = components.scheme?.lowercased(),
              scheme == "http" || scheme == "https" else {
            return "\(QuotedValue.quote(value, limit: 255)) is not an http or https URL"
        }
        guard let host = components.host, !host.isEmpty else { return "\(QuotedValue.quote(value, limit: 255)) has no host" }
        if components.user != nil || components.password != nil { return "the URL may not hold a user or password" }
        if components.fragment != nil { return "the URL may not hold a #fragment" }
        return nil
    }

    /// The URL asked for `name`: `domain=<name>` added to the URL's query.
    static func url(_ ask: String, name: String) -> String? {
        guard var components = URLComponents(string: ask) else { return nil }
        components.queryItems = (components.queryItems ?? []) + [URLQueryItem(name: "domain", value: name)]
        return components.string
    }

    /// Whether the endpoint allows `name` (a remembered yes answers at once).
    /// - Returns: nil when allowed, else the reason (for the log).
    func ask(_ ask: String, name: String, timeout: TimeInterval, remember: TimeInterval, now: Date = Date()) async -> String? {
        let key = ask + "\u{0}" + name
        if let until = allowed.withLock({ $0[key] }), until > now { return nil }
        guard let url = Self.url(ask, name: name) else { return "the ask URL cannot take the name" }
        var request = HTTPClientRequest(url: url)
        request.method = .GET
        let status: HTTPResponseStatus
        do {
            let response = try await client.execute(request, timeout: .milliseconds(Int64(timeout * 1_000)))
            status = response.status
            // The body is not read: drain a little and drop the connection's rest.
            _ = try? await response.body.collect(upTo: 64 * 1_024)
        } catch let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout || error == .connectTimeout {
            return "the ask endpoint did not answer within \(Int(timeout * 1_000)) ms"
        } catch {
            return "the ask endpoint could not be reached"
        }
        guard (200..<300).contains(Int(status.code)) else { return "the ask endpoint answered \(status.code)" }
        if remember > 0 {
            allowed.withLock { allowed in
                if allowed.count > OnDemandLimits.rememberedLimit { allowed = allowed.filter { $0.value > now } }
                allowed[key] = now.addingTimeInterval(remember)
            }
        }
        return nil
    }
}
