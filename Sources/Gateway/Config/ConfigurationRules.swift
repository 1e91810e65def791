import Foundation
import CertificateKit

/// Checks of a decoded configuration that the types alone cannot express.
enum ConfigurationRules {
    struct Problem {
        let path: [String]
        let reason: String
    }

    /// Why the program at absolute `path` cannot be run (a hook or notifier command, run
    /// without a shell), or nil when it can: it must exist, be a regular file, and be
    /// executable by this process.
    static func unrunnable(_ path: String) -> String? {
        guard path.hasPrefix("/") else { return nil }  // reported by the decoder
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            return "\(QuotedValue.quote(path, limit: 255)) does not exist"
        }
        if isDirectory.boolValue { return "\(QuotedValue.quote(path, limit: 255)) is a directory, not a program" }
        guard FileManager.default.isExecutableFile(atPath: path) else {
            return "\(QuotedValue.quote(path, limit: 255)) is not executable"
        }
        return nil
    }

    static func problems(in configuration: GatewayConfiguration, acmeIssuersElsewhere: Bool = false) -> [Problem] {
        var problems: [Problem] = []
        if let sharedState = configuration.sharedState {
            problems += sharedState.problems(baseDirectory: configuration.baseDirectory)
        }
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
            check(listener.handshakeTimeout, in: Ranges.handshakeTimeout, path + ["handshake_timeout"], &problems)
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
            case .respond(let response) where !(200...599).contains(response.status):
                problems.append(Problem(path: path + ["respond", "status"], reason: "\(response.status) is not the status of a final HTTP response (200-599)"))
            case .respond(let response) where RespondHandler.hasNoContent(status: response.status) && !response.body.isEmpty:
                problems.append(Problem(path: path + ["respond", "body"], reason: "a \(response.status) response has no content (RFC 9110 §15.3.5, §15.4.5): remove the body"))
            case .upstream(let address, _, let timeout):
                if address.port == 0 {
                    problems.append(Problem(path: path + ["upstream"], reason: "the port must be 1 to 65535, not 0"))
                }
                check(timeout, in: Ranges.connectTimeout, path + ["connect_timeout"], &problems)
            case .respond(let response):
                for (name, value) in response.headers.sorted(by: { $0.key < $1.key }) {
                    let place = path + ["respond", "headers", QuotedValue.shown(name)]
                    if name.isEmpty || name.count > 64 || !name.unicodeScalars.allSatisfy(isTokenCharacter) {
                        problems.append(Problem(path: place, reason: "a header name is one or more token characters (RFC 9110 §5.1), at most 64"))
                    }
                    if value.unicodeScalars.contains(where: { $0 == "\r" || $0 == "\n" || $0 == "\0" }) {
                        problems.append(Problem(path: place, reason: "a header value may not hold CR, LF or NUL (RFC 9110 §5.5)"))
                    }
                }
            }
        }
        let issuing = configuration.issuing
        check(issuing.cacheSize, in: Ranges.cacheSize, ["issuing", "cache_size"], &problems)
        check(issuing.maxConcurrent, in: Ranges.maxConcurrent, ["issuing", "max_concurrent"], &problems)
        check(issuing.maxQueued, in: Ranges.maxQueued, ["issuing", "max_queued"], &problems)
        if !(issuing.ratePerSecond.isFinite && Ranges.ratePerSecond.contains(issuing.ratePerSecond)) {
            problems.append(Problem(path: ["issuing", "rate_per_second"], reason: "must be 0 to 1000000, not \(issuing.ratePerSecond)"))
        }
        check(issuing.burst, in: Ranges.burst, ["issuing", "burst"], &problems)
        check(issuing.idleTimeout, in: Ranges.idleTimeout, ["issuing", "idle_timeout"], &problems)
        let onDemand = configuration.onDemand
        check(onDemand.handshakeWait, in: Ranges.handshakeWait, ["on_demand", "handshake_wait"], &problems)
        check(onDemand.maxConcurrent, in: Ranges.maxConcurrentOrders, ["on_demand", "max_concurrent"], &problems)
        check(onDemand.ordersPerMinute, in: Ranges.ordersPerMinute, ["on_demand", "orders_per_minute"], &problems)
        check(onDemand.burst, in: Ranges.burst, ["on_demand", "burst"], &problems)
        check(onDemand.perClientPerHour, in: Ranges.perClientPerHour, ["on_demand", "per_client_per_hour"], &problems)
        check(onDemand.maxCertificates, in: Ranges.cacheSize, ["on_demand", "max_certificates"], &problems)
        check(onDemand.idleTimeout, in: Ranges.onDemandIdleTimeout, ["on_demand", "idle_timeout"], &problems)
        check(onDemand.askTimeout, in: Ranges.askTimeout, ["on_demand", "ask_timeout"], &problems)
        check(onDemand.askCache, in: Ranges.askCache, ["on_demand", "ask_cache"], &problems)
        check(onDemand.failureBackoff, in: Ranges.failureBackoff, ["on_demand", "failure_backoff"], &problems)
        check(configuration.validity.interval, in: Ranges.validityInterval, ["validity", "interval"], &problems)
        for (index, notifier) in configuration.validity.notify.enumerated() {
            let timeout: ConfigDuration
            switch notifier {
            case .webhook(_, let value, _), .command(_, let value): timeout = value
            }
            check(timeout, in: Ranges.notifyTimeout, ["validity", "notify", "\(index)", "timeout"], &problems)
            if case .command(let arguments, _) = notifier, let program = arguments.first, let reason = Self.unrunnable(program) {
                problems.append(Problem(path: ["validity", "notify", "\(index)", "command"], reason: reason))
            }
        }
        check(configuration.shutdownTimeout, in: Ranges.shutdownTimeout, ["shutdown_timeout"], &problems)
        if let control = configuration.control {
            check(control.maxMessageBytes, in: Ranges.maxMessageBytes, ["control", "max_message_bytes"], &problems)
        }
        return problems + ACMERules.problems(in: configuration, issuersElsewhere: acmeIssuersElsewhere)
    }

    /// `tchar` of RFC 9110 §5.6.2.
    private static func isTokenCharacter(_ scalar: Unicode.Scalar) -> Bool {
        ("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar) || ("0"..."9").contains(scalar)
            || "!#$%&'*+-.^_`|~".unicodeScalars.contains(scalar)
    }

    /// The range of every number in the file (README's configuration reference states them).
    /// Each is well inside what its consumer can hold: durations are at most 365 days
    /// before NIO turns them into nanoseconds (`Int64`), counts fit the cache's `Int`s.
    enum Ranges {
        static let handshakeTimeout = Duration.milliseconds(10)...Duration.seconds(600)
        static let connectTimeout = Duration.milliseconds(10)...Duration.seconds(600)
        static let notifyTimeout = Duration.milliseconds(10)...Duration.seconds(600)
        static let shutdownTimeout = Duration.zero...Duration.seconds(3_600)
        static let validityInterval = Duration.seconds(1)...Duration.seconds(30 * 86_400)
        static let idleTimeout = Duration.seconds(1)...Duration.seconds(365 * 86_400)
        static let cacheSize = 1...10_000_000
        static let maxConcurrent = 1...1_024
        static let maxQueued = 0...1_000_000
        static let ratePerSecond = 0.0...1_000_000.0
        static let burst = 1...1_000_000
        static let maxMessageBytes = 1_024...(1 << 30)
        static let renewBefore = Duration.seconds(3_600)...Duration.seconds(365 * 86_400)
        static let handshakeWait = Duration.milliseconds(100)...Duration.seconds(60)
        static let maxConcurrentOrders = 1...64
        static let ordersPerMinute = 0...10_000
        static let perClientPerHour = 0...1_000_000
        static let onDemandIdleTimeout = Duration.seconds(3_600)...Duration.seconds(365 * 86_400)
        static let askTimeout = Duration.milliseconds(100)...Duration.seconds(30)
        static let askCache = Duration.zero...Duration.seconds(86_400)
        static let failureBackoff = Duration.seconds(1)...Duration.seconds(86_400)
    }

    private static func check(_ value: ConfigDuration, in range: ClosedRange<Duration>, _ path: [String], _ problems: inout [Problem]) {
        guard !range.contains(value.duration) else { return }
        problems.append(Problem(path: path, reason: "must be \(text(range.lowerBound)) to \(text(range.upperBound)), not \(value)"))
    }

    private static func check(_ value: Int, in range: ClosedRange<Int>, _ path: [String], _ problems: inout [Problem]) {
        guard !range.contains(value) else { return }
        problems.append(Problem(path: path, reason: "must be \(range.lowerBound) to \(range.upperBound), not \(value)"))
    }

    /// A bound as the file would write it: `10ms`, `1s`, `10m`, `1h`, `30d`.
    static func text(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        if seconds == 0 && attoseconds > 0 { return "\(attoseconds / 1_000_000_000_000_000)ms" }
        if seconds == 0 { return "0s" }
        if seconds % 86_400 == 0 { return "\(seconds / 86_400)d" }
        if seconds % 3_600 == 0 { return "\(seconds / 3_600)h" }
        if seconds % 60 == 0 { return "\(seconds / 60)m" }
        return "\(seconds)s"
    }
}
