import Foundation
import Synchronization

/// Fans gateway events out to every watcher (`WatchEvents`). Each watcher has its own
/// bounded buffer; a watcher that falls behind loses its oldest events, never blocking an
/// update.
final class EventHub: Sendable {
    private let watchers = Mutex<[UUID: AsyncStream<GatewayEvent>.Continuation]>([:])
    static let bufferPerWatcher = 1_024

    func subscribe() -> AsyncStream<GatewayEvent> {
        let id = UUID()
        let (stream, continuation) = AsyncStream.makeStream(of: GatewayEvent.self, bufferingPolicy: .bufferingNewest(Self.bufferPerWatcher))
        continuation.onTermination = { [weak self] _ in
            _ = self?.watchers.withLock { $0.removeValue(forKey: id) }
        }
        watchers.withLock { $0[id] = continuation }
        return stream
    }

    func publish(_ event: GatewayEvent) {
        for continuation in watchers.withLock({ Array($0.values) }) {
            continuation.yield(event)
        }
    }
}
