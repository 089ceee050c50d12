/// Everything wrong with a `loop.yaml`, found in one pass so an operator fixes it in one go.
public struct ConfigError: Error, Sendable, Hashable, CustomStringConvertible {
    /// One problem at one place in the file.
    public struct Problem: Sendable, Hashable, CustomStringConvertible {
        /// A stable code for the kind of problem.
        public enum Kind: String, Sendable, Hashable {
            /// The file cannot be read.
            case unreadable
            /// The YAML itself does not parse.
            case syntax
            /// A key the schema does not know (often a typo).
            case unknownKey = "unknown_key"
            /// A required key is absent.
            case missingKey = "missing_key"
            /// A value of the wrong type (a list where a number belongs, …).
            case wrongType = "wrong_type"
            /// A number or span outside its allowed range.
            case outOfRange = "out_of_range"
            /// A value of the right type that is still not allowed.
            case invalidValue = "invalid_value"
            /// A reference to a field or feature that is not declared.
            case unknownReference = "unknown_reference"
            /// A name declared or listed twice.
            case duplicate
        }

        public var kind: Kind
        /// The key path, e.g. `features.definitions[3].window` (empty for the whole document).
        public var path: String
        /// The 1-based line in the file, when known.
        public var line: Int?
        /// The 1-based column in the file, when known.
        public var column: Int?
        /// What is wrong, for a human.
        public var message: String

        public init(kind: Kind, path: String, line: Int?, column: Int?, message: String) {
            self.kind = kind
            self.path = path
            self.line = line
            self.column = column
            self.message = message
        }

        public var description: String {
            let location = line.map { ":\($0)" + (column.map { ":\($0)" } ?? "") } ?? ""
            return "\(location.isEmpty ? "" : "line \(location.dropFirst()): ")\(path.isEmpty ? "" : "\(path): ")\(message)"
        }
    }

    /// The file the problems are in.
    public var file: String
    /// Every problem found, in file order.
    public var problems: [Problem]

    public init(file: String, problems: [Problem]) {
        self.file = file
        self.problems = problems
    }

    /// A broken config does not fix itself: retrying cannot help.
    public var isRetryable: Bool { false }

    /// One line per problem, `file:line:column: path: message`, under a summary line.
    public var description: String {
        let count = problems.count == 1 ? "1 problem" : "\(problems.count) problems"
        let lines = problems.map { problem in
            var location = file
            if let line = problem.line {
                location += ":\(line)"
                if let column = problem.column { location += ":\(column)" }
            }
            return "  \(location): \(problem.path.isEmpty ? "" : "\(problem.path): ")\(problem.message)"
        }
        return (["\(file) is not a valid loop configuration (\(count)):"] + lines).joined(separator: "\n")
    }
}
