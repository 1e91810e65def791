import Foundation

/// Says where and how PEM text (RFC 7468) is damaged, by line number and block label,
/// without quoting a byte of the text: the text may be a private key.
enum PEMDamage {
    /// Why `text` is not valid PEM, e.g. "not valid PEM: the PRIVATE KEY block begun on
    /// line 1 has no END line (is the file cut short?)".
    static func describe(_ text: String) -> String {
        "not valid PEM: " + (firstProblem(in: text) ?? "the text between the BEGIN and END lines does not decode")
    }

    /// The first damage found in `text`, or nil when every block is whole. swift-asn1
    /// skips some damage silently (a BEGIN line with nothing after it), so this is asked
    /// even when its parse succeeds.
    static func firstProblem(in text: String) -> String? {
        var open: (label: String, line: Int)?
        var body = ""
        var lineNumber = 0
        for rawLine in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNumber += 1
            let whole = rawLine.hasSuffix("\r") ? rawLine.dropLast() : rawLine[...]
            // Files joined without a newline put an END and the next BEGIN on one line.
            for line in segments(of: whole) {
                if line.hasPrefix("-----BEGIN") {
                    if let open {
                        return "the \(name(open.label)) block begun on line \(open.line) has no END line before the next BEGIN on line \(lineNumber)"
                    }
                    guard line.hasPrefix("-----BEGIN "), line.hasSuffix("-----"), line.count > 16 else {
                        return "line \(lineNumber) is not a complete BEGIN line (is the file cut short?)"
                    }
                    open = (String(line.dropFirst(11).dropLast(5)), lineNumber)
                    body = ""
                } else if line.hasPrefix("-----END") {
                    guard let block = open else {
                        return "line \(lineNumber) is an END line with no BEGIN line before it"
                    }
                    guard line.hasSuffix("-----"), line.count > 14 else {
                        return "the END line on line \(lineNumber) is not complete (is the file cut short?)"
                    }
                    guard line == "-----END \(block.label)-----" else {
                        return "the END line on line \(lineNumber) does not name the \(name(block.label)) block begun on line \(block.line)"
                    }
                    if Data(base64Encoded: body) == nil {
                        return "the base64 of the \(name(block.label)) block (lines \(block.line)–\(lineNumber)) is damaged"
                    }
                    open = nil
                } else if let block = open {
                    let content = line.trimmingCharacters(in: .whitespaces)
                    if content.contains(":") { continue }  // RFC 1421 headers of legacy blocks
                    guard content.unicodeScalars.allSatisfy(isBase64) else {
                        return "line \(lineNumber), inside the \(name(block.label)) block begun on line \(block.line), is not base64"
                    }
                    body += content
                }
            }
        }
        if let open {
            return "the \(name(open.label)) block begun on line \(open.line) has no END line (is the file cut short?)"
        }
        return nil
    }

    /// `line` cut before every `-----BEGIN` or `-----END` that does not start it.
    private static func segments(of line: Substring) -> [Substring] {
        var pieces: [Substring] = []
        var rest = line
        while let cut = nextMarker(in: rest.dropFirst()) {
            pieces.append(rest[rest.startIndex..<cut])
            rest = rest[cut...]
        }
        pieces.append(rest)
        return pieces
    }

    private static func nextMarker(in text: Substring) -> Substring.Index? {
        let begin = text.range(of: "-----BEGIN")?.lowerBound
        let end = text.range(of: "-----END")?.lowerBound
        switch (begin, end) {
        case (let b?, let e?): return min(b, e)
        case (let b?, nil): return b
        case (nil, let e?): return e
        case (nil, nil): return nil
        }
    }

    /// The block's label when it reads as one (`PRIVATE KEY`), else a neutral word.
    private static func name(_ label: String) -> String {
        let plausible = !label.isEmpty && label.count <= 40
            && label.unicodeScalars.allSatisfy { ("A"..."Z").contains($0) || ("0"..."9").contains($0) || $0 == " " }
        return plausible ? label : "PEM"
    }

    private static func isBase64(_ scalar: Unicode.Scalar) -> Bool {
        ("A"..."Z").contains(scalar) || ("a"..."z").contains(scalar) || ("0"..."9").contains(scalar)
            || scalar == "+" || scalar == "/" || scalar == "="
    }
}
