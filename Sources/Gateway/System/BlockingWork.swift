import Dispatch

/// Runs blocking work — validating a set, committing it to SQLite — on `queue` instead of
/// one of the few threads of Swift's cooperative pool. Updates use one serial queue, so
/// however many clients send them at once they wait in line there, not as blocked threads.
func runBlocking<T: Sendable>(on queue: DispatchQueue, _ work: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        queue.async { continuation.resume(returning: work()) }
    }
}
