import Foundation

/// A CSV file (RFC 4180: comma-separated, `"` quotes with `""` escapes, CRLF or LF line ends) read
/// into a header and rows of text cells.
public struct CSVTable: Sendable {
    /// The column names of the first line, in order.
    public var header: [String]
    /// The data rows, each with as many cells as ``header``.
    public var rows: [[String]]

    /// Creates a table from parts (tests, generated data).
    public init(header: [String], rows: [[String]]) {
        self.header = header
        self.rows = rows
    }

    /// Reads the file at `path`.
    public static func load(path: String) throws(LoopctlError) -> CSVTable {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw LoopctlError(.badCSV, "cannot read the CSV file \(path)")
        }
        return try parse(Array(data), name: path)
    }

    /// Parses CSV text; `name` appears in errors.
    public static func parse(_ text: String, name: String = "CSV") throws(LoopctlError) -> CSVTable {
        try parse(Array(text.utf8), name: name)
    }

    /// Parses CSV bytes; every row must have as many cells as the header (blank lines are skipped).
    public static func parse(_ bytes: [UInt8], name: String) throws(LoopctlError) -> CSVTable {
        var lines: [[String]] = []
        var cells: [String] = []
        var cell: [UInt8] = []
        var quoted = false
        var index = bytes.starts(with: [0xEF, 0xBB, 0xBF]) ? 3 : 0
        var line = 1
        let quote = UInt8(ascii: "\""), comma = UInt8(ascii: ","), newline = UInt8(ascii: "\n"), cr = UInt8(ascii: "\r")

        func endCell() { cells.append(String(decoding: cell, as: UTF8.self)); cell.removeAll(keepingCapacity: true) }
        func endLine() {
            endCell()
            if !(cells.count == 1 && cells[0].isEmpty) { lines.append(cells) }
            cells = []
        }

        while index < bytes.count {
            let byte = bytes[index]
            if quoted {
                if byte == quote {
                    if index + 1 < bytes.count, bytes[index + 1] == quote {
                        cell.append(quote)
                        index += 1
                    } else {
                        quoted = false
                    }
                } else {
                    if byte == newline { line += 1 }
                    cell.append(byte)
                }
            } else if byte == quote && cell.isEmpty {
                quoted = true
            } else if byte == comma {
                endCell()
            } else if byte == newline {
                endLine()
                line += 1
            } else if byte != cr || (index + 1 < bytes.count && bytes[index + 1] != newline) {
                cell.append(byte)
            }
            index += 1
        }
        if quoted { throw LoopctlError(.badCSV, "\(name): a quoted cell opened before line \(line) is never closed") }
        if !cell.isEmpty || !cells.isEmpty { endLine() }
        guard let header = lines.first else { throw LoopctlError(.badCSV, "\(name) is empty: expected a header line") }
        let names = header.map { $0.trimmingCharacters(in: .whitespaces) }
        var seen: Set<String> = []
        for column in names where !seen.insert(column).inserted {
            throw LoopctlError(.badCSV, "\(name): column `\(column)` appears twice in the header")
        }
        let rows = Array(lines.dropFirst())
        for (number, row) in rows.enumerated() where row.count != names.count {
            throw LoopctlError(
                .badCSV, "\(name): data row \(number + 1) has \(row.count) cells, the header has \(names.count)")
        }
        return CSVTable(header: names, rows: rows)
    }

    /// The position of column `name`, if the header has it.
    public func column(_ name: String) -> Int? { header.firstIndex(of: name) }
}
