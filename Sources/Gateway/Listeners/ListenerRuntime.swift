import NIOCore
import NIOSSL
import Synchronization

/// One listener while it runs: its settings and TLS context (none for `protocol: http`;
/// both replaced by a reload;
/// new connections take the new ones) and its bound channel.
final class ListenerRuntime: Sendable {
    let name: String
    let counters: GatewayMetrics.ListenerCounters
    private let state: Mutex<(configuration: ListenerConfiguration, context: NIOSSLContext?)>
    private let boundChannel = Mutex<(any Channel)?>(nil)

    init(configuration: ListenerConfiguration, context: NIOSSLContext?, counters: GatewayMetrics.ListenerCounters) {
        self.name = configuration.name
        self.counters = counters
        self.state = Mutex((configuration, context))
    }

    var configuration: ListenerConfiguration { state.withLock { $0.configuration } }
    var current: (configuration: ListenerConfiguration, context: NIOSSLContext?) { state.withLock { $0 } }

    func replace(configuration: ListenerConfiguration, context: NIOSSLContext?) {
        state.withLock { $0 = (configuration, context) }
    }

    var channel: (any Channel)? {
        get { boundChannel.withLock { $0 } }
        set { boundChannel.withLock { $0 = newValue } }
    }
}
