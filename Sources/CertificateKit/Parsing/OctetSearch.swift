/// Substring search over UTF-8 octets. Foundation's `contains` goes through
/// CFString and is several times slower; a rebuild of a large set searches every value.
enum OctetSearch {
    static func contains(_ needle: String, in haystack: String) -> Bool {
        count(needle, in: haystack, upTo: 1) > 0
    }

    /// How many times `needle` occurs in `haystack` (not overlapping), counting at most `limit`.
    static func count(_ needle: String, in haystack: String, upTo limit: Int = .max) -> Int {
        let pattern = Array(needle.utf8)
        func search(_ bytes: UnsafeBufferPointer<UInt8>) -> Int {
            guard let first = pattern.first, bytes.count >= pattern.count else { return 0 }
            var index = 0
            var found = 0
            let last = bytes.count - pattern.count
            while index <= last && found < limit {
                if bytes[index] == first {
                    var matched = 1
                    while matched < pattern.count && bytes[index + matched] == pattern[matched] { matched += 1 }
                    if matched == pattern.count {
                        found += 1
                        index += pattern.count
                        continue
                    }
                }
                index += 1
            }
            return found
        }
        if let found = haystack.utf8.withContiguousStorageIfAvailable(search) { return found }
        return Array(haystack.utf8).withUnsafeBufferPointer(search)
    }
}
