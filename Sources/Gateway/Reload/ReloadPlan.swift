import Logging

/// What a reload does with each section of the configuration file, computed from the
/// running configuration and the new one before anything changes: what is replaced live
/// and what waits for a restart (the running value stays, and the reload says so).
///
/// Every top-level key of the file is a ``Section``, and ``init(running:next:)`` handles
/// each in an exhaustive `switch`: a new key cannot be added without deciding what a
/// reload does with it (a test holds ``Section`` to the file's keys).
struct ReloadPlan: Sendable, Equatable {
    /// The top-level keys of `certgate.yaml`.
    enum Section: String, Sendable, CaseIterable {
        case listeners, routes, certificates, issuing, metrics, validity, control, acme
        case stateDirectory = "state_dir"
        case sharedState = "shared_state"
        case onDemand = "on_demand"
        case logLevel = "log_level"
        case shutdownTimeout = "shutdown_timeout"
    }

    /// A change put in force by the reload, right after its certificate set commits.
    enum LiveChange: Sendable, Equatable {
        /// The route table (new connections).
        case routes
        /// A listener's TLS settings or handshake timeout (new connections).
        case listener(name: String)
        case logLevel(from: Logger.Level, to: Logger.Level)
        /// Read when the gateway stops.
        case shutdownTimeout
        /// The signing limits of issuer entries.
        case issuing
        /// The validity monitor's period (the timer is rescheduled).
        case validityInterval
        /// The validity notifiers (for changes from the committed set on).
        case validityNotifiers
        /// The ACME CAs (orders from now on use the new settings).
        case acmeIssuers
        /// The bounds of on-demand ACME (handshakes and orders from now on).
        case onDemand
    }

    /// A change that needs a restart: which section, and what changed, in words.
    struct RestartNeeded: Sendable, Equatable, CustomStringConvertible {
        var section: Section
        var change: String
        var description: String { change }
    }

    /// In the order they are applied.
    private(set) var live: [LiveChange] = []
    private(set) var restartNeeded: [RestartNeeded] = []

    /// `certificates:` is not listed: it always goes through the update transaction, which
    /// re-reads the files and keeps the entries that did not change.
    init(running: GatewayConfiguration, next: GatewayConfiguration) {
        for section in Section.allCases {
            switch section {
            case .certificates:
                break
            case .listeners:
                planListeners(running: running.listeners, next: next.listeners)
            case .routes:
                if next.routes != running.routes { live.append(.routes) }
            case .onDemand:
                if next.onDemand != running.onDemand { live.append(.onDemand) }
            case .logLevel:
                if next.logLevel != running.logLevel { live.append(.logLevel(from: running.logLevel, to: next.logLevel)) }
            case .shutdownTimeout:
                if next.shutdownTimeout.duration != running.shutdownTimeout.duration { live.append(.shutdownTimeout) }
            case .issuing:
                if next.issuing != running.issuing { live.append(.issuing) }
            case .acme:
                if next.acme != running.acme { live.append(.acmeIssuers) }
            case .validity:
                if next.validity.interval.duration != running.validity.interval.duration { live.append(.validityInterval) }
                if next.validity.notify != running.validity.notify { live.append(.validityNotifiers) }
            case .stateDirectory:
                if next.resolvedStateDirectory != running.resolvedStateDirectory {
                    restartNeeded.append(.init(section: section, change: "state_dir moves from \(running.resolvedStateDirectory) to \(next.resolvedStateDirectory)"))
                }
            case .sharedState:
                if next.sharedState != running.sharedState {
                    restartNeeded.append(.init(section: section, change: Self.describeSharedStateChange(from: running.sharedState, to: next.sharedState)))
                }
            case .control:
                if next.control != running.control {
                    restartNeeded.append(.init(section: section, change: "the control socket settings changed"))
                }
            case .metrics:
                if next.metrics?.listen != running.metrics?.listen {
                    let from = running.metrics.map { "\($0.listen)" } ?? "none"
                    let to = next.metrics.map { "\($0.listen)" } ?? "none"
                    restartNeeded.append(.init(section: section, change: "metrics.listen changes from \(from) to \(to)"))
                }
            }
        }
    }

    /// By name: a listener's address or protocol, or a listener added or removed, needs a
    /// restart; a TLS listener's other settings are replaced live.
    private mutating func planListeners(running: [ListenerConfiguration], next: [ListenerConfiguration]) {
        for current in running {
            guard let updated = next.first(where: { $0.name == current.name }) else {
                restartNeeded.append(.init(section: .listeners, change: "listener \(current.name) was removed"))
                continue
            }
            if updated.listen != current.listen {
                restartNeeded.append(.init(section: .listeners, change: "listener \(current.name) moves from \(current.listen) to \(updated.listen)"))
            }
            if updated.protocol != current.protocol {
                restartNeeded.append(.init(section: .listeners, change: "listener \(current.name) changes protocol from \(current.protocol.rawValue) to \(updated.protocol.rawValue)"))
            }
            var comparable = updated
            comparable.listen = current.listen
            comparable.protocol = current.protocol
            if comparable != current, current.protocol == .tls { live.append(.listener(name: current.name)) }
        }
        for added in next where !running.contains(where: { $0.name == added.name }) {
            restartNeeded.append(.init(section: .listeners, change: "listener \(added.name) (\(added.listen)) is new"))
        }
    }

    /// Which `shared_state` settings a reload would change (never a password: none is in it).
    private static func describeSharedStateChange(from old: SharedStateConfiguration?, to new: SharedStateConfiguration?) -> String {
        guard let old else { return "shared_state is added (the node would join the fleet at \(new?.location.description ?? "-"))" }
        guard let new else { return "shared_state is removed (the node would leave the fleet at \(old.location.description))" }
        var changes: [String] = []
        if old.location != new.location { changes.append("postgres from \(old.location) to \(new.location)") }
        if old.node != new.node { changes.append("node from \(old.node) to \(new.node)") }
        if old.passwordFile != new.passwordFile { changes.append("password_file") }
        if old.pollInterval.duration != new.pollInterval.duration { changes.append("poll_interval from \(old.pollInterval) to \(new.pollInterval)") }
        if old.connectTimeout.duration != new.connectTimeout.duration { changes.append("connect_timeout from \(old.connectTimeout) to \(new.connectTimeout)") }
        return "shared_state changes: " + changes.joined(separator: ", ")
    }
}
