import ControlProtocol
import Foundation
import Synchronization

/// Fans control-plane events out to every `WatchEvents` stream. Each watcher has its own
/// bounded buffer; a watcher that falls behind loses its oldest events, never blocking an
/// update.
final class EventHub: Sendable {
    private let watchers = Mutex<[UUID: AsyncStream<Certgate_Control_V1_Event>.Continuation]>([:])
    static let bufferPerWatcher = 1_024

    func subscribe() -> AsyncStream<Certgate_Control_V1_Event> {
        let id = UUID()
        let (stream, continuation) = AsyncStream.makeStream(of: Certgate_Control_V1_Event.self, bufferingPolicy: .bufferingNewest(Self.bufferPerWatcher))
        continuation.onTermination = { [weak self] _ in
            _ = self?.watchers.withLock { $0.removeValue(forKey: id) }
        }
        watchers.withLock { $0[id] = continuation }
        return stream
    }

    func publish(_ event: Certgate_Control_V1_Event) {
        for continuation in watchers.withLock({ Array($0.values) }) {
            continuation.yield(event)
        }
    }
}
