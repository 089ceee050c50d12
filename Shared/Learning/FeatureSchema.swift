/// How a feature enters a model.
public enum FeatureKind: String, Codable, Sendable, Equatable {
    /// A number, standardized with the training mean and standard deviation.
    case numeric
    /// A category, one-hot encoded over its frequent training values plus one "other" column.
    case categorical
}

/// One input of a model, in the order the model expects its inputs.
public struct FeatureSpec: Codable, Sendable, Equatable {
    public var name: String
    public var kind: FeatureKind
    /// For categorical features: the frequent training values, each with its own one-hot column;
    /// every other value (including values never seen in training) shares one extra "other" column.
    /// Empty for numeric features.
    public var levels: [String]

    /// A feature; `levels` are ignored for numeric features.
    public init(name: String, kind: FeatureKind, levels: [String] = []) {
        self.name = name
        self.kind = kind
        self.levels = kind == .categorical ? levels : []
    }

    /// The number of model columns this feature expands to.
    public var encodedWidth: Int { kind == .numeric ? 1 : levels.count + 1 }
}

/// The ordered inputs of a model and a hash that identifies them.
///
/// A feature vector handed to a scorer is one `Double` per feature in this order. A numeric feature
/// carries its value; a categorical feature carries its *category code*: the index of the value in
/// ``FeatureSpec/levels``, or any other number (``otherCode`` by convention) for "other"
/// (see ``categoryCode(of:forFeatureAt:)``).
public struct FeatureSchema: Codable, Sendable, Equatable {
    public private(set) var features: [FeatureSpec]
    /// A stable hex digest (FNV-1a, 64 bit) of names, kinds and levels. Two artifacts with the same
    /// hash take the same feature vectors.
    public private(set) var hash: String

    /// The code that selects the "other" column of any categorical feature.
    public static let otherCode: Double = -1

    /// A schema of `features` in order, with its hash computed.
    public init(features: [FeatureSpec]) {
        self.features = features
        self.hash = Self.digest(of: features)
    }

    /// Decodes a schema and checks that its hash matches its features.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let features = try container.decode([FeatureSpec].self, forKey: .features)
        let hash = try container.decode(String.self, forKey: .hash)
        guard hash == Self.digest(of: features) else {
            throw LearningError(.malformedArtifact, "the feature schema's hash \(hash) does not match its features")
        }
        self.features = features
        self.hash = hash
    }

    /// The number of features (the length of a feature vector).
    public var count: Int { features.count }
    /// Feature names in order.
    public var names: [String] { features.map(\.name) }

    /// The position of the feature called `name`.
    public func index(of name: String) -> Int? { features.firstIndex { $0.name == name } }

    /// The code to put in a feature vector for the categorical value `value` of the feature at
    /// `index`: its level's index, or ``otherCode`` for any value that has no column of its own.
    public func categoryCode(of value: String, forFeatureAt index: Int) -> Double {
        guard features.indices.contains(index), let level = features[index].levels.firstIndex(of: value) else {
            return Self.otherCode
        }
        return Double(level)
    }

    static func digest(of features: [FeatureSpec]) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ text: String) {
            for byte in text.utf8 {
                hash ^= UInt64(byte)
                hash = hash &* 0x0000_0100_0000_01b3
            }
            hash ^= 0x1f
            hash = hash &* 0x0000_0100_0000_01b3
        }
        for feature in features {
            mix(feature.name)
            mix(feature.kind.rawValue)
            for level in feature.levels { mix(level) }
            mix("\u{1e}")
        }
        let hex = String(hash, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}

/// Maps a category code to the one-hot column it selects: `0..<levelCount` for a level, `levelCount`
/// ("other") for anything else, including non-integral and non-finite codes.
@inline(__always)
func oneHotColumn(ofCode code: Double, levelCount: Int) -> Int {
    guard code >= 0, code < Double(levelCount), code == code.rounded(.towardZero) else { return levelCount }
    return Int(code)
}
