import Dispatch

/// Runs blocking work — validating a set, committing it to SQLite — on `queue` instead of
/// one of the few threads of Swift's cooperative pool. Updates use one serial queue, so
/// however many clients send them at once they wait in line there, not as blocked threads.
func runBlocking<T: Sendable>(on queue: DispatchQueue, _ work: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        queue.async { continuation.resume(returning: work()) }
    }
}

/// A blocking call on `store` made on `queue` (see ``runBlocking(on:_:)``); nil without a store.
func runBlocking<Store: Sendable, T: Sendable>(
    on queue: DispatchQueue, store: Store?, _ body: @escaping @Sendable (Store) throws -> T?
) async throws -> T? {
    guard let store else { return nil }
    let result: Result<T?, any Error> = await runBlocking(on: queue) { Result { try body(store) } }
    return try result.get()
}
