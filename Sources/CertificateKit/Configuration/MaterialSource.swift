import Foundation

/// Where the PEM text of `tls_cert` / `tls_key` comes from, and how it is read.
///
/// - text containing `-----BEGIN` is inline PEM;
/// - text that decodes as base64 to PEM is base64 of PEM;
/// - anything else is a file path, relative to `baseDirectory`, with `~` expanded.
public enum MaterialSource: Hashable, Sendable {
    case inline(String)
    case base64(String)
    case file(path: String)

    public init(_ value: String) {
        if OctetSearch.contains("-----BEGIN", in: value) {
            self = .inline(value)
        } else if Self.decodeBase64PEM(value) != nil {
            self = .base64(value)
        } else {
            self = .file(path: value.trimmingSpaces())
        }
    }

    /// Reads the PEM text. `field` and `entry` name the place in errors.
    public func read(baseDirectory: String?, entry: String, field: String) throws(CertificateEntryError) -> String {
        try readStamped(baseDirectory: baseDirectory, entry: entry, field: field).text
    }

    /// The PEM text and, for a file, the stamp of the file it was read from.
    func readStamped(baseDirectory: String?, entry: String, field: String) throws(CertificateEntryError) -> (text: String, stamp: FileStamp?) {
        switch self {
        case .inline(let text):
            return (text, nil)
        case .base64(let text):
            guard let pem = Self.decodeBase64PEM(text) else {
                throw CertificateEntryError(entry: entry, field: field, reason: "base64 does not decode to PEM")
            }
            return (pem, nil)
        case .file(let path):
            let resolved = Self.resolve(path: path, baseDirectory: baseDirectory)
            let reason: String
            switch TextFile.read(resolved) {
            case .success(let file):
                return (file.text, file.stamp)
            case .failure(.missing):
                if Self.mayBeKeyMaterial(path) {
                    // Never quoted: it may well be damaged base64 of a key, or of its DER.
                    reason = "neither PEM, nor base64 of PEM, nor an existing file (the value, \(path.count) characters, is not shown: "
                        + "it may be key material; base64 of DER is not accepted — give the PEM text, base64 of the whole PEM file, or a path)"
                } else {
                    reason = "neither PEM, nor base64 of PEM, nor an existing file (\(resolved))"
                }
            case .failure(.notRegular(let isDirectory)):
                reason = isDirectory ? "\(resolved) is a folder, not a file" : "\(resolved) is not a regular file (a device, FIFO or socket is not read)"
            case .failure(.tooLarge):
                reason = "file \(resolved) is larger than \(TextFile.maximumSize >> 20) MiB: no certificate or key is"
            case .failure(.notText):
                reason = "file \(resolved) is not text (DER is not supported; use PEM)"
            case .failure(.unreadable):
                reason = "cannot read file \(resolved)"
            }
            throw CertificateEntryError(entry: entry, field: field, reason: reason)
        }
    }

    /// `~` → the home folder; a relative path → under `baseDirectory`.
    public static func resolve(path: String, baseDirectory: String?) -> String {
        var path = path
        if path == "~" || path.hasPrefix("~/") {
            let home = ProcessInfo.processInfo.environment["HOME"] ?? NSHomeDirectory()
            path = home + path.dropFirst()
        }
        if path.hasPrefix("/") { return path }
        guard let baseDirectory, !baseDirectory.isEmpty else { return path }
        return (baseDirectory.hasSuffix("/") ? baseDirectory : baseDirectory + "/") + path
    }

    /// Whether the value is read from a file (and so may change while the config does not).
    public var isFile: Bool {
        if case .file = self { return true }
        return false
    }

    /// Whether a value that names no file could be key material, and so must not be
    /// quoted in an error: anything spanning lines or longer than a file name, and any
    /// run of 16 or more base64 (or hex) characters — a torn base64 key, base64 of DER,
    /// hex — unless it starts like an absolute or home path. A path with a `.`, `-` or `_`
    /// in it is not base64 and is quoted.
    public static func mayBeKeyMaterial(_ value: String) -> Bool {
        if value.count > 255 || value.contains(where: \.isNewline) { return true }
        if value.hasPrefix("/") || value.hasPrefix("~/") { return false }
        let base64Alphabet = value.unicodeScalars.allSatisfy {
            ("A"..."Z").contains($0) || ("a"..."z").contains($0) || ("0"..."9").contains($0)
                || $0 == "+" || $0 == "/" || $0 == "=" || $0 == " "
        }
        return base64Alphabet && value.count >= 16
    }

    private static func decodeBase64PEM(_ value: String) -> String? {
        // Most values are paths: one octet outside base64 and whitespace ('.', '-', '_')
        // settles it without copying the value.
        let possible = value.utf8.allSatisfy { octet in
            (octet >= 0x41 && octet <= 0x5a) || (octet >= 0x61 && octet <= 0x7a) || (octet >= 0x30 && octet <= 0x39)
                || octet == 0x2b || octet == 0x2f || octet == 0x3d || octet == 0x20 || octet == 0x0a || octet == 0x0d || octet == 0x09
        }
        guard possible else { return nil }
        let compact = value.filter { !$0.isWhitespace }
        guard !compact.isEmpty, compact.count % 4 == 0,
              let data = Data(base64Encoded: compact),
              let text = String(data: data, encoding: .utf8),
              text.contains("-----BEGIN") else { return nil }
        return text
    }
}
