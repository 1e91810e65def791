import Foundation

/// Shared text and JSON formatting of the command line.
enum OutputFormat {
    static func json(_ value: some Encodable) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    static func timestamp(_ date: Date) -> String {
        date.formatted(.iso8601)
    }

    /// Left-aligned columns separated by two spaces; widths in characters (grapheme
    /// clusters), the last column not padded.
    static func table(header: [String], rows: [[String]]) -> String {
        var widths = header.map(\.count)
        for row in rows {
            for (column, cell) in row.enumerated() where column < widths.count {
                widths[column] = max(widths[column], cell.count)
            }
        }
        var out = ""
        out.reserveCapacity((widths.reduce(0, +) + 2 * widths.count + 1) * (rows.count + 1))
        func append(_ row: [String]) {
            for (column, cell) in row.enumerated() {
                if column > 0 { out += "  " }
                out += cell
                if column < row.count - 1, column < widths.count, cell.count < widths[column] {
                    out += String(repeating: " ", count: widths[column] - cell.count)
                }
            }
            out += "\n"
        }
        append(header)
        rows.forEach(append)
        return out
    }
}
