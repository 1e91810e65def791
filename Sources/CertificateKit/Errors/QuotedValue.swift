/// How a value someone gave certgate (a configuration value, a name, a path) is quoted
/// in an error: in full when it is short and cannot be key material, otherwise by its
/// length alone. A private key pasted into the wrong key, or a damaged base64 key read as
/// a path, must not come back in the error about it.
public enum QuotedValue {
    /// The value itself when `quote` would show it, else `(N characters, not shown)`: for a
    /// place in an error (an entry's or a header's name) rather than a quoted value.
    public static func shown(_ raw: String, limit: Int = 64) -> String {
        let quoted = quote(raw, limit: limit)
        return quoted.hasPrefix("'") ? String(quoted.dropFirst().dropLast()) : "(\(raw.count) characters, not shown)"
    }

    /// `'value'`, or `a value of N characters (not shown)` when it is longer than `limit`
    /// characters, spans lines, or looks like base64 of PEM or DER.
    public static func quote(_ raw: String, limit: Int = 64) -> String {
        if raw.count > limit || (MaterialSource.mayBeKeyMaterial(raw) && !isNumberWithUnit(raw)) {
            return "a value of \(raw.count) characters (not shown)"
        }
        return "'\(escapingControls(raw))'"
    }

    /// Control and format characters written as `\u{1B}`: a value never moves the cursor,
    /// colours or reverses the text of the terminal it is printed on.
    static func escapingControls(_ raw: String) -> String {
        guard raw.unicodeScalars.contains(where: isControl) else { return raw }
        var text = ""
        for scalar in raw.unicodeScalars {
            if isControl(scalar) {
                text += "\\u{" + String(scalar.value, radix: 16, uppercase: true) + "}"
            } else {
                text.unicodeScalars.append(scalar)
            }
        }
        return text
    }

    private static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        [.control, .format].contains(scalar.properties.generalCategory)
    }

    /// `106751991167301d`, `30s`: digits and a unit of at most two letters — a number as
    /// the file writes one, not a piece of a key.
    private static func isNumberWithUnit(_ raw: String) -> Bool {
        let digits = raw.prefix { $0.isASCII && $0.isNumber }
        let unit = raw.dropFirst(digits.count)
        return !digits.isEmpty && unit.count <= 2 && unit.allSatisfy { $0.isASCII && $0.isLetter }
    }
}
