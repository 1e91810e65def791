/// A hash table from host names (their UTF-8 octets) to entries, built for the handshake
/// path: a lookup hashes and compares raw octets, so probing with a slice of a name (the
/// parent a wildcard is keyed by) needs no `String` or `Substring`, no allocation and no
/// reference counting until the entry is found.
///
/// Open addressing with linear probing over plain-data slots; keys live in one octet
/// arena. Hashing uses the standard library's per-process seeded `Hasher`, so names
/// chosen by clients cannot be crafted to collide. A value type: a copy shares storage
/// until one side changes it (copy-on-write through its arrays).
struct NameTable: Sendable {
    private struct Slot: Sendable {
        var hash: Int = 0
        var offset: UInt32 = 0
        var length: UInt32 = 0
        /// Index into `values`; `empty` or `deleted` otherwise.
        var value: Int32 = NameTable.empty
    }

    private static let empty: Int32 = -1
    private static let deleted: Int32 = -2

    private var slots: [Slot] = Array(repeating: Slot(), count: 16)
    private var arena: [UInt8] = []
    private var values: [CertificateEntry?] = []
    private var freeValues: [Int32] = []
    private var deletedSlots = 0
    private var unusedArenaBytes = 0
    private(set) var count = 0

    /// The entry stored under `key`, if any.
    func find(_ key: UnsafeBufferPointer<UInt8>) -> CertificateEntry? {
        let slot = position(of: key, hash: Self.hash(key))
        return slot >= 0 ? values[Int(slots[slot].value)] : nil
    }

    subscript(key: String) -> CertificateEntry? {
        var text = key
        return text.withUTF8 { find($0) }
    }

    /// Stores `entry` under `key`, replacing what was there.
    mutating func set(_ key: String, _ entry: CertificateEntry) {
        var text = key
        text.withUTF8 { bytes in
            let hash = Self.hash(bytes)
            let existing = position(of: bytes, hash: hash)
            if existing >= 0 {
                values[Int(slots[existing].value)] = entry
                return
            }
            if (count + deletedSlots + 1) * 4 > slots.count * 3 { rehash(capacity: Swift.max(16, (count + 1) * 2)) }
            let valueIndex: Int32
            if let free = freeValues.popLast() {
                valueIndex = free
                values[Int(free)] = entry
            } else {
                valueIndex = Int32(values.count)
                values.append(entry)
            }
            let offset = UInt32(arena.count)
            arena.append(contentsOf: bytes)
            var index = hash & (slots.count - 1)
            while slots[index].value >= 0 { index = (index + 1) & (slots.count - 1) }
            if slots[index].value == Self.deleted { deletedSlots -= 1 }
            slots[index] = Slot(hash: hash, offset: offset, length: UInt32(bytes.count), value: valueIndex)
            count += 1
        }
    }

    /// Removes what is stored under `key`.
    mutating func remove(_ key: String) {
        var text = key
        text.withUTF8 { bytes in
            let slot = position(of: bytes, hash: Self.hash(bytes))
            guard slot >= 0 else { return }
            let valueIndex = slots[slot].value
            values[Int(valueIndex)] = nil
            freeValues.append(valueIndex)
            unusedArenaBytes += Int(slots[slot].length)
            slots[slot].value = Self.deleted
            deletedSlots += 1
            count -= 1
        }
        if unusedArenaBytes > 4096 && unusedArenaBytes > arena.count / 2 { rehash(capacity: Swift.max(16, count * 2)) }
    }

    /// The slot holding `key`, or -1.
    private func position(of key: UnsafeBufferPointer<UInt8>, hash: Int) -> Int {
        slots.withUnsafeBufferPointer { slots in
            arena.withUnsafeBufferPointer { arena in
                let mask = slots.count - 1
                var index = hash & mask
                while true {
                    let slot = slots[index]
                    if slot.value == Self.empty { return -1 }
                    if slot.value >= 0, slot.hash == hash, Int(slot.length) == key.count,
                       key.count == 0 || memcmpEqual(arena.baseAddress! + Int(slot.offset), key.baseAddress!, key.count) {
                        return index
                    }
                    index = (index + 1) & mask
                }
            }
        }
    }

    /// Rebuilds the slots (dropping deleted ones) and the arena (dropping unused octets).
    private mutating func rehash(capacity: Int) {
        var size = 16
        while size < capacity * 4 / 3 + 1 { size *= 2 }
        var newSlots = Array(repeating: Slot(), count: size)
        var newArena: [UInt8] = []
        newArena.reserveCapacity(arena.count - unusedArenaBytes)
        for slot in slots where slot.value >= 0 {
            let offset = UInt32(newArena.count)
            newArena.append(contentsOf: arena[Int(slot.offset)..<Int(slot.offset + slot.length)])
            var index = slot.hash & (size - 1)
            while newSlots[index].value != Self.empty { index = (index + 1) & (size - 1) }
            newSlots[index] = Slot(hash: slot.hash, offset: offset, length: slot.length, value: slot.value)
        }
        slots = newSlots
        arena = newArena
        deletedSlots = 0
        unusedArenaBytes = 0
    }

    private static func hash(_ key: UnsafeBufferPointer<UInt8>) -> Int {
        var hasher = Hasher()
        hasher.combine(bytes: UnsafeRawBufferPointer(key))
        return hasher.finalize()
    }
}

@inline(__always)
private func memcmpEqual(_ lhs: UnsafePointer<UInt8>, _ rhs: UnsafePointer<UInt8>, _ count: Int) -> Bool {
    var index = 0
    while index < count {
        if lhs[index] != rhs[index] { return false }
        index += 1
    }
    return true
}
