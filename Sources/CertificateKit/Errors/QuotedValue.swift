/// How a value someone gave certgate (a configuration value, a name, a path) is quoted
/// in an error: in full when it is short and cannot be key material, otherwise by its
/// length alone. A private key pasted into the wrong key, or a damaged base64 key read as
/// a path, must not come back in the error about it.
public enum QuotedValue {
    /// `'value'`, or `a value of N characters (not shown)` when it is longer than `limit`
    /// characters, spans lines, or looks like base64 of PEM or DER.
    public static func quote(_ raw: String, limit: Int = 64) -> String {
        if raw.count > limit || MaterialSource.mayBeKeyMaterial(raw) || raw.contains(where: { $0.isNewline }) {
            return "a value of \(raw.count) characters (not shown)"
        }
        return "'\(raw)'"
    }
}
