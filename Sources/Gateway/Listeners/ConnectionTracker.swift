import NIOCore
import Synchronization

/// Every open client connection, so a shutdown can drain them and, past its timeout,
/// close what is left.
final class ConnectionTracker: Sendable {
    private let channels = Mutex<[ObjectIdentifier: any Channel]>([:])

    func register(_ channel: any Channel) {
        let id = ObjectIdentifier(channel)
        channels.withLock { $0[id] = channel }
        channel.closeFuture.whenComplete { [self] _ in
            _ = channels.withLock { $0.removeValue(forKey: id) }
        }
    }

    var count: Int { channels.withLock { $0.count } }

    /// Tells every connection the gateway is draining (idle HTTP connections close).
    func drain() {
        for channel in channels.withLock({ Array($0.values) }) {
            channel.pipeline.fireUserInboundEventTriggered(ConnectionEvent.drain)
        }
    }

    func closeAll() {
        for channel in channels.withLock({ Array($0.values) }) {
            channel.close(promise: nil)
        }
    }
}

/// Events the gateway sends down its connections' pipelines (user inbound events).
enum ConnectionEvent {
    /// The gateway is shutting down: finish what is in flight, take nothing new.
    case drain
}
