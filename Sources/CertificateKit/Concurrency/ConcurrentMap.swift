import Dispatch

/// `map` on every core, in chunks, keeping the order of `items`.
///
/// `transform` runs once per item, on Dispatch's worker threads (up to one per core), chunks
/// of `chunk` items at a time; it returns when every item has been transformed. A list of
/// `chunk` items or fewer is mapped on the calling thread.
public enum ConcurrentMap {
    public static func map<Item: Sendable, Output: Sendable>(
        _ items: [Item], chunk: Int = 64, _ transform: @Sendable (Item) -> Output
    ) -> [Output] {
        guard items.count > chunk else { return items.map(transform) }
        let slots = ResultSlots<Output>(count: items.count)
        let chunks = (items.count + chunk - 1) / chunk
        DispatchQueue.concurrentPerform(iterations: chunks) { chunkIndex in
            for index in (chunkIndex * chunk)..<min(items.count, (chunkIndex + 1) * chunk) {
                slots.store(index, transform(items[index]))
            }
        }
        return slots.results
    }
}

/// One slot per item, each written by exactly one worker before `concurrentPerform`
/// returns; read only after it has.
private final class ResultSlots<Output>: @unchecked Sendable {
    /// Allocated once: workers write disjoint slots, with no array access to race on.
    private let slots: UnsafeMutableBufferPointer<Output?>

    init(count: Int) {
        slots = .allocate(capacity: count)
        slots.initialize(repeating: nil)
    }

    deinit {
        _ = slots.deinitialize()
        slots.deallocate()
    }

    func store(_ index: Int, _ result: Output) {
        slots[index] = result
    }

    var results: [Output] { slots.map { $0! } }
}
