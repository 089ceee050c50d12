/// The statistics of the values that fell into one bucket for one slot: enough to merge buckets
/// into count, sum, mean, min, max and a numerically stable variance (Welford/Chan).
///
/// Buckets holding one or two values keep a canonical form (`m2` of a pair is `(max − min)²/2`)
/// that the encoding stores as the raw values, so sparse data costs no more than raw data.
struct Moments: Equatable {
    var count: Double = 0
    var sum: Double = 0
    /// The sum of squared deviations from the mean.
    var m2: Double = 0
    var min: Double = .infinity
    var max: Double = -.infinity

    static let empty = Moments()

    /// One value.
    static func single(_ value: Double) -> Moments {
        Moments(count: 1, sum: value, m2: 0, min: value, max: value)
    }

    /// Two values, in canonical form (independent of their order).
    static func pair(low: Double, high: Double) -> Moments {
        let spread = high - low
        return Moments(count: 2, sum: low + high, m2: spread * spread * 0.5, min: low, max: high)
    }

    mutating func add(_ value: Double) {
        switch count {
        case 0:
            self = .single(value)
        case 1:
            self = value < min ? .pair(low: value, high: min) : .pair(low: min, high: value)
        default:
            let oldMean = sum / count
            count += 1
            sum += value
            m2 += (value - oldMean) * (value - sum / count)
            if value < min { min = value }
            if value > max { max = value }
        }
    }

    /// Chan et al.'s parallel merge.
    mutating func merge(_ other: Moments) {
        guard other.count > 0 else { return }
        guard count > 0 else {
            self = other
            return
        }
        let total = count + other.count
        let delta = other.sum / other.count - sum / count
        m2 += other.m2 + delta * delta * (count * other.count / total)
        count = total
        sum += other.sum
        if other.min < min { min = other.min }
        if other.max > max { max = other.max }
    }

    var mean: Double? { count > 0 ? sum / count : nil }
    var minimum: Double? { count > 0 ? min : nil }
    var maximum: Double? { count > 0 ? max : nil }
    /// The sample standard deviation (n − 1 in the denominator); undefined below two values.
    var standardDeviation: Double? { count >= 2 ? (Swift.max(0, m2 / (count - 1))).squareRoot() : nil }
}
