/// Labeled examples in columns, the input of training.
///
/// Columns are named; training takes them in the order given, and that order becomes the model's
/// ``FeatureSchema``. Numeric values must be finite.
public struct Dataset: Sendable, Equatable {
    /// The values of one column.
    public enum Values: Sendable, Equatable {
        case numeric([Double])
        case categorical([String])

        /// The number of values.
        public var count: Int {
            switch self {
            case .numeric(let values): values.count
            case .categorical(let values): values.count
            }
        }
    }

    /// One named column.
    public struct Column: Sendable, Equatable {
        public var name: String
        public var values: Values

        /// A column called `name` holding `values`.
        public init(name: String, values: Values) {
            self.name = name
            self.values = values
        }

        /// A numeric column.
        public static func numeric(_ name: String, _ values: [Double]) -> Column {
            Column(name: name, values: .numeric(values))
        }

        /// A categorical column.
        public static func categorical(_ name: String, _ values: [String]) -> Column {
            Column(name: name, values: .categorical(values))
        }
    }

    /// The features, in the order the model will take them.
    public var columns: [Column]
    /// `true` for the positive class.
    public var labels: [Bool]

    /// Examples from columns and one label per row (validated by training, not here).
    public init(columns: [Column], labels: [Bool]) {
        self.columns = columns
        self.labels = labels
    }

    /// The number of examples.
    public var count: Int { labels.count }

    /// Checks that every column has one value per label, names are unique and numbers are finite.
    public func validate() throws(LearningError) {
        var seen = Set<String>()
        for column in columns {
            guard seen.insert(column.name).inserted else {
                throw LearningError(.invalidInput, "column \(column.name) appears twice")
            }
            guard column.values.count == labels.count else {
                throw LearningError(
                    .invalidInput,
                    "column \(column.name) has \(column.values.count) values for \(labels.count) labels")
            }
            if case .numeric(let values) = column.values, let bad = values.firstIndex(where: { !$0.isFinite }) {
                throw LearningError(.invalidInput, "column \(column.name) has a non-finite value at row \(bad)")
            }
        }
    }

    /// The rows in `range`, as a new data set (e.g. a time-ordered holdout).
    public func slice(_ range: Range<Int>) -> Dataset {
        Dataset(
            columns: columns.map { column in
                switch column.values {
                case .numeric(let values): .numeric(column.name, Array(values[range]))
                case .categorical(let values): .categorical(column.name, Array(values[range]))
                }
            },
            labels: Array(labels[range]))
    }
}
