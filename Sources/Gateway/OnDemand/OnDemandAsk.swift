import AsyncHTTPClient
import CertificateKit
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL
import Synchronization

/// The `ask` endpoint of an on-demand entry (as Caddy's on-demand TLS asks): before a name
/// is ordered, `GET <ask>?domain=<name>`; a 2xx answer allows it; any other status, a
/// redirect, a connection failure, or no whole answer (status and body, at most 64 KiB
/// read) within `ask_timeout` refuses it. A refused connection is tried again until
/// `ask_timeout`; the refusal then says why the last attempt failed. A yes is remembered for `ask_cache`; a no goes to
/// the negative cache (``OnDemandLimits``). HTTPS endpoints are verified against the
/// system's roots.
final class OnDemandAsk: Sendable {
    private let client: HTTPClient
    private let allowed = Mutex<[String: Date]>([:])

    /// Connections kept to one ask endpoint at most (AsyncHTTPClient's default is 8: a
    /// few slow answers would hold them all).
    static let connectionsPerEndpoint = 64

    init(client: HTTPClient) {
        self.client = client
    }

    /// The HTTP client for ask endpoints: no redirects followed (only a 2xx allows), up to
    /// ``connectionsPerEndpoint`` connections per endpoint.
    static func makeClient(group: any EventLoopGroup) -> HTTPClient {
        var configuration = HTTPClient.Configuration(redirectConfiguration: .disallow)
        configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = connectionsPerEndpoint
        return HTTPClient(eventLoopGroup: group, configuration: configuration)
    }

    /// Why `value` cannot be an `ask` URL, or nil: an absolute http or https URL with a host
    /// name or address (at most 253 characters) and a port 1–65535 if any; no user or
    /// password, no fragment, no spaces or control characters.
    static func problem(with value: String) -> String? {
        let shown = QuotedValue.quote(value, limit: 255)
        if value.unicodeScalars.contains(where: { $0.value <= 0x20 || $0.value == 0x7F }) {
            return "\(shown) holds a space or a control character"
        }
        guard let components = URLComponents(string: value), let scheme = components.scheme?.lowercased(),
              scheme == "http" || scheme == "https" else {
            return "\(shown) is not an http or https URL"
        }
        guard let host = components.host, !host.isEmpty else { return "\(shown) has no host" }
        if host.utf8.count > 253 { return "the host is longer than 253 characters" }
        if let port = components.port, !(1...65_535).contains(port) { return "the port must be 1 to 65535, not \(port)" }
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

    private struct Answer: Error {
        let reason: String?
    }

    /// Whether the endpoint allows `name` (a remembered yes answers at once).
    /// - Returns: nil when allowed, else the reason (for the log).
    func ask(_ ask: String, name: String, timeout: TimeInterval, remember: TimeInterval, now: Date = Date()) async -> String? {
        let key = ask + "\u{0}" + name
        if let until = allowed.withLock({ $0[key] }), until > now { return nil }
        // Checked again here: an entry may come from a fleet's database, not this node's check.
        if Self.problem(with: ask) != nil { return "the ask URL is not usable" }
        guard let url = Self.url(ask, name: name) else { return "the ask URL cannot take the name" }
        let client = self.client
        // The whole exchange — connection, status and body — within the timeout: a body that
        // trickles forever must not hold a connection or the name.
        let reason: String? = await withTaskGroup(of: Answer?.self) { group in
            group.addTask {
                do {
                    var request = HTTPClientRequest(url: url)
                    request.method = .GET
                    let response = try await client.execute(request, timeout: .milliseconds(Int64(timeout * 1_000)))
                    _ = try await response.body.collect(upTo: 64 * 1_024)
                    guard (200..<300).contains(Int(response.status.code)) else {
                        return Answer(reason: "the ask endpoint answered \(response.status.code)")
                    }
                    return Answer(reason: nil)
                } catch let error as HTTPClientError where [.deadlineExceeded, .readTimeout, .cancelled, .getConnectionFromPoolTimeout, .tlsHandshakeTimeout].contains(error) {
                    return Answer(reason: "the ask endpoint did not answer within \(Int(timeout * 1_000)) ms")
                } catch let error as HTTPClientError where error == .remoteConnectionClosed {
                    return Answer(reason: "the ask endpoint closed the connection without a whole answer")
                } catch is NIOTooManyBytesError {
                    return Answer(reason: "the ask endpoint's answer is longer than 64 KiB")
                } catch is CancellationError {
                    return Answer(reason: "the ask endpoint did not answer within \(Int(timeout * 1_000)) ms")
                } catch let error as HTTPClientError where error == .connectTimeout {
                    return Answer(reason: "the ask endpoint could not be reached within \(Int(timeout * 1_000)) ms")
                } catch let error as NIOSSLError {
                    guard case .handshakeFailed = error else {
                        return Answer(reason: "the ask endpoint closed the connection without a whole answer")
                    }
                    // Most often its certificate: it must verify against the system's roots.
                    return Answer(reason: "the TLS handshake with the ask endpoint failed (is its certificate trusted by the system's roots?)")
                } catch is BoringSSLError {
                    return Answer(reason: "the TLS handshake with the ask endpoint failed (is its certificate trusted by the system's roots?)")
                } catch let error as HTTPClientError {
                    return Answer(reason: "the ask endpoint did not answer in HTTP (\(SocketFailure.describe(error)))")
                } catch {
                    // A refused connection is tried again until the timeout; this is the last failure.
                    return Answer(reason: "the ask endpoint could not be reached: \(SocketFailure.describe(error))")
                }
            }
            group.addTask {
                // The deadline (a little past the client's own): ends a body that never does.
                try? await Task.sleep(for: .milliseconds(Int64(timeout * 1_000) + 100))
                return nil
            }
            let first = await group.next()!
            group.cancelAll()
            if let first { return first.reason }
            // Past the deadline the exchange is cancelled; how it ended says why (a connection
            // that kept failing has failed by now with its reason, even on a loaded machine).
            let exchange = await group.next()!
            return exchange?.reason ?? "the ask endpoint did not answer within \(Int(timeout * 1_000)) ms"
        }
        if reason == nil, remember > 0 {
            allowed.withLock { allowed in
                if allowed.count > OnDemandLimits.rememberedLimit { allowed = allowed.filter { $0.value > now } }
                allowed[key] = now.addingTimeInterval(remember)
            }
        }
        return reason
    }
}
