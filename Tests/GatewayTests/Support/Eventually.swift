import Synchronization

/// Waits for `condition` to hold, checking every 20 ms, for at most `timeout`: the way a
/// test waits for an event it cannot be told of directly, never a fixed sleep.
/// - Returns: whether the condition held before the deadline.
@discardableResult
func eventually(timeout: Duration = .seconds(10), _ condition: () async throws -> Bool) async throws -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try await Task.sleep(for: .milliseconds(20))
    }
    return try await condition()
}

/// Values gathered by one task and read by another (a watcher's events, say).
final class Collected<Element: Sendable>: Sendable {
    private let items = Mutex<[Element]>([])

    func append(_ item: Element) { items.withLock { $0.append(item) } }
    var all: [Element] { items.withLock { $0 } }
}
