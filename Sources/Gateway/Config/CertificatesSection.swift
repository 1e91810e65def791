/// A large block-style `certificates:` section cut into pieces that YAML parses on their
/// own, on every core, each piece's nodes freed before the next is parsed.
///
/// Composing a file of 100,000 entries into one document takes half a second on one core
/// and holds several nodes per entry (about 1.7 KiB) until the whole file is decoded; a
/// reload then keeps that much more of the heap. Cut at the lines where an entry begins,
/// the section's pieces parse in parallel and each is decoded and dropped at once.
///
/// The cut is only made where it cannot change what the file means, and only to be
/// checked by parsing: a piece is the section's lines from one entry's first line (a line
/// indented exactly as the section's first key) to the next piece's, after as many empty
/// lines as precede it in the file, so every line and column is where the whole document
/// has it. Whatever a cut could break — a quoted or flow value still open at the cut, an
/// alias to an anchor in another piece — leaves a piece that does not parse or keys not
/// where they were cut, and the caller then parses the file whole (as it does for anything
/// invalid, so that every error reads as before). Files that are not plainly shaped are
/// never cut: tabs or lone carriage returns or Unicode line separators anywhere, a directive
/// (`%TAG` may redefine `!` and `!!` for the whole document), an `&` in the section (an
/// anchor there may be what an alias after it means), a section whose entries are not a
/// block mapping indented by spaces, fewer than ``minimumEntries`` entries.
struct CertificatesSection {
    /// Fewer entries than this are parsed with the rest of the file.
    static let minimumEntries = 2_000
    /// Entries per piece.
    static let entriesPerPiece = 2_000

    /// Some of the section's lines, as their own document.
    struct Piece: Sendable {
        /// Empty lines, then the lines.
        let text: String
        /// The line (from 1) of each entry's key in the piece: where its parse must find
        /// them, every one and no other, for the cut to stand.
        let keyLines: [Int]
    }

    /// The file with the section's lines emptied (`certificates:` stays, with no value).
    let remainder: String
    /// The line (from 1) of `certificates:`: where the remainder's parse must find it.
    let headerLine: Int
    /// The pieces, in file order.
    let pieces: [Piece]

    init?(splitting yaml: String) {
        var utf8 = Array(yaml.utf8)
        // Line breaks other than \n and \r\n (YAML also breaks lines at a lone \r, and
        // YAML 1.1 parsers at NEL, LS and PS) would make line counts disagree; tabs could
        // be indentation YAML refuses.
        for (index, octet) in utf8.enumerated() {
            switch octet {
            case 0x09: return nil
            case 0x0D where index + 1 >= utf8.count || utf8[index + 1] != 0x0A: return nil
            case 0xC2 where index + 1 < utf8.count && utf8[index + 1] == 0x85: return nil
            case 0xE2 where index + 2 < utf8.count && utf8[index + 1] == 0x80 && (utf8[index + 2] == 0xA8 || utf8[index + 2] == 0xA9): return nil
            default: continue
            }
        }
        // A directive (`%TAG` can redefine `!` and `!!`) applies to the whole document, the
        // pieces would not see it.
        if utf8.first == 0x25 || utf8.indices.dropFirst().contains(where: { utf8[$0] == 0x25 && utf8[$0 - 1] == 0x0A }) { return nil }
        // Lines as ranges of `utf8`, without their \n.
        var lines: [Range<Int>] = []
        var start = 0
        for (index, octet) in utf8.enumerated() where octet == 0x0A {
            lines.append(start..<index)
            start = index + 1
        }
        if start < utf8.count { lines.append(start..<utf8.count) }

        func indentation(_ line: Range<Int>) -> Int {
            var count = 0
            while line.lowerBound + count < line.upperBound, utf8[line.lowerBound + count] == 0x20 { count += 1 }
            return count
        }
        // Blank (spaces, a \r) or a comment: neither begins nor ends anything.
        func isFiller(_ line: Range<Int>) -> Bool {
            let first = line.lowerBound + indentation(line)
            return first >= line.upperBound || utf8[first] == 0x0D || utf8[first] == 0x23
        }

        // `certificates:` at the start of a line, then nothing but spaces or a comment.
        let header = Array("certificates:".utf8)
        guard let headerIndex = lines.firstIndex(where: { line in
            line.count >= header.count && utf8[line.lowerBound..<(line.lowerBound + header.count)].elementsEqual(header)
        }) else { return nil }
        let afterHeader = lines[headerIndex].lowerBound + header.count
        var rest = afterHeader
        while rest < lines[headerIndex].upperBound, utf8[rest] == 0x20 { rest += 1 }
        let lineEnds = rest == lines[headerIndex].upperBound || (utf8[rest] == 0x0D && rest + 1 == lines[headerIndex].upperBound)
        guard lineEnds || (utf8[rest] == 0x23 && rest > afterHeader) else { return nil }
        headerLine = headerIndex + 1

        // The section: every line after the header up to the next line at column 0.
        var end = headerIndex + 1
        while end < lines.count, isFiller(lines[end]) || indentation(lines[end]) > 0 { end += 1 }
        guard let firstKey = (headerIndex + 1..<end).first(where: { !isFiller(lines[$0]) }) else { return nil }
        let indent = indentation(lines[firstKey])
        // Entry starts: lines at the section's indentation that are not filler; deeper lines
        // belong to the entry above; a shallower one is not a plain block mapping.
        var entryStarts: [Int] = []
        for index in firstKey..<end where !isFiller(lines[index]) {
            let depth = indentation(lines[index])
            if depth < indent { return nil }
            guard depth == indent else { continue }
            let first = utf8[lines[index].lowerBound + depth]
            // A sequence, a complex key, a flow collection or a document marker: not a
            // mapping of plain entries.
            if first == 0x2D || first == 0x3F || first == 0x7B || first == 0x5B || first == 0x3A { return nil }
            entryStarts.append(index)
        }
        guard entryStarts.count >= Self.minimumEntries else { return nil }
        // An anchor defined in the section (`&`, anywhere in its text to be safe) could be
        // what an alias after the section means, or redefine one before it: the remainder,
        // with the section emptied, would then read another value.
        if (lines[firstKey].lowerBound..<(end < lines.count ? lines[end].lowerBound : utf8.count)).contains(where: { utf8[$0] == 0x26 }) {
            return nil
        }

        var pieces: [Piece] = []
        for offset in stride(from: 0, to: entryStarts.count, by: Self.entriesPerPiece) {
            let firstLine = offset == 0 ? headerIndex + 1 : entryStarts[offset]
            let lastLine = offset + Self.entriesPerPiece < entryStarts.count ? entryStarts[offset + Self.entriesPerPiece] : end
            var piece = [UInt8](repeating: 0x0A, count: firstLine)
            piece.append(contentsOf: utf8[lines[firstLine].lowerBound..<(lastLine < lines.count ? lines[lastLine].lowerBound : utf8.count)])
            let keys = entryStarts[offset..<min(offset + Self.entriesPerPiece, entryStarts.count)].map { $0 + 1 }
            pieces.append(Piece(text: String(decoding: piece, as: UTF8.self), keyLines: keys))
        }
        // The rest of the file, the section's lines emptied (their line breaks kept).
        for index in (headerIndex + 1)..<end {
            for position in lines[index] where utf8[position] != 0x0D { utf8[position] = 0x20 }
        }
        remainder = String(decoding: utf8, as: UTF8.self)
        self.pieces = pieces
    }
}
