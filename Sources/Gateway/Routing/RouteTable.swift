import CertificateKit

/// Which route takes a connection, by the server name its handshake served:
/// the exact name, then the one-level wildcard, then `*` (which also takes clients
/// that sent no SNI).
public struct RouteTable: Sendable {
    private var exact: [String: RouteConfiguration] = [:]
    private var wildcard: [String: RouteConfiguration] = [:]
    private var everything: RouteConfiguration?

    public init(_ routes: [RouteConfiguration]) {
        for route in routes {
            for raw in route.serverNames {
                switch NamePattern.parse(raw) {
                case .success(.exact(let name)): exact[name.text] = exact[name.text] ?? route
                case .success(.wildcard(let parent)): wildcard[parent.text] = wildcard[parent.text] ?? route
                case .success(.any): everything = everything ?? route
                case .success(.ip), .failure: break  // refused by ConfigurationRules
                }
            }
        }
    }

    public func route(for serverName: ServerName?) -> RouteConfiguration? {
        guard let serverName else { return everything }
        if let route = exact[serverName.text] { return route }
        if let parent = serverName.parent, let route = wildcard[String(parent)] { return route }
        return everything
    }
}
