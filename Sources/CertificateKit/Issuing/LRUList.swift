/// A least-recently-used map: O(1) get (which refreshes), set (which evicts the oldest past
/// `capacity`) and remove. Not thread-safe: its owner locks.
public struct LRUList<Key: Hashable, Value> {
    private struct Node {
        var key: Key
        var value: Value
        var lastUsed: Double
        var newer: Int?
        var older: Int?
    }

    private var nodes: [Node?] = []
    private var free: [Int] = []
    private var index: [Key: Int] = [:]
    private var newest: Int?
    private var oldest: Int?
    public private(set) var capacity: Int

    public init(capacity: Int) {
        precondition(capacity > 0)
        self.capacity = capacity
    }

    public var count: Int { index.count }

    /// The value, without marking it used.
    public func peek(_ key: Key) -> Value? {
        index[key].flatMap { nodes[$0]?.value }
    }

    /// The value, marked as used at `time`.
    public mutating func get(_ key: Key, time: Double) -> Value? {
        guard let slot = index[key] else { return nil }
        unlink(slot)
        nodes[slot]!.lastUsed = time
        linkNewest(slot)
        return nodes[slot]!.value
    }

    /// Stores `value`; returns what was evicted to stay within capacity.
    @discardableResult
    public mutating func set(_ key: Key, _ value: Value, time: Double) -> (key: Key, value: Value)? {
        if let slot = index[key] {
            unlink(slot)
            nodes[slot]!.value = value
            nodes[slot]!.lastUsed = time
            linkNewest(slot)
            return nil
        }
        var evicted: (Key, Value)?
        if index.count >= capacity, let victim = oldest, let node = nodes[victim] {
            evicted = (node.key, node.value)
            remove(node.key)
        }
        let node = Node(key: key, value: value, lastUsed: time)
        let slot: Int
        if let reused = free.popLast() {
            slot = reused
            nodes[slot] = node
        } else {
            slot = nodes.count
            nodes.append(node)
        }
        index[key] = slot
        linkNewest(slot)
        return evicted
    }

    /// A new capacity; when smaller than the count, the least recently used go. Returns
    /// their keys, oldest first.
    public mutating func resize(to capacity: Int) -> [Key] {
        precondition(capacity > 0)
        self.capacity = capacity
        var evicted: [Key] = []
        while index.count > capacity, let victim = oldest, let node = nodes[victim] {
            evicted.append(node.key)
            remove(node.key)
        }
        return evicted
    }

    public mutating func remove(_ key: Key) {
        guard let slot = index.removeValue(forKey: key) else { return }
        unlink(slot)
        nodes[slot] = nil
        free.append(slot)
    }

    /// Removes every entry for which `shouldRemove(key, value, lastUsed)` holds; returns their keys.
    @discardableResult
    public mutating func removeAll(where shouldRemove: (Key, Value, Double) -> Bool) -> [Key] {
        let doomed = index.compactMap { key, slot in nodes[slot].flatMap { shouldRemove(key, $0.value, $0.lastUsed) ? key : nil } }
        for key in doomed { remove(key) }
        return doomed
    }

    private mutating func unlink(_ slot: Int) {
        let node = nodes[slot]!
        if let newer = node.newer { nodes[newer]!.older = node.older } else { newest = node.older }
        if let older = node.older { nodes[older]!.newer = node.newer } else { oldest = node.newer }
        nodes[slot]!.newer = nil
        nodes[slot]!.older = nil
    }

    private mutating func linkNewest(_ slot: Int) {
        nodes[slot]!.older = newest
        nodes[slot]!.newer = nil
        if let newest { nodes[newest]!.newer = slot }
        newest = slot
        if oldest == nil { oldest = slot }
    }
}
