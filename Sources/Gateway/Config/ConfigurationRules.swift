import CertificateKit

/// Checks of a decoded configuration that the types alone cannot express.
enum ConfigurationRules {
    struct Problem {
        let path: [String]
        let reason: String
    }

    static func problems(in configuration: GatewayConfiguration) -> [Problem] {
        var problems: [Problem] = []
        var listenerNames: [String: Int] = [:]
        var addresses: [HostAndPort: Int] = [:]
        for (index, listener) in configuration.listeners.enumerated() {
            let path = ["listeners", "\(index)"]
            // A listener without a name is named after its address; a clash there is the address's.
            if let first = listenerNames[listener.name], listener.name != listener.listen.description {
                problems.append(Problem(path: path + ["name"], reason: "'\(listener.name)' is also the name of listener \(first)"))
            }
            listenerNames[listener.name] = listenerNames[listener.name] ?? index
            if let first = addresses[listener.listen] {
                problems.append(Problem(path: path + ["listen"], reason: "\(listener.listen) is also the address of listener \(first)"))
            }
            addresses[listener.listen] = addresses[listener.listen] ?? index
            if listener.minTLSVersion > listener.maxTLSVersion {
                problems.append(Problem(path: path + ["min_tls_version"], reason: "\(listener.minTLSVersion.rawValue) is above max_tls_version \(listener.maxTLSVersion.rawValue)"))
            }
            for (offset, protocolName) in listener.alpn.enumerated() where protocolName.isEmpty || protocolName.utf8.count > 255 {
                problems.append(Problem(path: path + ["alpn", "\(offset)"], reason: "an ALPN protocol name is 1 to 255 bytes"))
            }
            if listener.handshakeTimeout.duration <= .zero {
                problems.append(Problem(path: path + ["handshake_timeout"], reason: "must be more than zero"))
            }
        }

        var claimedBy: [String: Int] = [:]
        for (index, route) in configuration.routes.enumerated() {
            let path = ["routes", "\(index)"]
            if route.serverNames.isEmpty {
                problems.append(Problem(path: path + ["server_names"], reason: "a route needs at least one name ('*' for every name)"))
            }
            for (offset, raw) in route.serverNames.enumerated() {
                switch NamePattern.parse(raw) {
                case .failure(let failure):
                    problems.append(Problem(path: path + ["server_names", "\(offset)"], reason: failure.description))
                case .success(.ip):
                    problems.append(Problem(path: path + ["server_names", "\(offset)"], reason: "'\(raw)' is an IP address; routes match server names ('*' takes clients without SNI)"))
                case .success(let pattern):
                    let key = pattern.description
                    if let first = claimedBy[key] {
                        problems.append(Problem(path: path + ["server_names", "\(offset)"], reason: "'\(key)' is also taken by route \(first)"))
                    } else {
                        claimedBy[key] = index
                    }
                }
            }
            switch route.action {
            case .respond(let response) where !(100...599).contains(response.status):
                problems.append(Problem(path: path + ["respond", "status"], reason: "\(response.status) is not an HTTP status (100-599)"))
            case .upstream(_, _, let timeout) where timeout.duration <= .zero:
                problems.append(Problem(path: path + ["connect_timeout"], reason: "must be more than zero"))
            default:
                break
            }
        }
        let issuing = configuration.issuing
        if issuing.cacheSize < 1 { problems.append(Problem(path: ["issuing", "cache_size"], reason: "must be at least 1")) }
        if issuing.maxConcurrent < 1 { problems.append(Problem(path: ["issuing", "max_concurrent"], reason: "must be at least 1")) }
        if issuing.ratePerSecond < 0 { problems.append(Problem(path: ["issuing", "rate_per_second"], reason: "must not be negative")) }
        if issuing.burst < 1 { problems.append(Problem(path: ["issuing", "burst"], reason: "must be at least 1")) }
        if configuration.validity.interval.duration < .seconds(1) {
            problems.append(Problem(path: ["validity", "interval"], reason: "must be at least 1s"))
        }
        if configuration.shutdownTimeout.duration < .zero {
            problems.append(Problem(path: ["shutdown_timeout"], reason: "must not be negative"))
        }
        return problems
    }
}
