import Foundation
import Learning

/// A small deterministic generator (SplitMix64), so every test sees the same "random" data.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }

    mutating func uniform() -> Double { Double(next() >> 11) / Double(1 << 53) }

    /// A standard normal draw (Box–Muller).
    mutating func normal() -> Double {
        let u = max(uniform(), 1e-300)
        return (-2 * log(u)).squareRoot() * cos(2 * Double.pi * uniform())
    }
}

enum TestData {
    /// The repository's root, found from this file's path.
    static func repositoryRoot(file: String = #filePath) -> URL {
        URL(fileURLWithPath: file).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    /// Columns `names` and the label of data rows `range` of examples/elec2/elec2.csv.
    static func elec2(rows range: Range<Int>, columns names: [String]) throws -> Dataset {
        let url = repositoryRoot().appendingPathComponent("examples/elec2/elec2.csv")
        let text = try String(contentsOf: url, encoding: .utf8)
        var lines = text.split(separator: "\n", omittingEmptySubsequences: true)
        let header = lines.removeFirst().split(separator: ",").map(String.init)
        let positions = names.map { header.firstIndex(of: $0)! }
        let labelPosition = header.firstIndex(of: "label")!
        var values = [[Double]](repeating: [], count: names.count)
        var labels: [Bool] = []
        for line in lines[range] {
            let fields = line.split(separator: ",", omittingEmptySubsequences: false)
            for (k, position) in positions.enumerated() { values[k].append(Double(fields[position])!) }
            labels.append(fields[labelPosition] == "1")
        }
        return Dataset(columns: zip(names, values).map { .numeric($0, $1) }, labels: labels)
    }

    /// `n` examples of `d` numeric features (plus an optional categorical one) drawn from a known
    /// logistic model, so the labels follow the scores.
    static func synthetic(n: Int, numeric d: Int, categorical: Bool = false, seed: UInt64 = 7) -> Dataset {
        var random = SeededGenerator(seed: seed)
        let trueWeights = (0..<d).map { _ in random.normal() }
        var columns = [[Double]](repeating: [], count: d)
        var categories: [String] = []
        var labels: [Bool] = []
        let levels = ["a", "b", "c", "d"]
        let levelEffect = ["a": 0.8, "b": -0.5, "c": 0.0, "d": 1.5]
        for _ in 0..<n {
            var logit = -0.3
            for j in 0..<d {
                let value = random.normal() * Double(j + 1) + Double(j)
                columns[j].append(value)
                logit += trueWeights[j] * (value - Double(j)) / Double(j + 1)
            }
            if categorical {
                let u = random.uniform()
                let level = u < 0.5 ? levels[0] : u < 0.8 ? levels[1] : u < 0.995 ? levels[2] : levels[3]
                categories.append(level)
                logit += levelEffect[level]!
            }
            labels.append(random.uniform() < 1 / (1 + exp(-logit)))
        }
        var dataset = Dataset(columns: columns.enumerated().map { .numeric("x\($0)", $1) }, labels: labels)
        if categorical { dataset.columns.append(.categorical("segment", categories)) }
        return dataset
    }
}

/// The code of the ``LearningError`` `body` throws, or `nil` if it throws nothing or another error.
func learningErrorCode(_ body: () throws -> Void) -> LearningError.Code? {
    do {
        try body()
        return nil
    } catch let error as LearningError {
        return error.code
    } catch {
        return nil
    }
}
