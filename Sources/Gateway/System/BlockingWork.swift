import Dispatch

/// Runs blocking work — validating a set, committing it to SQLite — on a dispatch
/// thread instead of one of the few threads of Swift's cooperative pool.
func runBlocking<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        DispatchQueue.global().async { continuation.resume(returning: work()) }
    }
}
