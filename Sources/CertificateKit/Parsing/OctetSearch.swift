/// Substring search over UTF-8 octets. Foundation's `contains` goes through
/// CFString and is several times slower; a rebuild of a large set searches every value.
enum OctetSearch {
    static func contains(_ needle: String, in haystack: String) -> Bool {
        let pattern = Array(needle.utf8)
        func search(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
            guard let first = pattern.first, bytes.count >= pattern.count else { return pattern.isEmpty }
            var index = 0
            let last = bytes.count - pattern.count
            while index <= last {
                if bytes[index] == first {
                    var matched = 1
                    while matched < pattern.count && bytes[index + matched] == pattern[matched] { matched += 1 }
                    if matched == pattern.count { return true }
                }
                index += 1
            }
            return false
        }
        if let found = haystack.utf8.withContiguousStorageIfAvailable(search) { return found }
        return Array(haystack.utf8).withUnsafeBufferPointer(search)
    }
}
