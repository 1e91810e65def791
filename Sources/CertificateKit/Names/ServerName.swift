/// A DNS host name as certgate compares it: ASCII lower case, no trailing dot,
/// letters/digits/hyphens only, labels of 1–63 octets, at most 253 octets in all.
///
/// `ServerName` is what a client's SNI becomes after ``normalize(_:)``; an SNI that
/// does not normalise is treated as if the client sent none.
public struct ServerName: Hashable, Sendable, CustomStringConvertible, Comparable {
    /// The normalised text, e.g. `api.example.com`.
    public let text: String

    private init(unchecked text: String) {
        self.text = text
    }

    public var description: String { text }

    public static func < (lhs: ServerName, rhs: ServerName) -> Bool { lhs.text < rhs.text }

    /// Normalises a client-supplied (or configured) host name.
    ///
    /// Returns `nil` for anything that is not a valid DNS host name: empty, over 253
    /// octets, an empty label or one over 63 octets, a label that starts or ends with
    /// a hyphen, a last label of digits only (an IPv4 address is not a host name, and
    /// RFC 6066 keeps addresses out of SNI), or any octet outside letters, digits, `-`
    /// and `.` (so `*`, `_`, spaces, non-ASCII and control characters never reach a
    /// lookup or a certificate).
    /// One trailing dot is stripped. Upper-case letters are folded to lower case.
    public static func normalize(_ raw: String) -> ServerName? {
        let utf8 = raw.utf8
        // Fast path: a name that is already canonical is returned without copying.
        switch scan(utf8) {
        case .invalid:
            return nil
        case .canonical:
            return ServerName(unchecked: raw)
        case .needsFolding:
            break
        }
        var count = utf8.count
        if utf8.last == UInt8(ascii: ".") { count -= 1 }
        let folded = String(unsafeUninitializedCapacity: count) { buffer in
            for (index, byte) in utf8.prefix(count).enumerated() { buffer[index] = asciiLower(byte) }
            return count
        }
        return ServerName(unchecked: folded)
    }

    /// The name with its first label removed (`a.b.example.com` → `b.example.com`),
    /// the suffix a one-level wildcard `*.b.example.com` is keyed by; `nil` for a
    /// single-label name.
    public var parent: Substring? {
        guard let dot = text.utf8.firstIndex(of: UInt8(ascii: ".")) else { return nil }
        return text[text.index(after: dot)...]
    }

    private enum ScanResult { case invalid, canonical, needsFolding }

    private static func scan(_ utf8: String.UTF8View) -> ScanResult {
        if let result = utf8.withContiguousStorageIfAvailable(scan(bytes:)) { return result }
        return scan(bytes: UnsafeBufferPointer(start: nil, count: 0), fallback: Array(utf8))
    }

    private static func scan(bytes: UnsafeBufferPointer<UInt8>, fallback: [UInt8]) -> ScanResult {
        fallback.withUnsafeBufferPointer(scan(bytes:))
    }

    /// One pass over the octets: validity, and whether folding (upper case, trailing dot) is needed.
    private static func scan(bytes: UnsafeBufferPointer<UInt8>) -> ScanResult {
        var count = bytes.count
        if count == 0 { return .invalid }
        var needsFolding = false
        if bytes[count - 1] == UInt8(ascii: ".") {
            needsFolding = true
            count -= 1
            if count == 0 { return .invalid }
        }
        if count > 253 { return .invalid }
        var labelLength = 0
        var labelIsNumeric = true
        var previous = UInt8(ascii: ".")
        for index in 0..<count {
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"):
                labelLength &+= 1
            case UInt8(ascii: "a")...UInt8(ascii: "z"):
                labelLength &+= 1
                labelIsNumeric = false
            case UInt8(ascii: "A")...UInt8(ascii: "Z"):
                labelLength &+= 1
                labelIsNumeric = false
                needsFolding = true
            case UInt8(ascii: "-"):
                if labelLength == 0 { return .invalid }  // a label starts with a hyphen
                labelLength &+= 1
                labelIsNumeric = false
            case UInt8(ascii: "."):
                if labelLength == 0 || previous == UInt8(ascii: "-") { return .invalid }
                labelLength = 0
                labelIsNumeric = true
            default:
                return .invalid
            }
            if labelLength > 63 { return .invalid }
            previous = byte
        }
        if labelLength == 0 || previous == UInt8(ascii: "-") { return .invalid }
        // An all-numeric last label is an IPv4 address (or nothing), never a host name
        // (RFC 3696 §2): `1.0.0.1.` must not pass for a name that prints as `1.0.0.1`.
        if labelIsNumeric { return .invalid }
        return needsFolding ? .needsFolding : .canonical
    }

    private static func asciiLower(_ byte: UInt8) -> UInt8 {
        (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z")) ? byte | 0x20 : byte
    }
}
