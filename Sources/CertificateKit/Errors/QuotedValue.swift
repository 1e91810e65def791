/// How a value someone gave certgate (a configuration value, a name, a path) is quoted
/// in an error: in full when it is short and cannot be key material, otherwise by its
/// length alone. A private key pasted into the wrong key, or a damaged base64 key read as
/// a path, must not come back in the error about it.
public enum QuotedValue {
    /// The value itself when `quote` would show it, else `(N characters, not shown)`: for a
    /// place in an error (an entry's or a header's name) rather than a quoted value.
    public static func shown(_ raw: String, limit: Int = 64) -> String {
        let quoted = quote(raw, limit: limit)
        return quoted.hasPrefix("'") ? raw : "(\(raw.count) characters, not shown)"
    }

    /// `'value'`, or `a value of N characters (not shown)` when it is longer than `limit`
    /// characters, spans lines, or looks like base64 of PEM or DER.
    public static func quote(_ raw: String, limit: Int = 64) -> String {
        if raw.count > limit || (MaterialSource.mayBeKeyMaterial(raw) && !isNumberWithUnit(raw)) {
            return "a value of \(raw.count) characters (not shown)"
        }
        return "'\(raw)'"
    }

    /// `106751991167301d`, `30s`: digits and a unit of at most two letters — a number as
    /// the file writes one, not a piece of a key.
    private static func isNumberWithUnit(_ raw: String) -> Bool {
        let digits = raw.prefix { $0.isASCII && $0.isNumber }
        let unit = raw.dropFirst(digits.count)
        return !digits.isEmpty && unit.count <= 2 && unit.allSatisfy { $0.isASCII && $0.isLetter }
    }
}
